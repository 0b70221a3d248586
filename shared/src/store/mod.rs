//! Storage behind small traits, each with an embedded implementation (no server) and an
//! AWS one (DynamoDB, S3). Every key is namespaced by appid by its caller.

pub mod aws;
pub mod conversation;
#[cfg(feature = "local")]
pub mod embedded;
#[cfg(feature = "local")]
mod embedded_media;
#[cfg(feature = "local")]
pub mod embedded_queue;
pub mod idempotency;
mod not_configured;
pub mod queue;

pub(crate) use not_configured::NotConfigured;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The embedded store's file is held by another process (a running wxdesk-local).
    #[error("{0} is in use by another process (a running wxdesk-local?)")]
    InUse(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A handler owns it until `lease_until_ms`.
    InFlight,
    /// The desk answered; `answer` is what WeChat got ("" = success).
    Answered,
    /// Written by earlier versions for a failed delivery; claimable like a new entry.
    Undelivered,
    /// Owned by the outbox: a worker delivers it at `lease_until_ms` (its next attempt),
    /// or is delivering it now when it holds a claim.
    Pending,
    /// The outbox gave up (a permanent refusal, or `max_age_secs` passed); `last_error`
    /// says why. `outbox replay` makes it pending again.
    Dead,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::InFlight => "in_flight",
            EntryState::Answered => "answered",
            EntryState::Undelivered => "undelivered",
            EntryState::Pending => "pending",
            EntryState::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_flight" => EntryState::InFlight,
            "answered" => EntryState::Answered,
            "undelivered" => EntryState::Undelivered,
            "pending" => EntryState::Pending,
            "dead" => EntryState::Dead,
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
    /// The queue group (one customer, one direction) a pending entry is delivered in.
    #[serde(default)]
    pub group: String,
    /// When the entry was first claimed (ms): `max_age_secs` counts from here.
    #[serde(default)]
    pub since_ms: i64,
    /// A pending entry whose job the queue holds (false: the sweep must queue it).
    #[serde(default)]
    pub queued: bool,
}

/// The outbox's shelves: which entries a listing, the sweep or a replay looks at. Each is
/// one partition of DynamoDB's sparse `outbox` index (`{appid}#{shelf}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelf {
    /// Pending, with a job in the queue.
    Queued,
    /// Pending, but queueing its job failed: the sweep queues it.
    Unqueued,
    /// A message being delivered by its handler right now (or whose handler died: the
    /// sweep queues it once its lease has run out).
    InFlight,
    Dead,
}

impl Shelf {
    pub fn as_str(self) -> &'static str {
        match self {
            Shelf::Queued => "pending",
            Shelf::Unqueued => "unqueued",
            Shelf::InFlight => "in_flight",
            Shelf::Dead => "dead",
        }
    }

    /// The shelf an entry sits on, if any.
    pub fn of(e: &InboxEntry) -> Option<Shelf> {
        match e.state {
            EntryState::Pending if e.queued => Some(Shelf::Queued),
            EntryState::Pending => Some(Shelf::Unqueued),
            EntryState::InFlight if !e.group.is_empty() => Some(Shelf::InFlight),
            EntryState::Dead => Some(Shelf::Dead),
            _ => None,
        }
    }

    /// The index partition of `shelf` for the account of `key` (`{appid}#...`).
    pub(crate) fn partition(self, key: &str) -> String {
        let appid = key.split('#').next().unwrap_or("");
        format!("{appid}#{}", self.as_str())
    }
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
    /// The queue group of a message ("" for marks that are not messages). A message's
    /// in-flight entry is listed in the outbox index, so a sweep finds it if its handler
    /// dies (a killed process, a frozen Lambda) and nobody retries it.
    pub group: &'a str,
}

/// `InboxStore::swap_state`'s arguments.
pub struct StateSwap<'a> {
    pub key: &'a str,
    pub appid: &'a str,
    /// The value the write expects to replace; None: the key holds no live entry.
    pub expected: Option<&'a str>,
    pub value: &'a str,
    /// Unix seconds.
    pub expires_at: i64,
    pub now_ms: i64,
}

