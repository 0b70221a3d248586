//! Storage behind small traits, each with an embedded implementation (no server) and an
//! AWS one (DynamoDB, S3). Every key is namespaced by appid by its caller.

pub mod aws;
pub mod conversation;
pub mod embedded;
pub mod idempotency;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A handler owns it until `lease_until_ms`.
    InFlight,
    /// The desk answered; `answer` is what WeChat got ("" = success).
    Answered,
    /// Forwarding failed or timed out; a retry (or a redelivery job) may take it over.
    Undelivered,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::InFlight => "in_flight",
            EntryState::Answered => "answered",
            EntryState::Undelivered => "undelivered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_flight" => EntryState::InFlight,
            "answered" => EntryState::Answered,
            "undelivered" => EntryState::Undelivered,
            _ => return None,
        })
    }
}

/// A customer message's inbox entry, which is also its dedup record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub key: String,
    pub appid: String,
    /// The plaintext message as forwarded to the desk.
    pub payload: String,
    pub state: EntryState,
    pub claim_id: String,
    pub attempts: u32,
    pub answer: Option<String>,
    pub last_error: Option<String>,
    pub lease_until_ms: i64,
    /// Unix seconds after which the record is dead (TTL), checked on read as well.
    pub expires_at: i64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns delivery; pass the id to `finish`.
    Won { claim_id: String, attempt: u32 },
    /// Another handler is delivering it right now.
    InFlight,
    /// Already answered: give WeChat the same answer again ("" = success).
    Answered(String),
}

pub struct NewClaim<'a> {
    pub key: &'a str,
    pub appid: &'a str,
    pub payload: &'a str,
    pub claim_id: &'a str,
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub expires_at: i64,
}

pub enum Outcome<'a> {
    Answered(&'a str),
    Undelivered(&'a str),
}

/// The three stores, from one backend.
#[derive(Clone)]
pub struct Stores {
    pub inbox: Arc<dyn InboxStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub media: Arc<dyn MediaStore>,
}

impl Stores {
    pub async fn open(config: &crate::config::StoreConfig) -> Result<Stores, StoreError> {
        Ok(match config {
            crate::config::StoreConfig::Embedded { path } => {
                let db = Arc::new(embedded::EmbeddedStore::open(path)?);
                Stores {
                    inbox: db.clone(),
                    tokens: db,
                    media: Arc::new(embedded::EmbeddedMedia::open(&path.join("media"))?),
                }
            }
            crate::config::StoreConfig::Aws {
                dedup_table,
                tokens_table,
                media_bucket,
            } => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                Stores {
                    inbox: Arc::new(aws::AwsStore::new(ddb.clone(), dedup_table)),
                    tokens: match tokens_table {
                        Some(t) => Arc::new(aws::AwsTokens::new(ddb, t)),
                        None => Arc::new(NotConfigured("store.tokens_table (WXDESK_TOKENS_TABLE)")),
                    },
                    media: match media_bucket {
                        Some(b) => {
                            // Custom endpoints (moto, MinIO, LocalStack) want path-style
                            // URLs; AWS itself takes virtual-hosted ones.
                            let custom = std::env::var_os("AWS_ENDPOINT_URL_S3")
                                .or_else(|| std::env::var_os("AWS_ENDPOINT_URL"))
                                .is_some();
                            let s3 = aws_sdk_s3::Client::from_conf(
                                aws_sdk_s3::config::Builder::from(&sdk)
                                    .force_path_style(custom)
                                    .build(),
                            );
                            Arc::new(aws::S3Media::new(s3, b))
                        }
                        None => Arc::new(NotConfigured("store.media_bucket (WXDESK_MEDIA_BUCKET)")),
                    },
                }
            }
        })
    }
}

/// Dedup and inbox. `claim` is one conditional write: exactly one of any number of
/// concurrent callers wins a key that is new, expired, undelivered, or whose in-flight
/// lease has run out (its handler died).
#[async_trait]
pub trait InboxStore: Send + Sync {
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError>;
    /// Records the result, only if `claim_id` still owns the entry.
    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError>;
    /// The live entry (expired ones read as absent).
    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError>;
    /// Forgets an entry (a closed conversation starts again).
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
    /// Writes a piece of conversation state (not a message) as an answered entry holding
    /// `value`, unconditionally, until `expires_at` (Unix seconds). Read it with `get`.
    async fn put_state(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreError>;
}

/// The claim rule shared by both implementations, for an existing entry.
pub(crate) fn decide(existing: Option<&InboxEntry>, now_ms: i64) -> Option<Claim> {
    let e = existing?;
    if e.expires_at * 1000 <= now_ms {
        return None;
    }
    match e.state {
        EntryState::Answered => Some(Claim::Answered(e.answer.clone().unwrap_or_default())),
        EntryState::InFlight if e.lease_until_ms > now_ms => Some(Claim::InFlight),
        EntryState::InFlight | EntryState::Undelivered => None,
    }
}

/// How logs name an inbox entry: its keys hold openids, which logs never show. The first
/// 12 hex digits of the key's SHA-256; `entry_ref` of a known key finds its log lines.
pub(crate) fn entry_ref(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let appid = key.split('#').next().unwrap_or("");
    format!("{appid}#{}", &crate::support::hex::hex_lower(&digest[..6]))
}

pub fn new_claim_id() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    crate::support::hex::hex_lower(&b)
}

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
}

/// Staged media: the bytes with what a browser needs to show or save them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedMedia {
    pub bytes: bytes::Bytes,
    pub content_type: String,
    pub filename: String,
}

/// Where media passes through: S3, or a local directory. Objects older than `MEDIA_TTL`
/// are gone (an S3 lifecycle rule; checked on read locally).
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put(&self, key: &str, media: &StagedMedia) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<StagedMedia>, StoreError>;
    /// The object's size, without its bytes.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// A short-lived URL to fetch the object directly, where the store has one.
    async fn presign(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError>;
}

/// WeChat media ids live 3 days; nothing staged outlives them.
pub(crate) const MEDIA_TTL: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// A media key's last segment made safe for a file name and an S3 key.
pub(crate) fn safe_segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    match out.trim_start_matches('.') {
        "" => "_".to_owned(),
        t => t.to_owned(),
    }
}

/// Stands in for a store the deployment did not configure: every call says which key to
/// set, so the account's other routes keep working.
pub(crate) struct NotConfigured(pub &'static str);

impl NotConfigured {
    fn err(&self) -> StoreError {
        StoreError::Unavailable(format!("not configured: set {}", self.0))
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
    async fn presign(&self, _: &str, _: std::time::Duration) -> Result<Option<String>, StoreError> {
        Err(self.err())
    }
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

    #[test]
    fn entry_refs_hide_the_openid() {
        let key = "wx1#msg#42#oCustomerOpenid0000000000001#1700000000";
        let r = entry_ref(key);
        assert!(r.starts_with("wx1#") && r.len() == 4 + 12, "{r}");
        assert!(!r.contains("oCustomer"));
        assert_eq!(r, entry_ref(key));
        assert_ne!(
            r,
            entry_ref("wx1#msg#43#oCustomerOpenid0000000000001#1700000000")
        );
    }
}
