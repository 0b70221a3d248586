//! The inbox and token state machines, once: every transition as a pure function of the
//! record as it is, the request, and the caller's clock (no store reads the wall clock to
//! decide anything). The embedded store and the reference model (`store::model`) apply
//! these functions inside one write transaction; each DynamoDB method names the rule its
//! condition and update expressions encode, and the store contract test
//! (`tests/tests/it/store_contract.rs`) runs random operation sequences against the model,
//! redb and DynamoDB Local to show that they agree.
//!
//! A rule returns a `Step`: the record to write (None: nothing is written) and the answer.

use super::{
    Claim, EntryState, InboxEntry, NewClaim, Outcome, Shelf, StateSwap, Taken, Ticket, TokenRecord,
    registry::{Authorizer, Standing},
};

/// The record to write, if any, and what the caller hears.
pub(crate) type Step<T> = (Option<InboxEntry>, T);

/// Rule `live`: an entry is there until its `expires_at` (Unix seconds); an expired entry
/// reads as absent everywhere, whether or not the store has deleted it yet.
pub fn live(e: &InboxEntry, now_ms: i64) -> bool {
    e.expires_at * 1000 > now_ms
}

/// Rule `lease_over`: a lease held until `t` has run out at `t`.
fn lease_over(lease_until_ms: i64, now_ms: i64) -> bool {
    lease_until_ms <= now_ms
}

/// Rule `get`: the live entry.
pub fn get(existing: Option<&InboxEntry>, now_ms: i64) -> Option<InboxEntry> {
    existing.filter(|e| live(e, now_ms)).cloned()
}

/// The entry a won claim writes.
pub fn fresh(c: &NewClaim<'_>) -> InboxEntry {
    InboxEntry {
        key: c.key.to_owned(),
        appid: c.appid.to_owned(),
        payload: c.payload.to_owned(),
        state: EntryState::InFlight,
        claim_id: c.claim_id.to_owned(),
        attempts: 0,
        answer: None,
        last_error: None,
        lease_until_ms: c.lease_until_ms,
        expires_at: c.expires_at,
        group: c.group.to_owned(),
        since_ms: c.now_ms,
        queued: false,
    }
}

/// Rule `claim_refused`: what a claim on a live entry hears, or None when it may win (the
/// entry is undelivered, or in flight with its lease run out: its handler died).
pub(crate) fn claim_refused(existing: Option<&InboxEntry>, now_ms: i64) -> Option<Claim> {
    let e = existing.filter(|e| live(e, now_ms))?;
    match e.state {
        EntryState::Answered => Some(Claim::Answered(e.answer.clone().unwrap_or_default())),
        // The outbox owns it: a repeated push must not deliver it around the queue.
        EntryState::Pending => Some(Claim::InFlight),
        EntryState::Dead => Some(Claim::Answered(String::new())),
        EntryState::InFlight if !lease_over(e.lease_until_ms, now_ms) => Some(Claim::InFlight),
        EntryState::InFlight | EntryState::Undelivered => None,
    }
}

/// Rule `claim`: a new, expired, undelivered or abandoned entry is won; attempts count on
/// from a live entry and start at 1 otherwise.
pub fn claim(existing: Option<&InboxEntry>, mut fresh: InboxEntry, now_ms: i64) -> Step<Claim> {
    if let Some(refused) = claim_refused(existing, now_ms) {
        return (None, refused);
    }
    let attempt = existing
        .filter(|e| live(e, now_ms))
        .map_or(0, |e| e.attempts)
        + 1;
    fresh.attempts = attempt;
    let won = Claim::Won {
        claim_id: fresh.claim_id.clone(),
        attempt,
    };
    (Some(fresh), won)
}

/// Rule `finish`: only the holder of a non-empty claim id on an entry in flight or taken
/// by a worker records an outcome (expired or not: the holder outlived it).
pub fn finish(existing: Option<&InboxEntry>, claim_id: &str, outcome: &Outcome<'_>) -> Step<bool> {
    let owned = existing.filter(|e| {
        !claim_id.is_empty()
            && e.claim_id == claim_id
            && matches!(e.state, EntryState::InFlight | EntryState::Pending)
    });
    let Some(old) = owned else {
        return (None, false);
    };
    let mut e = old.clone();
    e.claim_id.clear();
    match *outcome {
        Outcome::Answered(a) => {
            e.state = EntryState::Answered;
            e.answer = Some(a.to_owned());
            e.queued = false;
        }
        Outcome::Pending {
            error,
            due_ms,
            group,
            answer,
            expires_at,
            queued,
        } => {
            // Rule `keep_until`: the caller's time replaces the claim's (callers never pass
            // an earlier one: outbox::expires_at).
            e.expires_at = expires_at;
            e.queued = queued;
            e.state = EntryState::Pending;
            e.last_error = Some(error.to_owned());
            e.lease_until_ms = due_ms;
            e.group = group.to_owned();
            if let Some(a) = answer {
                e.answer = Some(a.to_owned());
            }
        }
        Outcome::Dead {
            why,
            expires_at,
            at_ms,
        } => {
            e.expires_at = expires_at;
            e.state = EntryState::Dead;
            e.last_error = Some(why.to_owned());
            // Rule `settle_dead`: the dead shelf is ordered by when they died.
            e.lease_until_ms = at_ms;
            e.queued = false;
        }
    }
    (Some(e), true)
}

