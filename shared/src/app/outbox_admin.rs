//! What `wxdesk-local outbox list|replay` does, on either store (DynamoDB through the
//! outbox index).

use crate::app::Services;
use crate::outbox;
use crate::store::{InboxEntry, Shelf, StoreError};

/// At most this many entries per account and shelf in one listing or replay.
const LIMIT: usize = 1000;

/// The shelves `--state` names: `pending` covers queued and not-yet-queued entries.
pub fn shelves(state: &str) -> Option<&'static [Shelf]> {
    Some(match state {
        "pending" => &[Shelf::Queued, Shelf::Unqueued],
        "dead" => &[Shelf::Dead],
        "in_flight" => &[Shelf::InFlight],
        "all" => &[Shelf::Queued, Shelf::Unqueued, Shelf::InFlight, Shelf::Dead],
        _ => return None,
    })
}

/// The accounts a command covers: one, or all.
fn apps<'a>(svc: &'a Services, app: Option<&'a str>) -> Vec<&'a str> {
    match app {
        Some(a) => vec![a],
        None => svc.config.apps.iter().map(|a| a.appid.as_str()).collect(),
    }
}

/// The entries on `shelves` of one account or all.
pub async fn list(
    svc: &Services,
    app: Option<&str>,
    shelves: &[Shelf],
) -> Result<Vec<InboxEntry>, StoreError> {
    let mut out = Vec::new();
    let now = svc.clock.unix_ms();
    for appid in apps(svc, app) {
        for shelf in shelves {
            out.extend(svc.inbox.outbox(appid, *shelf, LIMIT, now).await?);
        }
    }
    Ok(out)
}

/// Makes one pending or dead entry due now and queues it; false when it is neither.
pub async fn replay(svc: &Services, key: &str) -> Result<bool, StoreError> {
    let now = svc.clock.unix_ms();
    if !svc.inbox.revive(key, now).await? {
        return Ok(false);
    }
    let Some(entry) = svc.inbox.get(key, now).await? else {
        return Ok(false);
    };
    if outbox::enqueue(svc, key, &entry.group, entry.since_ms).await {
        svc.inbox.mark_queued(key).await?;
    }
    Ok(true)
}

/// Replays every dead entry of one account or all; returns how many.
pub async fn replay_dead(svc: &Services, app: Option<&str>) -> Result<usize, StoreError> {
    let mut n = 0;
    for e in list(svc, app, &[Shelf::Dead]).await? {
        if replay(svc, &e.key).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// One line of `outbox list`: what an operator needs to decide, and the key to replay.
pub fn describe(e: &InboxEntry, now_ms: i64) -> String {
    let state = Shelf::of(e).map_or("?", Shelf::as_str);
    let age_s = (now_ms - e.since_ms).max(0) / 1000;
    let next = match Shelf::of(e) {
        Some(Shelf::Queued | Shelf::Unqueued) => {
            format!("{}s", ((e.lease_until_ms - now_ms).max(0) + 999) / 1000)
        }
        _ => "-".into(),
    };
    format!(
        "{state}\t{appid}\tattempts={attempts}\tage={age_s}s\tnext={next}\t{key}\t{error}",
        appid = e.appid,
        attempts = e.attempts,
        key = e.key,
        error = e
            .last_error
            .as_deref()
            .unwrap_or("")
            .replace(['\t', '\n'], " "),
    )
}
