//! The delivery queue in the embedded store's redb file (the local server): one job per
//! customer group runs at a time, in queue order; jobs survive restarts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::EmbeddedStore;
use crate::store::StoreError;
use crate::store::queue::{Job, JobQueue, Leased, unavailable};

/// Jobs by sequence number (queue order).
const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// Inbox key → sequence number: a job is queued once.
const QUEUED: TableDefinition<&str, u64> = TableDefinition::new("queued");
/// A leased job whose worker vanished (a task that panicked) runs again after this.
const LEASE: Duration = Duration::from_secs(300);
/// How often an idle `receive` looks again for jobs whose retry time came.
const POLL: Duration = Duration::from_millis(200);
/// A bound on one look at the queue; a backlog beyond it waits for the next look.
const MAX_SCAN: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct Row {
    job: Job,
    /// Not before this (ms since the epoch).
    due_ms: i64,
}

/// The queue in the embedded store's file. One process owns the file (redb locks it),
/// so which jobs are leased is kept in memory: a restart makes them runnable again.
pub struct EmbeddedQueue {
    store: Arc<EmbeddedStore>,
    leased: Mutex<HashMap<u64, Instant>>,
    wake: tokio::sync::Notify,
}

impl EmbeddedQueue {
    pub fn new(store: Arc<EmbeddedStore>) -> Self {
        Self {
            store,
            leased: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn unlease(&self, receipt: &str) -> Option<u64> {
        let seq = receipt.parse::<u64>().ok()?;
        self.leased.lock().ok()?.remove(&seq);
        Some(seq)
    }

    /// The runnable heads of their groups, leased to the caller.
    fn scan(&self, max: usize) -> Result<Vec<Leased>, StoreError> {
        let db = self.store.database();
        let txn = db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(QUEUE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let now_ms = crate::support::clock::unix_ms();
        let now = Instant::now();
        let mut leased = self
            .leased
            .lock()
            .map_err(|_| unavailable("queue lease table poisoned"))?;
        leased.retain(|_, until| *until > now);
        let mut seen_groups = HashSet::new();
        let mut out = Vec::new();
        for row in table.iter().map_err(unavailable)?.take(MAX_SCAN) {
            let (seq, bytes) = row.map_err(unavailable)?;
            let seq = seq.value();
            let Ok(row) = serde_json::from_slice::<Row>(bytes.value()) else {
                tracing::error!(seq, "unreadable queue row skipped");
                continue;
            };
            // Only a group's first job may run; the rest wait behind it.
            if !seen_groups.insert(row.job.group.clone()) {
                continue;
            }
            if leased.contains_key(&seq) || row.due_ms > now_ms {
                continue;
            }
            leased.insert(seq, now + LEASE);
            out.push(Leased {
                job: row.job,
                receipt: seq.to_string(),
            });
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        let job = job.clone();
        self.store
            .write_txn(move |txn| {
                let mut queued = txn.open_table(QUEUED).map_err(unavailable)?;
                if queued.get(job.key.as_str()).map_err(unavailable)?.is_some() {
                    return Ok(());
                }
                let mut queue = txn.open_table(QUEUE).map_err(unavailable)?;
                let seq = queue
                    .last()
                    .map_err(unavailable)?
                    .map_or(1, |(k, _)| k.value() + 1);
                let row = serde_json::to_vec(&Row {
                    job: job.clone(),
                    due_ms: 0,
                })
                .map_err(unavailable)?;
                queue.insert(seq, row.as_slice()).map_err(unavailable)?;
                queued.insert(job.key.as_str(), seq).map_err(unavailable)?;
                Ok(())
            })
            .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, StoreError> {
        let until = Instant::now() + wait;
        loop {
            let notified = self.wake.notified();
            let jobs = self.scan(max)?;
            let left = until.saturating_duration_since(Instant::now());
            if !jobs.is_empty() || left.is_zero() {
                return Ok(jobs);
            }
            let _ = tokio::time::timeout(left.min(POLL), notified).await;
        }
    }

    async fn done(&self, job: &Leased) -> Result<(), StoreError> {
        let Some(seq) = self.unlease(&job.receipt) else {
            return Ok(());
        };
        let key = job.job.key.clone();
        self.store
            .write_txn(move |txn| {
                txn.open_table(QUEUE)
                    .map_err(unavailable)?
                    .remove(seq)
                    .map_err(unavailable)?;
                let mut queued = txn.open_table(QUEUED).map_err(unavailable)?;
                if queued
                    .get(key.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    == Some(seq)
                {
                    queued.remove(key.as_str()).map_err(unavailable)?;
                }
                Ok(())
            })
            .await?;
        // The group's next job may run now.
        self.wake.notify_waiters();
        Ok(())
    }

    async fn later(&self, job: &Leased, delay: Duration) -> Result<(), StoreError> {
        let Some(seq) = self.unlease(&job.receipt) else {
            return Ok(());
        };
        let due_ms = crate::support::clock::unix_ms() + delay.as_millis() as i64;
        self.store
            .write_txn(move |txn| {
                let mut queue = txn.open_table(QUEUE).map_err(unavailable)?;
                let row = match queue.get(seq).map_err(unavailable)? {
                    Some(v) => serde_json::from_slice::<Row>(v.value()).ok(),
                    None => None,
                };
                if let Some(mut row) = row {
                    row.due_ms = due_ms;
                    let bytes = serde_json::to_vec(&row).map_err(unavailable)?;
                    queue.insert(seq, bytes.as_slice()).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, group: &str) -> Job {
        Job {
            key: key.into(),
            group: group.into(),
            generation: 1,
        }
    }

    fn open() -> (tempdir::Dir, EmbeddedQueue) {
        let dir = tempdir::Dir::new();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        (dir, EmbeddedQueue::new(store))
    }

    mod tempdir {
        pub(super) struct Dir(std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "wxdesk-queue-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                Dir(p)
            }
            pub(super) fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn a_group_runs_in_order_and_waits_behind_a_retry() {
        let (_dir, q) = open();
        for (k, g) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a1", "A")] {
            q.enqueue(&job(k, g)).await.unwrap();
        }
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        let keys: Vec<_> = first.iter().map(|l| l.job.key.as_str()).collect();
        assert_eq!(keys, ["a1", "b1"], "one head per group, a1 queued once");
        // Nothing more while both heads are leased.
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        q.later(&first[0], Duration::from_secs(60)).await.unwrap();
        q.done(&first[1]).await.unwrap();
        // a2 stays behind a1's retry.
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_next_job_of_a_group_runs_once_the_head_is_done() {
        let (_dir, q) = open();
        q.enqueue(&job("a1", "A")).await.unwrap();
        q.enqueue(&job("a2", "A")).await.unwrap();
        let head = q.receive(10, Duration::ZERO).await.unwrap();
        q.done(&head[0]).await.unwrap();
        let next = q.receive(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].job.key, "a2");
        q.done(&next[0]).await.unwrap();
        // Done means gone, and a key may be queued again afterwards.
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        q.enqueue(&job("a1", "A")).await.unwrap();
        assert_eq!(q.receive(10, Duration::ZERO).await.unwrap().len(), 1);
    }
}