/// Rule `take_refused`: what a worker's take of an entry hears, or None when it may take
/// it (live, pending or an abandoned message in flight, its lease run out).
pub(crate) fn take_refused(existing: Option<&InboxEntry>, now_ms: i64) -> Option<Taken> {
    let takeable = |e: &&InboxEntry| {
        live(e, now_ms)
            && (e.state == EntryState::Pending
                || (e.state == EntryState::InFlight && !e.group.is_empty()))
    };
    let Some(e) = existing.filter(takeable) else {
        return Some(Taken::Settled);
    };
    if lease_over(e.lease_until_ms, now_ms) {
        None
    } else if e.state == EntryState::InFlight {
        Some(Taken::Busy)
    } else {
        Some(Taken::NotDue(e.lease_until_ms))
    }
}

/// Rule `take`: the entry becomes pending, queued, held by `claim_id` until
/// `lease_until_ms`, one attempt more.
pub fn take(
    existing: Option<&InboxEntry>,
    claim_id: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Step<Taken> {
    if let Some(refused) = take_refused(existing, now_ms) {
        return (None, refused);
    }
    let Some(mut e) = existing.cloned() else {
        return (None, Taken::Settled);
    };
    e.state = EntryState::Pending;
    e.queued = true;
    e.claim_id = claim_id.to_owned();
    e.lease_until_ms = lease_until_ms;
    e.attempts += 1;
    (Some(e.clone()), Taken::Entry(e))
}

/// Rule `revive`: a live pending or dead entry is due now, with a fresh `max_age_secs`,
/// unqueued and held by nobody.
pub fn revive(existing: Option<&InboxEntry>, now_ms: i64) -> Step<bool> {
    match existing {
        Some(e) if live(e, now_ms) && matches!(e.state, EntryState::Pending | EntryState::Dead) => {
            let mut e = e.clone();
            e.state = EntryState::Pending;
            e.queued = false;
            e.claim_id.clear();
            e.lease_until_ms = now_ms;
            e.since_ms = now_ms;
            (Some(e), true)
        }
        _ => (None, false),
    }
}

/// Rule `mark_queued`: a pending entry not yet queued is queued now.
pub fn mark_queued(existing: Option<&InboxEntry>) -> Step<()> {
    match existing {
        Some(e) if e.state == EntryState::Pending && !e.queued => {
            let mut e = e.clone();
            e.queued = true;
            (Some(e), ())
        }
        _ => (None, ()),
    }
}

/// Rule `state_entry`: a piece of conversation state is an answered entry holding `value`.
pub(crate) fn state_entry(key: &str, appid: &str, value: &str, expires_at: i64) -> InboxEntry {
    InboxEntry {
        key: key.to_owned(),
        appid: appid.to_owned(),
        payload: String::new(),
        state: EntryState::Answered,
        claim_id: String::new(),
        attempts: 0,
        answer: Some(value.to_owned()),
        last_error: None,
        lease_until_ms: 0,
        expires_at,
        group: String::new(),
        since_ms: 0,
        queued: false,
    }
}

/// Rule `put_first`: the state is written only where no live entry holds the key; the
/// caller hears the value in force.
pub fn put_first(existing: Option<&InboxEntry>, entry: InboxEntry, now_ms: i64) -> Step<String> {
    match existing.filter(|e| live(e, now_ms)) {
        Some(held) => (None, held.answer.clone().unwrap_or_default()),
        None => {
            let value = entry.answer.clone().unwrap_or_default();
            (Some(entry), value)
        }
    }
}

/// Rule `swap_state`: written only while the live value is `expected` (None: no live
/// entry holds the key).
pub fn swap_state(existing: Option<&InboxEntry>, swap: &StateSwap<'_>) -> Step<bool> {
    let held = existing.filter(|e| live(e, swap.now_ms));
    let matches = match (held, swap.expected) {
        (None, None) => true,
        (Some(e), Some(expected)) => e.answer.as_deref() == Some(expected),
        _ => false,
    };
    if matches {
        let entry = state_entry(swap.key, swap.appid, swap.value, swap.expires_at);
        (Some(entry), true)
    } else {
        (None, false)
    }
}

/// Rule `remove_if`: the entry goes only while it holds `value` (live or not).
pub fn remove_if(existing: Option<&InboxEntry>, value: &str) -> bool {
    existing.is_some_and(|e| e.answer.as_deref() == Some(value))
}

/// Rule `listed`: an outbox listing of `shelf` holds the live entries on it, earliest
/// `due` first, at most the limit.
pub fn listed(e: &InboxEntry, shelf: Shelf, now_ms: i64) -> bool {
    Shelf::of(e) == Some(shelf) && live(e, now_ms)
}

/// Rule `due`: the time a listing sorts by (the next attempt; for the dead, their death).
pub fn due(e: &InboxEntry) -> i64 {
    e.lease_until_ms
}

/// Rule `token_lease`: the refresh lease is taken where nobody holds a live one (a lease
/// until `t` is held at `t`) and the record is still at `seen_version`; no record is a
/// record at version 0.
pub(crate) fn token_lease(
    current: Option<&TokenRecord>,
    owner: &str,
    seen_version: u64,
    now_ms: i64,
    until_ms: i64,
) -> Option<TokenRecord> {
    let mut rec = current.cloned().unwrap_or(TokenRecord {
        token: String::new(),
        expires_at_ms: 0,
        version: 0,
        lease_owner: String::new(),
        lease_until_ms: 0,
    });
    if rec.lease_until_ms >= now_ms || rec.version != seen_version {
        return None;
    }
    rec.lease_owner = owner.to_owned();
    rec.lease_until_ms = until_ms;
    Some(rec)
}

/// Rule `token_replace`: compare-and-set on the version, by the lease holder only; the
/// lease is released.
pub(crate) fn token_replace(
    current: Option<&TokenRecord>,
    owner: &str,
    version: u64,
    token: &str,
    expires_at_ms: i64,
) -> Option<TokenRecord> {
    let rec = current.filter(|r| r.version == version && r.lease_owner == owner)?;
    Some(TokenRecord {
        token: token.to_owned(),
        expires_at_ms,
        version: rec.version + 1,
        lease_owner: String::new(),
        lease_until_ms: 0,
    })
}

/// Rule `token_release`: the holder gives the lease back.
pub(crate) fn token_release(current: Option<&TokenRecord>, owner: &str) -> Option<TokenRecord> {
    let mut rec = current.filter(|r| r.lease_owner == owner)?.clone();
    rec.lease_owner.clear();
    rec.lease_until_ms = 0;
    Some(rec)
}

/// Rule `token_invalidate`: `token` is marked expired only while it is the stored one and
/// not already expired.
pub(crate) fn token_invalidate(current: Option<&TokenRecord>, token: &str) -> Option<TokenRecord> {
    let mut rec = current
        .filter(|r| r.token == token && r.expires_at_ms > 0)?
        .clone();
    rec.expires_at_ms = 0;
    Some(rec)
}

/// Rule `authorizer_put`: an authorization is stored unless the stored one changed later
/// (an `authorized` event and the redirect race; a late retry must not undo a withdrawal).
/// The stored settings stay (a new authorization keeps the shop's gateway key and desk);
/// only `authorizer_settings` replaces them.
pub(crate) fn authorizer_put(current: Option<&Authorizer>, new: &Authorizer) -> Option<Authorizer> {
    match current {
        Some(c) if c.changed_at_ms > new.changed_at_ms => None,
        Some(c) if c.sealed_settings.is_some() => Some(Authorizer {
            sealed_settings: c.sealed_settings.clone(),
            ..new.clone()
        }),
        _ => Some(new.clone()),
    }
}

/// Rule `authorizer_settings`: a stored account's settings are replaced unless it changed
/// later than `at_ms`.
pub(crate) fn authorizer_settings(
    current: Option<&Authorizer>,
    sealed: &str,
    at_ms: i64,
) -> Option<Authorizer> {
    let mut rec = current.filter(|c| c.changed_at_ms <= at_ms)?.clone();
    rec.sealed_settings = Some(sealed.to_owned());
    rec.changed_at_ms = at_ms;
    Some(rec)
}

/// Rule `authorizer_standing`: a stored authorizer moves to `standing` unless it changed
/// later than `at_ms`.
pub(crate) fn authorizer_standing(
    current: Option<&Authorizer>,
    standing: Standing,
    at_ms: i64,
) -> Option<Authorizer> {
    let mut rec = current.filter(|c| c.changed_at_ms <= at_ms)?.clone();
    rec.standing = standing;
    rec.changed_at_ms = at_ms;
    Some(rec)
}

/// Rule `ticket_put`: a ticket is stored unless the stored one was pushed at the same time
/// or later (WeChat retries a push; a late retry must not bring back an older ticket).
pub(crate) fn ticket_put(current: Option<&Ticket>, new: &Ticket) -> Option<Ticket> {
    match current {
        Some(c) if c.created_at >= new.created_at => None,
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_of<'a>(key: &'a str, now_ms: i64) -> NewClaim<'a> {
        NewClaim {
            key,
            appid: "wx1",
            payload: "<xml/>",
            claim_id: "c1",
            now_ms,
            lease_until_ms: now_ms + 1_000,
            expires_at: now_ms / 1000 + 60,
            group: "g",
        }
    }

    #[test]
    fn a_lease_has_run_out_at_its_time_on_claim_and_take_alike() {
        let c = claim_of("k", 10_000);
        let (held, _) = claim(None, fresh(&c), 10_000);
        let held = held.unwrap();
        assert_eq!(claim_refused(Some(&held), 10_999), Some(Claim::InFlight));
        assert_eq!(claim_refused(Some(&held), 11_000), None);
        assert_eq!(take_refused(Some(&held), 10_999), Some(Taken::Busy));
        assert_eq!(take_refused(Some(&held), 11_000), None);
    }

    #[test]
    fn attempts_start_again_after_expiry() {
        let c = claim_of("k", 10_000);
        let (held, _) = claim(None, fresh(&c), 10_000);
        let mut held = held.unwrap();
        held.state = EntryState::Undelivered;
        let again = claim_of("k", 20_000);
        let (_, won) = claim(Some(&held), fresh(&again), 20_000);
        assert!(matches!(won, Claim::Won { attempt: 2, .. }), "{won:?}");
        let late = claim_of("k", 71_000);
        let (_, won) = claim(Some(&held), fresh(&late), 71_000);
        assert!(matches!(won, Claim::Won { attempt: 1, .. }), "{won:?}");
    }

    #[test]
    fn an_empty_claim_id_owns_nothing() {
        let mut e = state_entry("k", "wx1", "v", 100);
        e.state = EntryState::Pending;
        let (w, owned) = finish(Some(&e), "", &Outcome::Answered(""));
        assert!(w.is_none() && !owned);
    }

    fn authorizer(standing: Standing, changed_at_ms: i64) -> Authorizer {
        Authorizer {
            appid: "wxshop".into(),
            component: "wxcomp".into(),
            sealed_refresh_token: "v1:x".into(),
            permissions: vec![1],
            standing,
            changed_at_ms,
            sealed_settings: None,
        }
    }

    #[test]
    fn settings_survive_a_new_authorization_and_change_only_by_their_rule() {
        let mut first = authorizer(Standing::Authorized, 5);
        first.sealed_settings = Some("v1:key".into());
        let again = authorizer(Standing::Authorized, 9);
        let kept = authorizer_put(Some(&first), &again).unwrap();
        assert_eq!(kept.sealed_settings.as_deref(), Some("v1:key"));
        assert_eq!(kept.changed_at_ms, 9);
        let changed = authorizer_settings(Some(&kept), "v1:new", 10).unwrap();
        assert_eq!(changed.sealed_settings.as_deref(), Some("v1:new"));
        assert_eq!(authorizer_settings(Some(&changed), "v1:old", 9), None);
        assert_eq!(authorizer_settings(None, "v1:x", 9), None);
    }

    #[test]
    fn a_late_authorization_change_is_ignored() {
        let (a5, a9) = (
            authorizer(Standing::Authorized, 5),
            authorizer(Standing::Authorized, 9),
        );
        assert_eq!(authorizer_put(None, &a5), Some(a5.clone()));
        assert_eq!(authorizer_put(Some(&a5), &a9), Some(a9.clone()));
        assert_eq!(authorizer_put(Some(&a9), &a5), None);
        let withdrawn = authorizer_standing(Some(&a5), Standing::Withdrawn, 7).unwrap();
        assert_eq!(
            (withdrawn.standing, withdrawn.changed_at_ms),
            (Standing::Withdrawn, 7)
        );
        assert_eq!(authorizer_standing(Some(&a9), Standing::Withdrawn, 7), None);
        assert_eq!(authorizer_standing(None, Standing::Withdrawn, 7), None);
    }

    #[test]
    fn the_newest_ticket_wins() {
        let t = |created_at| Ticket {
            ticket: format!("T{created_at}"),
            created_at,
        };
        assert_eq!(ticket_put(None, &t(5)), Some(t(5)));
        assert_eq!(ticket_put(Some(&t(5)), &t(6)), Some(t(6)));
        assert_eq!(ticket_put(Some(&t(6)), &t(5)), None);
        assert_eq!(ticket_put(Some(&t(6)), &t(6)), None);
    }

    #[test]
    fn no_token_record_is_version_zero() {
        assert!(token_lease(None, "me", 0, 5, 10).is_some());
        assert!(token_lease(None, "me", 3, 5, 10).is_none());
    }
}
