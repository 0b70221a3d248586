//! The account registry's storage: accounts the store holds rather than the config. For
//! now, the shops that authorized the install's third-party platform (rules:
//! `store::rules::authorizer_*`); and the install's data key, which seals their refresh
//! tokens (`support::seal`), from a local key file or KMS.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::support::seal::Sealer;

/// Where an authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Authorized,
    /// The shop withdrew it (`unauthorized`): its routes answer 404, its outbox stops.
    Withdrawn,
    /// WeChat refused the refresh token: only a new authorization brings the account back.
    RefreshRejected,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Authorized => "authorized",
            Standing::Withdrawn => "withdrawn",
            Standing::RefreshRejected => "refresh_rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Standing> {
        [
            Standing::Authorized,
            Standing::Withdrawn,
            Standing::RefreshRejected,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A shop's account as its authorization of a platform made it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorizer {
    pub appid: String,
    /// The platform it authorized.
    pub component: String,
    /// `authorizer_refresh_token`, sealed for this record (`authorizer_context`). WeChat
    /// hands it out only at authorization: lost, the shop must authorize again.
    pub sealed_refresh_token: String,
    /// The permission sets granted (`func_info[].funcscope_category.id`).
    pub permissions: Vec<u32>,
    pub standing: Standing,
    /// When the last change happened (ms): an older change arriving late is ignored.
    pub changed_at_ms: i64,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("appid", &self.appid)
            .field("component", &self.component)
            .field("permissions", &self.permissions)
            .field("standing", &self.standing)
            .field("changed_at_ms", &self.changed_at_ms)
            .finish_non_exhaustive()
    }
}

/// The associated data an authorizer's refresh token is sealed with: its record's key.
pub(crate) fn authorizer_context(appid: &str) -> String {
    format!("authorizer#{appid}")
}

#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Stores `a` unless the stored record changed later (rule `authorizer_put`).
    async fn put_authorizer(&self, a: &Authorizer) -> Result<bool, StoreError>;
    async fn authorizer(&self, appid: &str) -> Result<Option<Authorizer>, StoreError>;
    /// Moves a stored authorizer to `standing` at `at_ms`, unless it changed later (rule
    /// `authorizer_standing`); false when there is none or it changed later.
    async fn set_standing(
        &self,
        appid: &str,
        standing: Standing,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// The install's data key, as a sealer (read once, then cached by the caller).
    async fn sealer(&self) -> Result<Sealer, StoreError>;
}
