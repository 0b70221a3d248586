//! The embedded store: one redb file in a local directory. No server, survives restarts.
//!
//! All writes go through one writer thread that applies whatever is queued in a single
//! transaction and a single fsync (group commit): claims stay serialised, so exactly one
//! racer wins, while a busy server pays one fsync per batch instead of one per message.

pub use super::embedded_media::EmbeddedMedia;
use crate::support::private_fs::{private_dir, private_file};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::queue::unavailable;

use super::{
    Claim, EntryState, InboxEntry, InboxStore, NewClaim, Outcome, Shelf, StateSwap, StoreError,
    Taken, TokenRecord, TokenStore, decide, decide_take,
};

const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("inbox");
/// The embedded twin of DynamoDB's sparse `outbox` index, sorted like it by due time:
/// `{appid}\0{shelf}\0{due:020}\0{key}` for every entry on a shelf, kept in the same
/// transaction as the entry.
const OUTBOX: TableDefinition<&str, ()> = TableDefinition::new("outbox_by_due");
/// The index before it was sorted by due time (`{appid}\0{shelf}\0{key}`): rebuilt into
/// `OUTBOX` and dropped when a store from before opens.
const OUTBOX_BY_KEY: TableDefinition<&str, ()> = TableDefinition::new("outbox");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
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

    /// One read-check-write on an entry.
    async fn entry_txn<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(Option<InboxEntry>) -> (Option<InboxEntry>, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = key.to_owned();
        self.write_txn(move |txn| {
            let mut tables = Tables::open(txn)?;
            let old = read_entry(&tables.inbox, &key)?;
            let (new, out) = f(old.clone());
            if let Some(new) = new {
                tables.write(old.as_ref(), &new)?;
            }
            Ok(out)
        })
        .await
    }
}