#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// Delivered; `answer` is what a repeated push gets.
    Answered(&'a str),
    /// Handed to the outbox: delivered by a worker from `due_ms` on, in `group`'s order.
    /// `answer` is a desk answer already obtained, still to reach the customer.
    Pending {
        error: &'a str,
        due_ms: i64,
        group: &'a str,
        answer: Option<&'a str>,
        /// The entry lives until then (Unix seconds), replacing the claim's time on both
        /// stores: callers pass one past `max_age_secs` and never earlier than the claim's.
        expires_at: i64,
        /// Whether the queue holds its job (queued before this is recorded).
        queued: bool,
    },
    /// Never to be delivered: `why` is kept for the operator until `expires_at`. `at_ms`
    /// (the caller's clock, never the store's) orders the dead shelf.
    Dead {
        why: &'a str,
        expires_at: i64,
        at_ms: i64,
    },
}

/// What a worker's `take` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The worker owns the entry (with the claim id it gave) until its lease runs out.
    Entry(InboxEntry),
    /// Pending, but not before this time (ms), or another worker holds it until then.
    NotDue(i64),
    /// A message whose handler is still recording it (its job can arrive first).
    Busy,
    /// Delivered, dead, expired or gone: nothing to do.
    Settled,
}

/// The stores and the delivery queue, from one backend.
#[derive(Clone)]
pub struct Stores {
    pub inbox: Arc<dyn InboxStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub media: Arc<dyn MediaStore>,
    pub queue: Arc<dyn queue::JobQueue>,
}

impl Stores {
    /// No store at all, for a command that must not open one (the store is held by a
    /// running server): every call fails, naming `why`.
    pub fn none(why: &'static str) -> Stores {
        let none = Arc::new(NotConfigured(why));
        Stores {
            inbox: none.clone(),
            tokens: none.clone(),
            media: none.clone(),
            queue: none,
        }
    }

    pub async fn open(config: &crate::config::StoreConfig) -> Result<Stores, StoreError> {
        Self::open_with(config, None).await
    }

