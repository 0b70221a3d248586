//! The inbox: a customer message's entry, which is also its dedup record, and the three
//! jobs the inbox table does: dedup (`InboxStore`), the outbox's shelves (`OutboxStore`)
//! and small pieces of conversation state (`StateStore`). One backend implements all three
//! on one table; every transition is a rule of `store::rules`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

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
        let appid = crate::support::keys::appid_of(key);
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

/// `StateStore::swap_state`'s arguments.
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

/// Dedup and inbox. `claim` is one conditional write: exactly one of any number of
/// concurrent callers wins a key that is new, expired, undelivered, or whose in-flight
/// lease has run out (its handler died). The same table holds the outbox's shelves and
/// conversation state, so one backend object is all three stores.
#[async_trait]
pub trait InboxStore: OutboxStore + StateStore + Send + Sync {
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
}

/// Small pieces of conversation state (who served a customer, an open menu, a send
/// allowance), kept as answered entries of the inbox table: read them with
/// `InboxStore::get`, forget them with `InboxStore::remove`.
#[async_trait]
pub trait StateStore: Send + Sync {
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
}

/// The outbox's view of the inbox: the entries on its shelves, taken by one worker at a
/// time.
#[async_trait]
pub trait OutboxStore: Send + Sync {
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
