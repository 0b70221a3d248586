//! Storage behind small traits, each with an embedded implementation (no server) and an
//! AWS one (DynamoDB, S3). Every key is namespaced by appid by its caller.

pub mod aws;
pub mod embedded;

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

pub fn new_claim_id() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    crate::wechat::signature::hex_lower(&b)
}