/// A piece of state (not a message): an answered entry holding `value`.
fn state_entry(key: &str, appid: &str, value: &str, expires_at: i64) -> InboxEntry {
    InboxEntry {
        key: key.to_owned(),
        appid: appid.to_owned(),
        payload: String::new(),
        state: EntryState::Answered,
        claim_id: String::new(),
        attempts: 0,
        answer: Some(value.to_owned()),
        last_error: None,
        lease_until_ms: 0,
        expires_at,
        group: String::new(),
        since_ms: 0,
        queued: false,
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

/// `outcome` applied to an entry `claim_id` owns.
fn settle(e: &mut InboxEntry, outcome: Settle) {
    e.claim_id.clear();
    match outcome {
        Settle::Answered(a) => {
            e.state = EntryState::Answered;
            e.answer = Some(a);
        }
        Settle::Pending {
            error,
            due_ms,
            group,
            answer,
            expires_at,
            queued,
        } => {
            // Rule `keep_until`: the caller's time replaces the claim's, as DynamoDB's
            // `SET expires_at` does (callers never pass an earlier one: outbox::expires_at).
            e.expires_at = expires_at;
            e.queued = queued;
            e.state = EntryState::Pending;
            e.last_error = Some(error);
            e.lease_until_ms = due_ms;
            e.group = group;
            if answer.is_some() {
                e.answer = answer;
            }
        }
        Settle::Dead(why, expires_at, at_ms) => {
            e.expires_at = expires_at;
            e.state = EntryState::Dead;
            e.last_error = Some(why);
            // The dead shelf is ordered by when they died, as DynamoDB's `due`.
            e.lease_until_ms = at_ms;
        }
    }
}

fn apply_batch(db: &Database, batch: Vec<Op>, sweep: bool) {
    let mut replies = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut tables = Tables::open(&txn)?;
            if sweep {
                let now_s = crate::support::clock::unix_ms() / 1000;
                tables
                    .inbox
                    .retain(|_, v| {
                        serde_json::from_slice::<InboxEntry>(v)
                            .map(|e| e.expires_at > now_s)
                            .unwrap_or(false)
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
                match op {
                    Op::Claim(entry, claim_now_ms, reply) => {
                        let existing = read_entry(&tables.inbox, &entry.key)?;
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
                                tables.write(existing.as_ref(), &entry)?;
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
                        outcome,
                        reply,
                    } => {
                        let owned = match read_entry(&tables.inbox, &key)? {
                            Some(old)
                                if !claim_id.is_empty()
                                    && old.claim_id == claim_id
                                    && matches!(
                                        old.state,
                                        EntryState::InFlight | EntryState::Pending
                                    ) =>
                            {
                                let mut e = old.clone();
                                settle(&mut e, outcome);
                                tables.write(Some(&old), &e)?;
                                true
                            }
                            _ => false,
                        };
                        replies.push(Reply::Finish(reply, owned));
                    }
                    Op::PutFirst(entry, now_s, reply) => {
                        let held = match read_entry(&tables.inbox, &entry.key)? {
                            Some(live) if live.expires_at > now_s => {
                                live.answer.unwrap_or_default()
                            }
                            old => {
                                tables.write(old.as_ref(), &entry)?;
                                entry.answer.clone().unwrap_or_default()
                            }
                        };
                        replies.push(Reply::PutFirst(reply, held));
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
            group: c.group.to_owned(),
            since_ms: c.now_ms,
            queued: false,
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
        let outcome = match outcome {
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
        };
        let (tx, rx) = oneshot::channel();
        self.send(
            Op::Finish {
                key: key.to_owned(),
                claim_id: claim_id.to_owned(),
                outcome,
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

    async fn put_state(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let entry = state_entry(key, appid, value, expires_at);
        self.entry_txn(key, move |_| (Some(entry), ())).await
    }

    async fn put_first(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        // Through the batching writer, like claims: one commit (and fsync) serves many.
        let entry = state_entry(key, appid, value, expires_at);
        let (tx, rx) = oneshot::channel();
        self.send(Op::PutFirst(entry, now_ms / 1000, tx), rx).await
    }

    async fn swap_state(&self, swap: &StateSwap<'_>) -> Result<bool, StoreError> {
        let entry = state_entry(swap.key, swap.appid, swap.value, swap.expires_at);
        let expected = swap.expected.map(str::to_owned);
        let now_s = swap.now_ms / 1000;
        self.entry_txn(swap.key, move |cur| {
            let held = cur
                .filter(|e| e.expires_at > now_s)
                .map(|e| e.answer.unwrap_or_default());
            if held == expected {
                (Some(entry), true)
            } else {
                (None, false)
            }
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write_txn(move |txn| Tables::open(txn)?.remove(&key))
            .await
    }

    async fn remove_if(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write_txn(move |txn| {
            let mut tables = Tables::open(txn)?;
            let holds = read_entry(&tables.inbox, &key)?
                .is_some_and(|e| e.answer.as_deref() == Some(value.as_str()));
            if holds {
                tables.remove(&key)?;
            }
            Ok(())
        })
        .await
    }

    async fn take(
        &self,
        key: &str,
        claim_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Taken, StoreError> {
        let claim_id = claim_id.to_owned();
        self.entry_txn(key, move |old| match decide_take(old.as_ref(), now_ms) {
            Taken::Entry(mut e) => {
                e.state = EntryState::Pending;
                e.queued = true;
                e.claim_id = claim_id;
                e.lease_until_ms = lease_until_ms;
                e.attempts += 1;
                (Some(e.clone()), Taken::Entry(e))
            }
            other => (None, other),
        })
        .await
    }

    async fn outbox(
        &self,
        appid: &str,
        shelf: Shelf,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let index = txn.open_table(OUTBOX).map_err(unavailable)?;
        let inbox = txn.open_table(INBOX).map_err(unavailable)?;
        let prefix = format!("{appid}\0{}\0", shelf.as_str());
        let mut out = Vec::new();
        for row in index.range(prefix.as_str()..).map_err(unavailable)? {
            let (k, _) = row.map_err(unavailable)?;
            let Some(due_and_key) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            let Some((_, key)) = due_and_key.split_once('\0') else {
                continue;
            };
            if let Some(e) = read_entry(&inbox, key)?
                .filter(|e| e.expires_at * 1000 > now_ms && Shelf::of(e) == Some(shelf))
            {
                out.push(e);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        self.entry_txn(key, move |old| match old {
            Some(mut e) if e.state == EntryState::Pending && !e.queued => {
                e.queued = true;
                (Some(e), ())
            }
            _ => (None, ()),
        })
        .await
    }

    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.entry_txn(key, move |old| match old {
            Some(mut e)
                if e.expires_at * 1000 > now_ms
                    && matches!(e.state, EntryState::Pending | EntryState::Dead) =>
            {
                e.state = EntryState::Pending;
                e.queued = false;
                e.claim_id.clear();
                e.lease_until_ms = now_ms;
                e.since_ms = now_ms;
                (Some(e), true)
            }
            _ => (None, false),
        })
        .await
    }
}

impl EmbeddedStore {
    /// One token operation in its own write transaction. redb serialises write
    /// transactions, so a read-check-write inside one is atomic like a conditional write.
    async fn token_txn<T: Send + 'static>(
        &self,
        appid: &str,
        f: impl FnOnce(Option<TokenRecord>) -> (Option<TokenRecord>, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let appid = appid.to_owned();
        self.write_txn(move |txn| {
            let mut table = txn.open_table(TOKENS).map_err(unavailable)?;
            let current = match table.get(appid.as_str()).map_err(unavailable)? {
                Some(v) => Some(
                    serde_json::from_slice::<TokenRecord>(v.value())
                        .map_err(|e| StoreError::Corrupt(format!("token {appid}: {e}")))?,
                ),
                None => None,
            };
            let (write, out) = f(current);
            if let Some(rec) = write {
                let bytes =
                    serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                table
                    .insert(appid.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(TOKENS).map_err(unavailable)?;
        match table.get(appid).map_err(unavailable)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("token {appid}: {e}"))),
            None => Ok(None),
        }
    }

    async fn try_lease(
        &self,
        appid: &str,
        owner: &str,
        seen_version: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.token_txn(appid, move |cur| {
            let mut rec = cur.unwrap_or(TokenRecord {
                token: String::new(),
                expires_at_ms: 0,
                version: 0,
                lease_owner: String::new(),
                lease_until_ms: 0,
            });
            if rec.lease_until_ms >= now_ms || rec.version != seen_version {
                return (None, false);
            }
            rec.lease_owner = owner;
            rec.lease_until_ms = until_ms;
            (Some(rec), true)
        })
        .await
    }

    async fn replace(
        &self,
        appid: &str,
        owner: &str,
        version: u64,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let (owner, token) = (owner.to_owned(), token.to_owned());
        self.token_txn(appid, move |cur| match cur {
            Some(mut rec) if rec.version == version && rec.lease_owner == owner => {
                rec.token = token;
                rec.expires_at_ms = expires_at_ms;
                rec.version += 1;
                rec.lease_owner.clear();
                rec.lease_until_ms = 0;
                (Some(rec), true)
            }
            _ => (None, false),
        })
        .await
    }

    async fn release(&self, appid: &str, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.token_txn(appid, move |cur| match cur {
            Some(mut rec) if rec.lease_owner == owner => {
                rec.lease_owner.clear();
                rec.lease_until_ms = 0;
                (Some(rec), ())
            }
            _ => (None, ()),
        })
        .await
    }

    async fn invalidate(&self, appid: &str, token: &str) -> Result<bool, StoreError> {
        let token = token.to_owned();
        self.token_txn(appid, move |cur| match cur {
            Some(mut rec) if rec.token == token && rec.expires_at_ms != 0 => {
                rec.expires_at_ms = 0;
                (Some(rec), true)
            }
            _ => (None, false),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
