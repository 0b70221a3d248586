//! The inbox, the outbox's shelves and conversation state on the embedded store: each
//! method applies its rule of `store::rules` in one write transaction (claims, finishes
//! and first writes through the batching writer, so one fsync serves many).

use async_trait::async_trait;
use redb::ReadableDatabase;
use tokio::sync::oneshot;

use super::{EmbeddedStore, INBOX, OUTBOX, Op, Settle, Tables, read_entry};
use crate::store::queue::unavailable;
use crate::store::{
    Claim, InboxEntry, InboxStore, NewClaim, OutboxStore, Outcome, Shelf, StateStore, StateSwap,
    StoreError, Taken, rules,
};

#[async_trait]
impl InboxStore for EmbeddedStore {
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Claim(rules::fresh(c), c.now_ms, tx), rx)
            .await
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op = Op::Finish {
            key: key.to_owned(),
            claim_id: claim_id.to_owned(),
            outcome: Settle::of(outcome),
            reply: tx,
        };
        self.send(op, rx).await
    }

    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(INBOX).map_err(unavailable)?;
        Ok(rules::get(read_entry(&table, key)?.as_ref(), now_ms))
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write_txn(move |txn| Tables::open(txn)?.remove(&key))
            .await
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn put_state(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let entry = rules::state_entry(key, appid, value, expires_at);
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
        let entry = rules::state_entry(key, appid, value, expires_at);
        let (tx, rx) = oneshot::channel();
        self.send(Op::PutFirst(entry, now_ms, tx), rx).await
    }

    async fn swap_state(&self, swap: &StateSwap<'_>) -> Result<bool, StoreError> {
        let (key, appid, value) = (swap.key.to_owned(), swap.appid.to_owned(), swap.value);
        let (value, expected) = (value.to_owned(), swap.expected.map(str::to_owned));
        let (expires_at, now_ms) = (swap.expires_at, swap.now_ms);
        self.entry_txn(swap.key, move |old| {
            let swap = StateSwap {
                key: &key,
                appid: &appid,
                expected: expected.as_deref(),
                value: &value,
                expires_at,
                now_ms,
            };
            rules::swap_state(old, &swap)
        })
        .await
    }

    async fn remove_if(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write_txn(move |txn| {
            let mut tables = Tables::open(txn)?;
            if rules::remove_if(read_entry(&tables.inbox, &key)?.as_ref(), &value) {
                tables.remove(&key)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for EmbeddedStore {
    async fn take(
        &self,
        key: &str,
        claim_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Taken, StoreError> {
        let claim_id = claim_id.to_owned();
        self.entry_txn(key, move |old| {
            rules::take(old, &claim_id, now_ms, lease_until_ms)
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
            if out.len() >= limit {
                break;
            }
            let (k, _) = row.map_err(unavailable)?;
            let Some(due_and_key) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            let Some((_, key)) = due_and_key.split_once('\0') else {
                continue;
            };
            if let Some(e) = read_entry(&inbox, key)?.filter(|e| rules::listed(e, shelf, now_ms)) {
                out.push(e);
            }
        }
        Ok(out)
    }

    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        self.entry_txn(key, rules::mark_queued).await
    }

    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.entry_txn(key, move |old| rules::revive(old, now_ms))
            .await
    }
}
