//! The access_token authority on the embedded store: each method applies its rule of
//! `store::rules` in one write transaction (redb serialises them, so a read-check-write
//! inside one is atomic like a conditional write).

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::{EmbeddedStore, TOKENS};
use crate::store::queue::unavailable;
use crate::store::{StoreError, Ticket, TokenRecord, TokenStore, rules, ticket_key};

fn read(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    appid: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    read_json(table, appid)
}

/// The record under `key`, whichever kind this table holds there.
fn read_json<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(unavailable)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("token {key}: {e}"))),
        None => Ok(None),
    }
}

impl EmbeddedStore {
    /// `rule` applied to one account's record in its own write transaction; true when it
    /// wrote.
    async fn token_txn(
        &self,
        appid: &str,
        rule: impl FnOnce(Option<&TokenRecord>) -> Option<TokenRecord> + Send + 'static,
    ) -> Result<bool, StoreError> {
        let appid = appid.to_owned();
        self.write_txn(move |txn| {
            let mut table = txn.open_table(TOKENS).map_err(unavailable)?;
            let current = read(&table, &appid)?;
            let Some(rec) = rule(current.as_ref()) else {
                return Ok(false);
            };
            let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            table
                .insert(appid.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(TOKENS).map_err(unavailable)?;
        read(&table, appid)
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
            rules::token_lease(cur, &owner, seen_version, now_ms, until_ms)
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
        self.token_txn(appid, move |cur| {
            rules::token_replace(cur, &owner, version, &token, expires_at_ms)
        })
        .await
    }

    async fn release(&self, appid: &str, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.token_txn(appid, move |cur| rules::token_release(cur, &owner))
            .await
            .map(|_| ())
    }

    async fn invalidate(&self, appid: &str, token: &str) -> Result<bool, StoreError> {
        let token = token.to_owned();
        self.token_txn(appid, move |cur| rules::token_invalidate(cur, &token))
            .await
    }

    async fn put_ticket(&self, component_appid: &str, ticket: &Ticket) -> Result<bool, StoreError> {
        let key = ticket_key(component_appid);
        let ticket = ticket.clone();
        self.write_txn(move |txn| {
            let mut table = txn.open_table(TOKENS).map_err(unavailable)?;
            let current = read_json::<Ticket>(&table, &key)?;
            let Some(rec) = rules::ticket_put(current.as_ref(), &ticket) else {
                return Ok(false);
            };
            let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            table
                .insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn ticket(&self, component_appid: &str) -> Result<Option<Ticket>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(TOKENS).map_err(unavailable)?;
        read_json(&table, &ticket_key(component_appid))
    }
}
