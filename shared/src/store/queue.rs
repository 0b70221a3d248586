//! The delivery queue: which pending inbox entries a worker should try, in each
//! customer's order. The entry stays the record of truth (state, attempts, errors, next
//! attempt); a job only points at it, so a job delivered twice, late or after the entry
//! settled does nothing (the worker's `take` is a conditional write).
//!
//! Two implementations: SQS FIFO (one message group per customer and direction, the
//! inbox key as deduplication id) and a table in the embedded store's redb file, which
//! keeps jobs across restarts and gives the same per-group order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use super::embedded::EmbeddedStore;
use crate::support::hex::hex_lower;

/// One pending inbox entry to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The inbox key (`{appid}#...`).
    pub key: String,
    /// Jobs of one group run one at a time, in the order they were queued.
    pub group: String,
    /// The entry's `since_ms`: a replayed entry is a new job, not a duplicate of the old.
    #[serde(default)]
    pub generation: i64,
}

impl Job {
    pub fn appid(&self) -> &str {
        self.key.split('#').next().unwrap_or("")
    }
}

/// A job handed to a worker, with what the queue needs to settle it.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job: Job,
    pub receipt: String,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job; queueing one that is already queued is harmless.
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError>;
    /// Jobs to run now, waiting up to `wait` for one. A group's jobs come in order, and
    /// none while an earlier one of the group is leased or waiting for its retry.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, StoreError>;
    /// The job is settled: forget it.
    async fn done(&self, job: &Leased) -> Result<(), StoreError>;
    /// Run the job again after `delay`; its group waits behind it.
    async fn later(&self, job: &Leased, delay: Duration) -> Result<(), StoreError>;
    /// Whether the queue answers (for `/readyz`).
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// SQS limits group and deduplication ids to 128 characters; openids stay out of them.
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex_lower(&h.finalize())
}

// ---------------------------------------------------------------------------------------
// SQS FIFO
// ---------------------------------------------------------------------------------------

pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }
}

fn sqs_err<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(format!(
        "SQS {what}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(&e)
    ))
}

/// An SQS message body as a job (the Lambda worker gets the same bodies in its event).
pub fn job_from_body(body: &str) -> Result<Job, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("queue message: {e}")))
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        let body = serde_json::to_string(job).map_err(unavailable)?;
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(&digest(&[&job.group])[..32])
            .message_deduplication_id(digest(&[&job.key, &job.generation.to_string()]))
            .send()
            .await
            .map_err(|e| sqs_err("SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, StoreError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(|e| sqs_err("ReceiveMessage", e))?;
        let mut jobs = Vec::new();
        for m in out.messages() {
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            match job_from_body(body) {
                Ok(job) => jobs.push(Leased {
                    job,
                    receipt: receipt.to_owned(),
                }),
                Err(e) => {
                    // Not ours to run: it goes to the dead-letter queue after its receives.
                    tracing::error!(error = %e, "queue message is not a job; left to the DLQ");
                }
            }
        }
        Ok(jobs)
    }

    async fn done(&self, job: &Leased) -> Result<(), StoreError> {
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&job.receipt)
            .send()
            .await
            .map_err(|e| sqs_err("DeleteMessage", e))?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| sqs_err("GetQueueAttributes", e))?;
        Ok(())
    }

    async fn later(&self, job: &Leased, delay: Duration) -> Result<(), StoreError> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&job.receipt)
            // SQS counts whole seconds, up to 12 hours.
            .visibility_timeout(delay.as_secs().clamp(1, 43_200) as i32)
            .send()
            .await
            .map_err(|e| sqs_err("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Embedded (redb)
// ---------------------------------------------------------------------------------------

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

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.store.database();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(unavailable)?;
            let out = f(&txn)?;
            txn.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    fn release(&self, receipt: &str) -> Option<u64> {
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
        self.write(move |txn| {
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
        let Some(seq) = self.release(&job.receipt) else {
            return Ok(());
        };
        let key = job.job.key.clone();
        self.write(move |txn| {
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
        let Some(seq) = self.release(&job.receipt) else {
            return Ok(());
        };
        let due_ms = crate::support::clock::unix_ms() + delay.as_millis() as i64;
        self.write(move |txn| {
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
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "wxdesk-queue-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
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
