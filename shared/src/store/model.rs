//! The reference model of the inbox and token stores: the rules of `store::rules` applied
//! to maps in memory under one lock, with nothing else in the way. The store contract test
//! runs the same operations on it, on redb and on DynamoDB Local, and holds the real
//! stores to its answers; it is not a store to run wxdesk on (nothing survives a restart).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Authorizer, Claim, InboxEntry, InboxStore, NewClaim, OutboxStore, Outcome, RegistryStore,
    Shelf, Standing, StateStore, StateSwap, StoreError, Taken, Ticket, TokenRecord, TokenStore,
    rules,
};

#[derive(Default)]
pub struct ModelStore {
    inbox: Mutex<BTreeMap<String, InboxEntry>>,
    tokens: Mutex<BTreeMap<String, TokenRecord>>,
    tickets: Mutex<BTreeMap<String, Ticket>>,
    authorizers: Mutex<BTreeMap<String, Authorizer>>,
}

impl ModelStore {
    fn entry<T>(&self, key: &str, rule: impl FnOnce(Option<&InboxEntry>) -> rules::Step<T>) -> T {
        let mut map = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let (write, out) = rule(map.get(key));
        if let Some(e) = write {
            map.insert(key.to_owned(), e);
        }
        out
    }

    fn token(
        &self,
        appid: &str,
        rule: impl FnOnce(Option<&TokenRecord>) -> Option<TokenRecord>,
    ) -> bool {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match rule(map.get(appid)) {
            Some(rec) => {
                map.insert(appid.to_owned(), rec);
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl InboxStore for ModelStore {
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        Ok(self.entry(c.key, |old| rules::claim(old, rules::fresh(c), c.now_ms)))
    }
    async fn finish(&self, key: &str, claim_id: &str, o: Outcome<'_>) -> Result<bool, StoreError> {
        Ok(self.entry(key, |old| rules::finish(old, claim_id, &o)))
    }
    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self.entry(key, |old| (None, rules::get(old, now_ms))))
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut map = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
        Ok(())
    }
}

#[async_trait]
impl StateStore for ModelStore {
    async fn put_state(&self, key: &str, appid: &str, v: &str, exp: i64) -> Result<(), StoreError> {
        let e = rules::state_entry(key, appid, v, exp);
        self.entry(key, |_| (Some(e), ()));
        Ok(())
    }
    async fn put_first(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let e = rules::state_entry(key, appid, value, expires_at);
        Ok(self.entry(key, |old| rules::put_first(old, e, now_ms)))
    }
    async fn swap_state(&self, swap: &StateSwap<'_>) -> Result<bool, StoreError> {
        Ok(self.entry(swap.key, |old| rules::swap_state(old, swap)))
    }
    async fn remove_if(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut map = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if rules::remove_if(map.get(key), value) {
            map.remove(key);
        }
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for ModelStore {
    async fn take(&self, key: &str, id: &str, now: i64, until: i64) -> Result<Taken, StoreError> {
        Ok(self.entry(key, |old| rules::take(old, id, now, until)))
    }
    async fn outbox(
        &self,
        appid: &str,
        shelf: Shelf,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let map = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let mut listed: Vec<_> = map
            .values()
            .filter(|e| e.appid == appid && rules::listed(e, shelf, now_ms))
            .cloned()
            .collect();
        listed.sort_by_key(rules::due);
        listed.truncate(limit);
        Ok(listed)
    }
    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        self.entry(key, rules::mark_queued);
        Ok(())
    }
    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.entry(key, |old| rules::revive(old, now_ms)))
    }
}

#[async_trait]
impl TokenStore for ModelStore {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(appid).cloned())
    }
    async fn try_lease(
        &self,
        appid: &str,
        owner: &str,
        seen: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.token(appid, |c| {
            rules::token_lease(c, owner, seen, now_ms, until_ms)
        }))
    }
    async fn replace(
        &self,
        appid: &str,
        owner: &str,
        version: u64,
        token: &str,
        exp: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.token(appid, |c| {
            rules::token_replace(c, owner, version, token, exp)
        }))
    }
    async fn release(&self, appid: &str, owner: &str) -> Result<(), StoreError> {
        self.token(appid, |c| rules::token_release(c, owner));
        Ok(())
    }
    async fn invalidate(&self, appid: &str, token: &str) -> Result<bool, StoreError> {
        Ok(self.token(appid, |c| rules::token_invalidate(c, token)))
    }
    async fn put_ticket(&self, component: &str, ticket: &Ticket) -> Result<bool, StoreError> {
        let mut map = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(t) = rules::ticket_put(map.get(component), ticket) else {
            return Ok(false);
        };
        map.insert(component.to_owned(), t);
        Ok(true)
    }
    async fn ticket(&self, component: &str) -> Result<Option<Ticket>, StoreError> {
        let map = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(component).cloned())
    }
}

#[async_trait]
impl RegistryStore for ModelStore {
    async fn put_authorizer(&self, a: &Authorizer) -> Result<bool, StoreError> {
        let mut map = self.authorizers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = rules::authorizer_put(map.get(&a.appid), a) else {
            return Ok(false);
        };
        map.insert(a.appid.clone(), rec);
        Ok(true)
    }
    async fn authorizer(&self, appid: &str) -> Result<Option<Authorizer>, StoreError> {
        let map = self.authorizers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(appid).cloned())
    }
    async fn set_standing(
        &self,
        appid: &str,
        standing: Standing,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut map = self.authorizers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = rules::authorizer_standing(map.get(appid), standing, at_ms) else {
            return Ok(false);
        };
        map.insert(appid.to_owned(), rec);
        Ok(true)
    }
    async fn set_settings(
        &self,
        appid: &str,
        sealed: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut map = self.authorizers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = rules::authorizer_settings(map.get(appid), sealed, at_ms) else {
            return Ok(false);
        };
        map.insert(appid.to_owned(), rec);
        Ok(true)
    }
    async fn authorizers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Authorizer>, StoreError> {
        let map = self.authorizers.lock().unwrap_or_else(|p| p.into_inner());
        let from = after.map_or(std::ops::Bound::Unbounded, |a| {
            std::ops::Bound::Excluded(a.to_owned())
        });
        Ok(map
            .range((from, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect())
    }
    /// A key of zeros: the model keeps nothing secret (it is never a store to run on).
    async fn sealer(&self) -> Result<crate::support::seal::Sealer, StoreError> {
        Ok(crate::support::seal::Sealer::new(&[0u8; 32]))
    }
}
