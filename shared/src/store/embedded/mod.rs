//! The embedded store: one redb file in a local directory. No server, survives restarts.
//!
//! All writes go through one writer thread that applies whatever is queued in a single
//! transaction and a single fsync (group commit): claims stay serialised, so exactly one
//! racer wins, while a busy server pays one fsync per batch instead of one per message.

mod inbox;
mod media;
mod queue;
mod records;
mod registry;
mod tokens;

pub use media::EmbeddedMedia;
pub use queue::EmbeddedQueue;

use crate::support::private_fs::{private_dir, private_file};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::queue::unavailable;
use super::{Claim, InboxEntry, Outcome, Shelf, StoreError, rules};

const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("inbox");
/// The embedded twin of DynamoDB's sparse `outbox` index, sorted like it by due time:
/// `{appid}\0{shelf}\0{due:020}\0{key}` for every entry on a shelf, kept in the same
/// transaction as the entry.
const OUTBOX: TableDefinition<&str, ()> = TableDefinition::new("outbox_by_due");
/// The index before it was sorted by due time (`{appid}\0{shelf}\0{key}`): rebuilt into
/// `OUTBOX` and dropped when a store from before opens.
const OUTBOX_BY_KEY: TableDefinition<&str, ()> = TableDefinition::new("outbox");
const TOKENS: records::Records = TableDefinition::new("tokens");
const MAX_BATCH: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// An `Outcome` that can cross to the writer thread.
enum Settle {
    Answered(String),
    Pending {
        error: String,
        due_ms: i64,
        group: String,
        answer: Option<String>,
        expires_at: i64,
        queued: bool,
    },
    Dead(String, i64, i64),
}

impl Settle {
    fn of(outcome: Outcome<'_>) -> Settle {
        match outcome {
            Outcome::Answered(a) => Settle::Answered(a.to_owned()),
            Outcome::Pending {
                error,
                due_ms,
                group,
                answer,
                expires_at,
                queued,
            } => Settle::Pending {
                error: error.to_owned(),
                due_ms,
                group: group.to_owned(),
                answer: answer.map(str::to_owned),
                expires_at,
                queued,
            },
            Outcome::Dead {
                why,
                expires_at,
                at_ms,
            } => Settle::Dead(why.to_owned(), expires_at, at_ms),
        }
    }

    fn outcome(&self) -> Outcome<'_> {
        match self {
            Settle::Answered(a) => Outcome::Answered(a),
            Settle::Pending {
                error,
                due_ms,
                group,
                answer,
                expires_at,
                queued,
            } => Outcome::Pending {
                error,
                due_ms: *due_ms,
                group,
                answer: answer.as_deref(),
                expires_at: *expires_at,
                queued: *queued,
            },
            Settle::Dead(why, expires_at, at_ms) => Outcome::Dead {
                why,
                expires_at: *expires_at,
                at_ms: *at_ms,
            },
        }
    }
}

enum Op {
    Claim(InboxEntry, i64, oneshot::Sender<Result<Claim, StoreError>>),
    Finish {
        key: String,
        claim_id: String,
        outcome: Settle,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// A piece of state written only where no live entry holds its key (`put_first`):
    /// in the batch, as it is on every plain-mode push beside its claim.
    PutFirst(InboxEntry, i64, oneshot::Sender<Result<String, StoreError>>),
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    dir: PathBuf,
    /// The data key (`registry.rs`), read from its file once.
    sealer: tokio::sync::OnceCell<crate::support::seal::Sealer>,
}

impl EmbeddedStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // It holds access_tokens and message texts: the server's user alone reads it.
        let file = dir.join("wxdesk.redb");
        private_dir(dir)
            .and_then(|()| private_file(&file))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", file.display()))
            })?;
        let db = Database::create(&file).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::InUse(file.display().to_string())
            }
            e => StoreError::Unavailable(format!("cannot open {}: {e}", file.display())),
        })?;
        let w = db.begin_write().map_err(unavailable)?;
        w.open_table(INBOX).map_err(unavailable)?;
        w.open_table(OUTBOX).map_err(unavailable)?;
        w.open_table(TOKENS).map_err(unavailable)?;
        if w.delete_table(OUTBOX_BY_KEY).map_err(unavailable)? {
            rebuild_outbox(&w)?;
        }
        w.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("wxdesk-store-writer".into())
            .spawn(move || writer_loop(&wdb, &rx))
            .map_err(unavailable)?;
        Ok(Self {
            db,
            writer: tx,
            dir: dir.to_owned(),
            sealer: tokio::sync::OnceCell::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The redb database, for the queue kept in the same file.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    async fn send<T>(
        &self,
        op: Op,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.writer
            .send(op)
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// `f` in one write transaction, off the async threads; committed when `f` succeeds.
    /// redb serialises write transactions, so a read-check-write inside one is atomic like
    /// a conditional write.
    pub(crate) async fn write_txn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(unavailable)?;
            let out = f(&txn)?;
            txn.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    /// One rule applied to an entry in one write transaction.
    async fn entry_txn<T: Send + 'static>(
        &self,
        key: &str,
        rule: impl FnOnce(Option<&InboxEntry>) -> rules::Step<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = key.to_owned();
        self.write_txn(move |txn| Tables::open(txn)?.apply(&key, rule))
            .await
    }
}

/// The inbox and its outbox index, written together.
struct Tables<'t> {
    inbox: redb::Table<'t, &'static str, &'static [u8]>,
    outbox: redb::Table<'t, &'static str, ()>,
}

