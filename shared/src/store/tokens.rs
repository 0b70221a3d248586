//! The access_token authority's records and storage (rules: `store::rules::token_*`),
//! and the third-party platform's `component_verify_ticket`, the credential its
//! component_access_token is fetched with (rule `ticket_put`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// One account's access_token record. A record with an empty token exists once somebody
/// has taken the refresh lease for an account that never had a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token: String,
    pub expires_at_ms: i64,
    /// Bumped by every replacement: the compare in compare-and-set.
    pub version: u64,
    pub lease_owner: String,
    pub lease_until_ms: i64,
}

impl std::fmt::Debug for TokenRecord {
    // The access_token is a credential for the account's whole API: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("expires_at_ms", &self.expires_at_ms)
            .field("version", &self.version)
            .field("lease_owner", &self.lease_owner)
            .field("lease_until_ms", &self.lease_until_ms)
            .finish()
    }
}

/// A third-party platform's newest `component_verify_ticket`: WeChat pushes one every 10
/// minutes, and only a recent one fetches a component_access_token ("验证票据",
/// developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/component_verify_ticket.html).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket: String,
    /// The push's `CreateTime` (seconds): the newest push wins.
    pub created_at: i64,
}

impl std::fmt::Debug for Ticket {
    // The ticket is half of the platform's credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("ticket", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The access_token authority's storage. Every change is one conditional write, so any
/// number of processes (Lambda instances) agree on one token and one refresher.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Takes the refresh lease when nobody holds a live one and the record is still at
    /// `seen_version` (0 when there was none): a caller that read the record before
    /// somebody else's refresh landed must not refresh again. `replace` then needs the
    /// same version.
    async fn try_lease(
        &self,
        appid: &str,
        owner: &str,
        seen_version: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Compare-and-set: stores the new token only if the record is still at `version` and
    /// `owner` still holds the lease; releases the lease.
    async fn replace(
        &self,
        appid: &str,
        owner: &str,
        version: u64,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Gives the lease back without a new token (the fetch failed).
    async fn release(&self, appid: &str, owner: &str) -> Result<(), StoreError>;
    /// Marks `token` expired, only if it is still the stored one (a newer token stays).
    async fn invalidate(&self, appid: &str, token: &str) -> Result<bool, StoreError>;
    /// Stores `ticket` for the platform `component_appid` unless a newer one is stored
    /// (pushes are retried and may arrive out of order); true when it was stored.
    async fn put_ticket(&self, component_appid: &str, ticket: &Ticket) -> Result<bool, StoreError>;
    async fn ticket(&self, component_appid: &str) -> Result<Option<Ticket>, StoreError>;
}

/// The tokens store's key of a platform's ticket: appids hold no `#`, so it meets no
/// account's token record.
pub(crate) fn ticket_key(component_appid: &str) -> String {
    format!("ticket#{component_appid}")
}

/// The tokens store's key of a platform's component_access_token.
pub(crate) fn component_token_key(component_appid: &str) -> String {
    format!("component#{component_appid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_record_debug_hides_the_token() {
        let r = TokenRecord {
            token: "ACCESS_TOKEN_SECRET_VALUE".into(),
            expires_at_ms: 1,
            version: 2,
            lease_owner: String::new(),
            lease_until_ms: 0,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("ACCESS_TOKEN_SECRET_VALUE"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("version: 2"));
    }
}