    /// As `open`, on an AWS SDK config already loaded (Lambda init loads it once).
    pub async fn open_with(
        config: &crate::config::StoreConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Stores, StoreError> {
        Ok(match config {
            #[cfg(not(feature = "local"))]
            crate::config::StoreConfig::Embedded { .. } => {
                return Err(StoreError::Unavailable(
                    "this build has no embedded store: set [store] backend = \"aws\" (Lambda), or run wxdesk-local".into(),
                ));
            }
            #[cfg(feature = "local")]
            crate::config::StoreConfig::Embedded { path } => {
                let db = Arc::new(embedded::EmbeddedStore::open(path)?);
                Stores {
                    inbox: db.clone(),
                    tokens: db.clone(),
                    queue: Arc::new(embedded_queue::EmbeddedQueue::new(db)),
                    media: Arc::new(embedded::EmbeddedMedia::open(&path.join("media"))?),
                }
            }
            crate::config::StoreConfig::Aws {
                dedup_table,
                tokens_table,
                media_bucket,
                queue_url,
            } => {
                let sdk = match sdk {
                    Some(sdk) => sdk.clone(),
                    None => aws::sdk_loader().load().await,
                };
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                Stores {
                    queue: match queue_url {
                        Some(url) => {
                            Arc::new(queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url))
                        }
                        None => Arc::new(NotConfigured("store.queue_url (WXDESK_QUEUE_URL)")),
                    },
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
    /// Records the result, only if `claim_id` still owns the entry (in flight, or taken
    /// by a worker).
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
    /// Writes a piece of state as `put_state` does, but only where no live entry holds
    /// `key`; returns the value in force (`value` when the key was free). One conditional
    /// write: of any number of concurrent callers, one value wins and all see it.
    async fn put_first(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<String, StoreError>;
    /// Writes a piece of state only while the live value is `expected` (None: no live
    /// entry); true when written. One conditional write: concurrent writers that read the
    /// same value cannot both win (a counter spent from several processes).
    async fn swap_state(&self, swap: &StateSwap<'_>) -> Result<bool, StoreError>;
    /// Forgets a piece of conversation state only while it still holds `value`.
    async fn remove_if(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// A worker takes a pending entry that is due and nobody holds, or an in-flight
    /// message whose handler's lease ran out: one conditional write, so one worker of any
    /// number delivers it. The entry becomes pending and queued; counts an attempt.
    async fn take(
        &self,
        key: &str,
        claim_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Taken, StoreError>;
    /// One account's entries on `shelf` not expired at `now_ms`, at most `limit`, the
    /// earliest due first (lease time; for the dead, when they died): past the limit the
    /// most overdue are the ones listed, on both stores (DynamoDB: the sparse `outbox`
    /// index sorted by `due`, never a scan; embedded: an index keyed by due time).
    async fn outbox(
        &self,
        appid: &str,
        shelf: Shelf,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<InboxEntry>, StoreError>;
    /// Records that a pending entry's job is queued (after the sweep or a replay queued it).
    async fn mark_queued(&self, key: &str) -> Result<(), StoreError>;
    /// Makes a pending or dead entry due now, with a fresh `max_age_secs`, not queued
    /// (queue it, then `mark_queued`); false when the entry is neither.
    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, StoreError>;
}

/// The take rule shared by both implementations, for an existing entry.
pub(crate) fn decide_take(existing: Option<&InboxEntry>, now_ms: i64) -> Taken {
    match existing {
        Some(e)
            if e.expires_at * 1000 > now_ms
                && (e.state == EntryState::Pending
                    || (e.state == EntryState::InFlight && !e.group.is_empty())) =>
        {
            if e.lease_until_ms > now_ms {
                if e.state == EntryState::InFlight {
                    Taken::Busy
                } else {
                    Taken::NotDue(e.lease_until_ms)
                }
            } else {
                Taken::Entry(e.clone())
            }
        }
        _ => Taken::Settled,
    }
}

/// The claim rule shared by both implementations, for an existing entry.
pub(crate) fn decide(existing: Option<&InboxEntry>, now_ms: i64) -> Option<Claim> {
    let e = existing?;
    if e.expires_at * 1000 <= now_ms {
        return None;
    }
    match e.state {
        EntryState::Answered => Some(Claim::Answered(e.answer.clone().unwrap_or_default())),
        // The outbox owns it: a repeated push must not deliver it around the queue.
        EntryState::Pending => Some(Claim::InFlight),
        EntryState::Dead => Some(Claim::Answered(String::new())),
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

/// A staged object ready to send: its bytes, or its open file where the store has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedMedia {
    pub body: crate::http::MediaBody,
    pub content_type: String,
    pub filename: String,
}

/// Where media passes through: S3, or a local directory. Objects older than `MEDIA_TTL`
/// are gone (an S3 lifecycle rule; checked on read locally).
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put(&self, key: &str, media: &StagedMedia) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<StagedMedia>, StoreError>;
    /// An object to send: the local directory opens its file (sent as the client reads
    /// it), other stores read it whole.
    async fn open(&self, key: &str) -> Result<Option<OpenedMedia>, StoreError> {
        Ok(self.get(key).await?.map(|m| OpenedMedia {
            body: crate::http::MediaBody::Bytes(m.bytes),
            content_type: m.content_type,
            filename: m.filename,
        }))
    }
    /// The object's size, without its bytes.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Deletes an object; an absent one is no error.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes what is past `MEDIA_TTL` and then, oldest first, what is over `max_bytes`.
    /// S3 needs none (its lifecycle rule expires objects after 3 days).
    async fn sweep(&self, _max_bytes: u64) -> Result<MediaSweep, StoreError> {
        Ok(MediaSweep::default())
    }
    /// A short-lived URL to fetch the object directly, where the store has one.
    async fn presign(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError>;
}

/// What a media sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaSweep {
    /// Objects deleted for their age.
    pub expired: usize,
    /// Objects deleted, oldest first, to bring the store under its size cap.
    pub over_cap: usize,
    /// Leftover temporary files and sidecars deleted.
    pub strays: usize,
    /// What is left.
    pub kept: usize,
    pub kept_bytes: u64,
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