/// An entry's place in the outbox index: its account and shelf, then its due time
/// (zero-padded, so that key order is due order, as DynamoDB's index sorts by `due`), then
/// its key.
fn outbox_key(e: &InboxEntry) -> Option<String> {
    Shelf::of(e).map(|shelf| {
        format!(
            "{}\0{}\0{:020}\0{}",
            e.appid,
            shelf.as_str(),
            e.lease_until_ms.max(0),
            e.key
        )
    })
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            inbox: txn.open_table(INBOX).map_err(unavailable)?,
            outbox: txn.open_table(OUTBOX).map_err(unavailable)?,
        })
    }

    fn write(&mut self, old: Option<&InboxEntry>, e: &InboxEntry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inbox
            .insert(e.key.as_str(), bytes.as_slice())
            .map_err(unavailable)?;
        let (was, is) = (old.and_then(outbox_key), outbox_key(e));
        if was != is {
            if let Some(k) = was {
                self.outbox.remove(k.as_str()).map_err(unavailable)?;
            }
            if let Some(k) = is {
                self.outbox.insert(k.as_str(), ()).map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// `rule` applied to the entry at `key`, its write (if any) made.
    fn apply<T>(
        &mut self,
        key: &str,
        rule: impl FnOnce(Option<&InboxEntry>) -> rules::Step<T>,
    ) -> Result<T, StoreError> {
        let old = read_entry(&self.inbox, key)?;
        let (new, out) = rule(old.as_ref());
        if let Some(new) = new {
            self.write(old.as_ref(), &new)?;
        }
        Ok(out)
    }

    fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        if let Some(old) = read_entry(&self.inbox, key)? {
            if let Some(k) = outbox_key(&old) {
                self.outbox.remove(k.as_str()).map_err(unavailable)?;
            }
            self.inbox.remove(key).map_err(unavailable)?;
        }
        Ok(())
    }
}

/// Indexes every entry on a shelf again (a store from before the index was sorted).
fn rebuild_outbox(w: &redb::WriteTransaction) -> Result<(), StoreError> {
    let inbox = w.open_table(INBOX).map_err(unavailable)?;
    let mut outbox = w.open_table(OUTBOX).map_err(unavailable)?;
    for row in inbox.iter().map_err(unavailable)? {
        let (_, v) = row.map_err(unavailable)?;
        let Ok(e) = serde_json::from_slice::<InboxEntry>(v.value()) else {
            continue;
        };
        if let Some(k) = outbox_key(&e) {
            outbox.insert(k.as_str(), ()).map_err(unavailable)?;
        }
    }
    Ok(())
}

fn writer_loop(db: &Database, rx: &mpsc::Receiver<Op>) {
    let mut last_sweep = Instant::now() - SWEEP_EVERY;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let sweep = last_sweep.elapsed() >= SWEEP_EVERY;
        if sweep {
            last_sweep = Instant::now();
        }
        apply_batch(db, batch, sweep);
    }
}

enum Reply {
    Claim(oneshot::Sender<Result<Claim, StoreError>>, Claim),
    Finish(oneshot::Sender<Result<bool, StoreError>>, bool),
    PutFirst(oneshot::Sender<Result<String, StoreError>>, String),
}

