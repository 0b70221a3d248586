//! The account registry's storage: accounts the store holds rather than the config: the
//! shops that authorized the install's third-party platform, and accounts an operator added
//! with `wxdesk-local accounts add` (rules: `store::rules::authorizer_*`); and the install's
//! data key, which seals their refresh tokens and settings (`support::seal`), from a local
//! key file or KMS.

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
    /// An operator disabled it (`wxdesk-local accounts disable`): served like a withdrawn
    /// one until `accounts enable`.
    Disabled,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Authorized => "authorized",
            Standing::Withdrawn => "withdrawn",
            Standing::RefreshRejected => "refresh_rejected",
            Standing::Disabled => "disabled",
        }
    }

    /// Why an account in this standing is closed, in words an agent reads; None while it
    /// is served.
    pub fn why_closed(self) -> Option<&'static str> {
        match self {
            Standing::Authorized => None,
            Standing::Withdrawn => Some("the shop withdrew its authorization of the platform"),
            Standing::RefreshRejected => {
                Some("WeChat no longer takes the shop's authorization (it must authorize again)")
            }
            Standing::Disabled => Some("an operator disabled the account"),
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Standing> {
        [
            Standing::Authorized,
            Standing::Withdrawn,
            Standing::RefreshRejected,
            Standing::Disabled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A stored account: a shop's, as its authorization of a platform made it, or (no
/// `component`) one an operator added with its own credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorizer {
    pub appid: String,
    /// The platform it authorized; empty for an account added with its own credentials.
    pub component: String,
    /// `authorizer_refresh_token`, sealed for this record (`authorizer_context`). WeChat
    /// hands it out only at authorization: lost, the shop must authorize again.
    pub sealed_refresh_token: String,
    /// The permission sets granted (`func_info[].funcscope_category.id`).
    pub permissions: Vec<u32>,
    pub standing: Standing,
    /// When the last change happened (ms): an older change arriving late is ignored.
    pub changed_at_ms: i64,
    /// Its `AccountSettings`, sealed for this record (`settings_context`): its gateway
    /// keys, name and own desk. Set at its first authorization (a new gateway key) or by
    /// `accounts add`, changed only by `set_settings`.
    #[serde(default)]
    pub sealed_settings: Option<String>,
}

impl Authorizer {
    /// Whether it is served through the platform `component` (else with its own
    /// credentials).
    pub fn is_authorized_by(&self, component: &str) -> bool {
        !self.component.is_empty() && self.component == component
    }
}

/// What an operator sets for a stored account, kept sealed (it holds keys).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The account's display name.
    #[serde(default)]
    pub name: Option<String>,
    /// A shop's kind of account (WeChat's authorization does not say): an Official
    /// Account unless set.
    #[serde(default)]
    pub kind: Option<crate::wechat::AppKind>,
    /// The key of the routes its desk calls, and the one before a rotation.
    #[serde(default)]
    pub gateway_key: Option<String>,
    #[serde(default)]
    pub previous_gateway_key: Option<String>,
    /// Its own desk (`[apps.desk]`'s TOML); none: the platform's `[component.desk]`.
    #[serde(default)]
    pub desk: Option<String>,
    /// An account with its own credentials: its `[[apps]]` entry (TOML, without the desk
    /// and the gateway keys, which are the fields above).
    #[serde(default)]
    pub app: Option<String>,
}

impl AccountSettings {
    /// Sealed for `appid`'s record.
    pub fn seal(&self, sealer: &Sealer, appid: &str) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        sealer.seal(
            &crate::support::secret::Secret::new(json),
            &settings_context(appid),
        )
    }

    /// `appid`'s record's sealed settings, opened.
    pub fn open(sealer: &Sealer, appid: &str, sealed: &str) -> Result<Self, String> {
        let plain = sealer
            .open(sealed, &settings_context(appid))
            .map_err(|_| "its settings do not open with this install's data key".to_owned())?;
        serde_json::from_str(plain.expose())
            .map_err(|e| format!("its settings are unreadable: {e}"))
    }
}

impl std::fmt::Debug for AccountSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSettings")
            .field("name", &self.name)
            .field("has_gateway_key", &self.gateway_key.is_some())
            .field("has_desk", &self.desk.is_some())
            .field("has_app", &self.app.is_some())
            .finish_non_exhaustive()
    }
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

/// The associated data a stored account's settings are sealed with (a sealed value moved to
/// another record, or into the refresh token's place, does not open).
pub(crate) fn settings_context(appid: &str) -> String {
    format!("settings#{appid}")
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
    /// Replaces a stored account's sealed settings at `at_ms`, unless it changed later
    /// (rule `authorizer_settings`); false when there is none or it changed later.
    async fn set_settings(&self, appid: &str, sealed: &str, at_ms: i64)
    -> Result<bool, StoreError>;
    /// Stored accounts in appid order, from after `after`, at most `limit` (a page).
    async fn authorizers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Authorizer>, StoreError>;
    /// The install's data key, as a sealer (read once, then cached by the caller).
    async fn sealer(&self) -> Result<Sealer, StoreError>;
}
