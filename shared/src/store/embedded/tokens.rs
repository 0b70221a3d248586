//! The access_token authority on the embedded store: each method applies its rule of
//! `store::rules` to a record of the tokens table (`records`).

use super::{EmbeddedStore, TOKENS};
use crate::store::{StoreError, Ticket, TokenRecord, TokenStore, rules, ticket_key};
use async_trait::async_trait;

impl EmbeddedStore {
    /// `rule` applied to one account's record in its own write transaction; true when it
    /// wrote.
    async fn token_txn(
        &self,
        appid: &str,
        rule: impl FnOnce(Option<&TokenRecord>) -> Option<TokenRecord> + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.record_txn(TOKENS, appid.to_owned(), rule).await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.record(TOKENS, appid)
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
        let ticket = ticket.clone();
        self.record_txn(TOKENS, ticket_key(component_appid), move |cur| {
            rules::ticket_put(cur, &ticket)
        })
        .await
    }

    async fn ticket(&self, component_appid: &str) -> Result<Option<Ticket>, StoreError> {
        self.record(TOKENS, &ticket_key(component_appid))
    }
}
