//! The one idempotency mechanism every route that deduplicates uses: claim an inbox entry
//! (one conditional write), learn what to do next, and record the outcome only while the
//! claim still owns the entry. A store that fails or hangs never costs a message: the
//! caller is told to deliver without dedup (a possible duplicate beats a lost message).

use std::time::Duration;

use tracing::{error, info, warn};

use super::{Claim, InboxStore, NewClaim, Outcome, StoreError, entry_ref, new_claim_id};

/// A claim's lease outlives its handler's deadline by this, so that only a handler that
/// died is ever taken over.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_millis(1500);

/// What to claim.
pub(crate) struct Entry<'a> {
    pub key: &'a str,
    pub appid: &'a str,
    /// What the entry keeps (the message as forwarded).
    pub payload: &'a str,
    /// How long this caller owns the entry before another may take it over.
    pub lease: Duration,
    pub ttl_secs: u64,
    /// The message's queue group (see `NewClaim::group`).
    pub group: &'a str,
}

/// What the caller should do.
#[derive(Debug)]
pub(crate) enum Next {
    /// Deliver, then `finish` the claim.
    Deliver(Claimed),
    /// Another handler is delivering it right now.
    InFlight,
    /// Already answered; this is the answer it got ("" = success).
    Answered(String),
}

/// An entry this caller delivers. Without a claim id the store was unavailable and
/// nothing will be recorded.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub key: String,
    claim_id: Option<String>,
}

impl Claimed {
    /// A worker's hold on an entry it took from the outbox.
    pub(crate) fn taken(key: &str, claim_id: &str) -> Claimed {
        Claimed {
            key: key.to_owned(),
            claim_id: Some(claim_id.to_owned()),
        }
    }
}

/// Claims `entry`, giving the store at most `within`.
pub(crate) async fn begin(
    inbox: &dyn InboxStore,
    now_ms: i64,
    entry: &Entry<'_>,
    within: Duration,
) -> Next {
    let claim_id = new_claim_id();
    let claim = tokio::time::timeout(
        within,
        inbox.claim(&NewClaim {
            key: entry.key,
            appid: entry.appid,
            payload: entry.payload,
            claim_id: &claim_id,
            now_ms,
            lease_until_ms: now_ms + entry.lease.as_millis() as i64,
            expires_at: now_ms / 1000 + entry.ttl_secs as i64,
            group: entry.group,
        }),
    )
    .await
    .unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer within {within:?}"
        )))
    });
    let found = entry_ref(entry.key);
    match claim {
        Ok(Claim::Won { attempt, .. }) => {
            if attempt > 1 {
                info!(appid = entry.appid, entry = %found, attempt, "delivering an entry whose earlier delivery did not finish");
            }
            Next::Deliver(Claimed {
                key: entry.key.to_owned(),
                claim_id: Some(claim_id),
            })
        }
        Ok(Claim::InFlight) => {
            crate::telemetry::metric("DuplicateDropped", 1.0, "Count");
            info!(appid = entry.appid, entry = %found, "duplicate while the first is in flight: not delivered again");
            Next::InFlight
        }
        Ok(Claim::Answered(answer)) => {
            crate::telemetry::metric("DuplicateDropped", 1.0, "Count");
            info!(appid = entry.appid, entry = %found, "duplicate: answered as before");
            Next::Answered(answer)
        }
        Err(e) => {
            error!(appid = entry.appid, entry = %found, error = %e, "inbox unavailable; delivering without dedup");
            Next::Deliver(Claimed {
                key: entry.key.to_owned(),
                claim_id: None,
            })
        }
    }
}

impl Claimed {
    /// Whether the store holds this claim (false when the inbox was unavailable: then
    /// nothing can be recorded or queued for it).
    pub(crate) fn recorded(&self) -> bool {
        self.claim_id.is_some()
    }

    /// Records the outcome, if the claim still owns the entry, giving the store at most
    /// `within`. Every way this can go wrong is logged here.
    pub(crate) async fn finish(
        &self,
        inbox: &dyn InboxStore,
        outcome: Outcome<'_>,
        within: Duration,
    ) -> bool {
        let Some(claim_id) = &self.claim_id else {
            return false;
        };
        let found = entry_ref(&self.key);
        let deadline = tokio::time::Instant::now() + within;
        // A store that fails for a moment (a restart, a throttled burst) is asked again
        // until `within`: the desk has the message by now, and an outcome left unrecorded
        // sends it again when the lease runs out (the faults suite caught one, 13 s later).
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = inbox.finish(&self.key, claim_id, outcome);
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(true)) => return true,
                Ok(Ok(false)) => {
                    warn!(entry = %found, "inbox entry was taken over by another handler")
                }
                Ok(Err(e)) if tokio::time::Instant::now() + pause < deadline => {
                    warn!(entry = %found, error = %e, "could not record the delivery outcome; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                Ok(Err(e)) => {
                    error!(entry = %found, error = %e, "could not record the delivery outcome")
                }
                Err(_) => error!(entry = %found, "recording the delivery outcome timed out"),
            }
            return false;
        }
    }
}

/// Records `key` for `ttl` unless a live record exists: true for the caller that made it.
/// For state that must be marked once (a conversation opened), not for messages.
pub(crate) async fn first_time(
    inbox: &dyn InboxStore,
    key: &str,
    appid: &str,
    now_ms: i64,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let claim_id = new_claim_id();
    let claim = inbox
        .claim(&NewClaim {
            key,
            appid,
            payload: "",
            claim_id: &claim_id,
            now_ms,
            lease_until_ms: now_ms + ttl.as_millis() as i64,
            expires_at: now_ms / 1000 + ttl.as_secs() as i64,
            group: "",
        })
        .await?;
    match claim {
        Claim::Won { .. } => {
            // The mark is made: a failure to record it only means it may be made again.
            if let Err(e) = inbox
                .finish(key, &claim_id, Outcome::Answered("open"))
                .await
            {
                warn!(entry = %entry_ref(key), error = %e, "could not record the mark");
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}