fn apply_batch(db: &Database, batch: Vec<Op>, sweep: bool) {
    let mut replies = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut tables = Tables::open(&txn)?;
            if sweep {
                // Clean-up only: what reads see is decided by `rules::live` on the
                // caller's clock; this deletes what no clock near now can see.
                let now_ms = crate::support::clock::unix_ms();
                tables
                    .inbox
                    .retain(|_, v| {
                        serde_json::from_slice::<InboxEntry>(v)
                            .is_ok_and(|e| rules::live(&e, now_ms))
                    })
                    .map_err(unavailable)?;
                let inbox = &tables.inbox;
                tables
                    .outbox
                    .retain(|k, _| {
                        k.rsplit('\0')
                            .next()
                            .is_some_and(|key| inbox.get(key).ok().flatten().is_some())
                    })
                    .map_err(unavailable)?;
            }
            for op in batch {
                replies.push(match op {
                    Op::Claim(fresh, now_ms, reply) => Reply::Claim(
                        reply,
                        tables.apply(&fresh.key.clone(), |old| rules::claim(old, fresh, now_ms))?,
                    ),
                    Op::Finish {
                        key,
                        claim_id,
                        outcome,
                        reply,
                    } => Reply::Finish(
                        reply,
                        tables.apply(&key, |old| {
                            rules::finish(old, &claim_id, &outcome.outcome())
                        })?,
                    ),
                    Op::PutFirst(entry, now_ms, reply) => Reply::PutFirst(
                        reply,
                        tables.apply(&entry.key.clone(), |old| {
                            rules::put_first(old, entry, now_ms)
                        })?,
                    ),
                });
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(())
    })();
    // Nobody hears of a write before it is durable.
    for r in replies {
        match (r, &result) {
            (Reply::Claim(tx, c), Ok(())) => drop(tx.send(Ok(c))),
            (Reply::Finish(tx, b), Ok(())) => drop(tx.send(Ok(b))),
            (Reply::PutFirst(tx, v), Ok(())) => drop(tx.send(Ok(v))),
            (Reply::Claim(tx, _), Err(e)) => drop(tx.send(Err(unavailable(e)))),
            (Reply::Finish(tx, _), Err(e)) => drop(tx.send(Err(unavailable(e)))),
            (Reply::PutFirst(tx, _), Err(e)) => drop(tx.send(Err(unavailable(e)))),
        }
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "embedded store: write batch failed");
    }
}

fn read_entry(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<InboxEntry>, StoreError> {
    match table.get(key).map_err(unavailable)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EntryState, OutboxStore};

    /// A store written before the outbox index was sorted by due time (`outbox`, keyed
    /// `{appid}\0{shelf}\0{key}`) opens with every entry indexed again: nothing pending is
    /// lost to the sweep.
    #[tokio::test]
    async fn a_store_from_before_the_sorted_index_is_reindexed() {
        let dir = std::env::temp_dir().join(format!("wxdesk-reindex-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = crate::support::clock::unix_ms();
        let entry = |key: &str, due: i64| InboxEntry {
            key: key.into(),
            appid: "wxOld".into(),
            payload: "<xml/>".into(),
            state: EntryState::Pending,
            claim_id: String::new(),
            attempts: 1,
            answer: None,
            last_error: Some("desk 500".into()),
            lease_until_ms: due,
            expires_at: now / 1000 + 600,
            group: "g".into(),
            since_ms: now,
            queued: false,
        };
        {
            let db = Database::create(dir.join("wxdesk.redb")).unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut inbox = w.open_table(INBOX).unwrap();
                let mut old = w.open_table(OUTBOX_BY_KEY).unwrap();
                for (key, due) in [("wxOld#msg#a", now + 9_000), ("wxOld#msg#b", now + 1_000)] {
                    let bytes = serde_json::to_vec(&entry(key, due)).unwrap();
                    inbox.insert(key, bytes.as_slice()).unwrap();
                    old.insert(format!("wxOld\0unqueued\0{key}").as_str(), ())
                        .unwrap();
                }
            }
            w.commit().unwrap();
        }
        let store = EmbeddedStore::open(&dir).unwrap();
        let listed = store
            .outbox("wxOld", Shelf::Unqueued, 10, now)
            .await
            .unwrap();
        let keys: Vec<_> = listed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["wxOld#msg#b", "wxOld#msg#a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
