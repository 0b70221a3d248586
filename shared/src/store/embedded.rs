//! The embedded store: one redb file in a local directory. No server, survives restarts.
//!
//! All writes go through one writer thread that applies whatever is queued in a single
//! transaction and a single fsync (group commit): claims stay serialised, so exactly one
//! racer wins, while a busy server pays one fsync per batch instead of one per message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Claim, EntryState, InboxEntry, InboxStore, NewClaim, Outcome, StoreError, decide};

const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("inbox");
const MAX_BATCH: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(600);

enum Op {
    Claim(InboxEntry, i64, oneshot::Sender<Result<Claim, StoreError>>),
    Finish {
        key: String,
        claim_id: String,
        answered: bool,
        text: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    dir: PathBuf,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let file = dir.join("wxdesk.redb");
        let db = Database::create(&file)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", file.display())))?;
        let w = db.begin_write().map_err(unavailable)?;
        w.open_table(INBOX).map_err(unavailable)?;
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
}

fn apply_batch(db: &Database, batch: Vec<Op>, sweep: bool) {
    let mut replies = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(INBOX).map_err(unavailable)?;
            if sweep {
                let now_s = crate::clock::unix_ms() / 1000;
                table
                    .retain(|_, v| {
                        serde_json::from_slice::<InboxEntry>(v)
                            .map(|e| e.expires_at > now_s)
                            .unwrap_or(false)
                    })
                    .map_err(unavailable)?;
            }
            for op in batch {
                match op {
                    Op::Claim(entry, claim_now_ms, reply) => {
                        let existing = read_entry(&table, &entry.key)?;
                        let result = match decide(existing.as_ref(), claim_now_ms) {
                            Some(found) => found,
                            None => {
                                let attempt = existing
                                    .as_ref()
                                    .filter(|e| e.expires_at * 1000 > claim_now_ms)
                                    .map_or(0, |e| e.attempts)
                                    + 1;
                                let mut entry = entry;
                                entry.attempts = attempt;
                                write_entry(&mut table, &entry)?;
                                Claim::Won {
                                    claim_id: entry.claim_id,
                                    attempt,
                                }
                            }
                        };
                        replies.push(Reply::Claim(reply, result));
                    }
                    Op::Finish {
                        key,
                        claim_id,
                        answered,
                        text,
                        reply,
                    } => {
                        let owned = match read_entry(&table, &key)? {
                            Some(mut e)
                                if e.claim_id == claim_id && e.state == EntryState::InFlight =>
                            {
                                if answered {
                                    e.state = EntryState::Answered;
                                    e.answer = Some(text);
                                } else {
                                    e.state = EntryState::Undelivered;
                                    e.last_error = Some(text);
                                }
                                write_entry(&mut table, &e)?;
                                true
                            }
                            _ => false,
                        };
                        replies.push(Reply::Finish(reply, owned));
                    }
                }
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
            (Reply::Claim(tx, _), Err(e)) => drop(tx.send(Err(unavailable(e)))),
            (Reply::Finish(tx, _), Err(e)) => drop(tx.send(Err(unavailable(e)))),
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

fn write_entry(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    e: &InboxEntry,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    table
        .insert(e.key.as_str(), bytes.as_slice())
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl InboxStore for EmbeddedStore {
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        let entry = InboxEntry {
            key: c.key.to_owned(),
            appid: c.appid.to_owned(),
            payload: c.payload.to_owned(),
            state: EntryState::InFlight,
            claim_id: c.claim_id.to_owned(),
            attempts: 0,
            answer: None,
            last_error: None,
            lease_until_ms: c.lease_until_ms,
            expires_at: c.expires_at,
        };
        let (tx, rx) = oneshot::channel();
        self.send(Op::Claim(entry, c.now_ms, tx), rx).await
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError> {
        let (answered, text) = match outcome {
            Outcome::Answered(a) => (true, a.to_owned()),
            Outcome::Undelivered(r) => (false, r.to_owned()),
        };
        let (tx, rx) = oneshot::channel();
        self.send(
            Op::Finish {
                key: key.to_owned(),
                claim_id: claim_id.to_owned(),
                answered,
                text,
                reply: tx,
            },
            rx,
        )
        .await
    }

    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(INBOX).map_err(unavailable)?;
        Ok(read_entry(&table, key)?.filter(|e| e.expires_at * 1000 > now_ms))
    }
}
