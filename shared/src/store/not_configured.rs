//! Stands in for a store the deployment did not configure (or that a command does not
//! open): every call says which key to set, so the routes and checks that need no store
//! keep working.

use async_trait::async_trait;

use super::{
    Authorizer, Claim, InboxEntry, InboxStore, MediaStore, NewClaim, OutboxStore, Outcome,
    RegistryStore, Shelf, StagedMedia, Standing, StateStore, StoreError, Taken, Ticket,
    TokenRecord, TokenStore, queue,
};

/// Stands in for a store the deployment did not configure: every call says which key to
/// set, so the account's other routes keep working.
pub(crate) struct NotConfigured(pub &'static str);

impl NotConfigured {
    fn err(&self) -> StoreError {
        StoreError::Unavailable(format!("not configured: set {}", self.0))
    }
}

#[async_trait]
impl RegistryStore for NotConfigured {
    async fn put_authorizer(&self, _: &Authorizer) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn authorizer(&self, _: &str) -> Result<Option<Authorizer>, StoreError> {
        Err(self.err())
    }
    async fn set_standing(&self, _: &str, _: Standing, _: i64) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn set_settings(&self, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn authorizers(&self, _: Option<&str>, _: usize) -> Result<Vec<Authorizer>, StoreError> {
        Err(self.err())
    }
    async fn sealer(&self) -> Result<crate::support::seal::Sealer, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl TokenStore for NotConfigured {
    async fn get(&self, _: &str) -> Result<Option<TokenRecord>, StoreError> {
        Err(self.err())
    }
    async fn try_lease(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn replace(&self, _: &str, _: &str, _: u64, _: &str, _: i64) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn release(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn invalidate(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn put_ticket(&self, _: &str, _: &Ticket) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn ticket(&self, _: &str) -> Result<Option<Ticket>, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl queue::JobQueue for NotConfigured {
    async fn enqueue(&self, _: &queue::Job) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn receive(
        &self,
        _: usize,
        _: std::time::Duration,
    ) -> Result<Vec<queue::Leased>, StoreError> {
        Err(self.err())
    }
    async fn done(&self, _: &queue::Leased) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn later(&self, _: &queue::Leased, _: std::time::Duration) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn ready(&self) -> Result<(), StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl MediaStore for NotConfigured {
    async fn put(&self, _: &str, _: &StagedMedia) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn get(&self, _: &str) -> Result<Option<StagedMedia>, StoreError> {
        Err(self.err())
    }
    async fn size(&self, _: &str) -> Result<Option<u64>, StoreError> {
        Err(self.err())
    }
    async fn remove(&self, _: &str) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn presign(&self, _: &str, _: std::time::Duration) -> Result<Option<String>, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl InboxStore for NotConfigured {
    async fn claim(&self, _: &NewClaim<'_>) -> Result<Claim, StoreError> {
        Err(self.err())
    }
    async fn finish(&self, _: &str, _: &str, _: Outcome<'_>) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn get(&self, _: &str, _: i64) -> Result<Option<InboxEntry>, StoreError> {
        Err(self.err())
    }
    async fn remove(&self, _: &str) -> Result<(), StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl StateStore for NotConfigured {
    async fn put_state(&self, _: &str, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn put_first(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<String, StoreError> {
        Err(self.err())
    }
    async fn swap_state(&self, _: &super::StateSwap<'_>) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn remove_if(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl OutboxStore for NotConfigured {
    async fn take(&self, _: &str, _: &str, _: i64, _: i64) -> Result<Taken, StoreError> {
        Err(self.err())
    }
    async fn outbox(
        &self,
        _: &str,
        _: Shelf,
        _: usize,
        _: i64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        Err(self.err())
    }
    async fn mark_queued(&self, _: &str) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn revive(&self, _: &str, _: i64) -> Result<bool, StoreError> {
        Err(self.err())
    }
}
