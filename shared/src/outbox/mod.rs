//! The outbox: every delivery that can fail and cannot finish inside its caller's deadline
//! becomes a job, and a worker delivers it with back-off until it succeeds, is refused for
//! good, or is older than `[delivery] max_age_secs`.
//!
//! The inbox entry is the record of truth (state, attempts, last error, next attempt,
//! a desk answer still to deliver); the queue only says which entry to look at, in each
//! customer's order. Two kinds of job, told apart by the entry's key:
//! - a customer's message for the desk (`{appid}#msg|evt|typ|chatbot#...`): forwarded
//!   again; a passive reply the desk gives now is too late for WeChat's answer and goes
//!   to the customer through the transport (custom send, or the Dialogue Platform);
//! - an agent's Tencent IM message for the customer (`{appid}#tim#...`).
//!
//! The happy path never touches the queue: a delivery that finishes in time is recorded
//! as before, and nothing else is written.

pub mod sweep;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::config::{AppConfig, DeliveryConfig};
use crate::context::Context;
use crate::desk::tencent_im::agent;
use crate::desk::{Desk, DeskError, DeskReply, forward_within};
use crate::store::idempotency::Claimed;
use crate::store::queue::Job;
use crate::store::{InboxEntry, Outcome, Taken, conversation, entry_ref, new_claim_id};
use crate::support::keys;
use crate::telemetry::metric;
use crate::transport::{self, Agent, DeliverError};
use crate::wechat::kf::{PassivePlan, plan_mini_program_reply};
use crate::wechat::message::Message;

/// A worker's hold on a job outlives its desk call by this.
const LEASE_EXTRA: Duration = Duration::from_secs(10);
/// A store write's share of a worker's time.
const STORE_WITHIN: Duration = Duration::from_secs(5);
/// A finished or dead entry stays readable (`outbox list`) this long after `max_age`.
const KEEP_DEAD: i64 = 7 * 24 * 3600;

/// The queue group of a customer's messages to the desk.
pub(crate) fn inbound_group(appid: &str, openid: &str) -> String {
    keys::group(appid, keys::Direction::In, openid)
}

/// The queue group of the agents' messages to a customer.
pub(crate) fn outbound_group(appid: &str, openid: &str) -> String {
    keys::group(appid, keys::Direction::Out, openid)
}

/// An agent's message goes to a customer: its queue group is outbound.
fn is_agent_message(e: &InboxEntry) -> bool {
    matches!(keys::group_parts(&e.group), Some((keys::Direction::Out, _)))
}

/// The customer of an inbound group.
fn inbound_customer(group: &str) -> Option<&str> {
    match keys::group_parts(group)? {
        (keys::Direction::In, openid) => Some(openid),
        (keys::Direction::Out, _) => None,
    }
}

/// How long the outbox may take over a message that arrived at `since_ms`.
fn expires_at(ctx: &Context, since_ms: i64) -> i64 {
    let now_s = ctx.clock.unix_secs();
    (since_ms / 1000 + ctx.config.delivery.max_age_secs as i64 + KEEP_DEAD)
        .max(now_s + ctx.config.callback.inbox_ttl_secs as i64)
}

/// The wait before attempt `attempt + 1`: `first_retry_secs` doubling to
/// `max_retry_secs`, the last quarter of it random so that a desk coming back is not hit
/// by every waiting job in the same second.
pub(crate) fn retry_delay(cfg: &DeliveryConfig, attempt: u32) -> Duration {
    let top = cfg
        .first_retry_secs
        .saturating_mul(1 << attempt.saturating_sub(1).min(20))
        .min(cfg.max_retry_secs);
    let top = Duration::from_secs(top);
    let quarter = top / 4;
    top - quarter + Duration::from_millis(rand::random_range(0..=quarter.as_millis() as u64))
}

/// What the caller hands over when a delivery cannot finish in its deadline.
pub(crate) struct Deferral<'a> {
    pub group: &'a str,
    /// Why it was not delivered now.
    pub error: &'a str,
    /// A desk answer already obtained, still to reach the customer.
    pub answer: Option<&'a str>,
    pub due_ms: i64,
    /// A customer message: name it as their newest queued one, so that their next
    /// message queues behind it.
    pub customer: Option<&'a str>,
}

/// Hands a claimed entry to the outbox: pending, then queued. True when the entry is
/// recorded as pending (queueing itself may fail: the sweep queues it again).
pub(crate) async fn defer(ctx: &Context, claimed: &Claimed, d: Deferral<'_>) -> bool {
    let found = entry_ref(&claimed.key);
    if !claimed.recorded() {
        error!(entry = %found, reason = d.error, "not delivered and the inbox is unavailable: only the sender's retry can deliver it");
        return false;
    }
    let appid = keys::appid_of(&claimed.key);
    let now = ctx.clock.unix_ms();
    let until = expires_at(ctx, now);
    // Queued first: a job that arrives before the entry is pending waits for the
    // claim's lease; an entry recorded as queued always has its job.
    let queued = enqueue(ctx, &claimed.key, d.group, 0).await;
    let pending = Outcome::Pending {
        error: d.error,
        due_ms: d.due_ms,
        group: d.group,
        answer: d.answer,
        expires_at: until,
        queued,
    };
    if !claimed
        .finish(ctx.inbox.as_ref(), pending, STORE_WITHIN)
        .await
    {
        // Still in flight: its job (or the sweep, once the lease runs out) delivers it.
        return queued;
    }
    metric("Deferred", 1.0, "Count");
    if let Some(openid) = d.customer
        && let Err(e) =
            conversation::set_backlog(ctx.inbox.as_ref(), appid, openid, &claimed.key, until).await
    {
        warn!(entry = %found, error = %e, "could not mark the customer's backlog; a later message may overtake this one");
    }
    info!(appid, entry = %found, reason = d.error, "delivery left to the outbox");
    true
}

/// Records a claimed message as dead at once (a refusal no retry can help), for
/// `outbox list --state dead` and a replay.
pub(crate) async fn bury(ctx: &Context, claimed: &Claimed, why: &str, within: Duration) {
    let now = ctx.clock.unix_ms();
    let dead = Outcome::Dead {
        why,
        expires_at: expires_at(ctx, now),
        at_ms: now,
    };
    if claimed.finish(ctx.inbox.as_ref(), dead, within).await {
        metric("Dead", 1.0, "Count");
        warn!(entry = %entry_ref(&claimed.key), reason = why, "not deliverable; entry is dead");
    }
}

/// Whether an earlier message of `openid`'s is still queued, giving the store at most
/// `within`; an unreadable store counts as no (the message is delivered directly).
pub(crate) async fn has_backlog(
    ctx: &Context,
    appid: &str,
    openid: &str,
    within: Duration,
) -> bool {
    let now = ctx.clock.unix_ms();
    match tokio::time::timeout(
        within,
        conversation::has_backlog(ctx.inbox.as_ref(), appid, openid, now),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            warn!(appid, error = %e, "cannot read the customer's backlog; delivering directly");
            false
        }
        Err(_) => {
            warn!(
                appid,
                "reading the customer's backlog timed out; delivering directly"
            );
            false
        }
    }
}

/// Queues a job for a pending entry; a failure is logged (the sweep queues it again).
pub(crate) async fn enqueue(ctx: &Context, key: &str, group: &str, generation: i64) -> bool {
    let job = Job {
        key: key.to_owned(),
        group: group.to_owned(),
        generation,
    };
    match tokio::time::timeout(STORE_WITHIN, ctx.queue.enqueue(&job)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            error!(entry = %entry_ref(key), error = %e, "could not queue the delivery; the sweep will queue it again");
            false
        }
        Err(_) => {
            error!(entry = %entry_ref(key), "queueing the delivery timed out; the sweep will queue it again");
            false
        }
    }
}

/// What the queue should do with a job after a worker ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Settled (delivered, dead, or nothing to do): forget the job.
    Done,
    /// Run it again after this.
    Later(Duration),
    /// Behind an earlier job of its group that must wait: back in the queue at once, where
    /// the group's order holds it behind that job. (Held back as long as the head, the
    /// group's jobs came back into view together, and a FIFO queue could hand out the
    /// last first: moto's does.)
    Behind,
}

/// What one attempt came to.
enum Verdict {
    Delivered,
    /// Worth another attempt; `answer` is a desk answer still to deliver.
    Retry {
        error: String,
        answer: Option<String>,
    },
    Dead(String),
}

/// The account a job is for, as the worker found it.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub app: &'a AppConfig,
    pub desk: &'a dyn Desk,
    /// Why its messages are not delivered any more (withdrawn, disabled): its queued
    /// messages die, and an agent's is told back to the desk.
    pub closed: Option<&'a str>,
}

/// Runs one job: takes its entry (one conditional write, so one worker of any number
/// delivers it), delivers, and records what happened. `target` is the entry's account
/// (None: no account has its appid any more).
pub async fn run(ctx: &Context, target: Option<Target<'_>>, job: &Job) -> Settle {
    let desk = target.map(|t| t.desk);
    let cfg = &ctx.config.delivery;
    let now = ctx.clock.unix_ms();
    let found = entry_ref(&job.key);
    let claim_id = new_claim_id();
    let lease = Duration::from_millis(cfg.desk_timeout_ms) + LEASE_EXTRA;
    let taken = tokio::time::timeout(
        STORE_WITHIN,
        ctx.inbox
            .take(&job.key, &claim_id, now, now + lease.as_millis() as i64),
    )
    .await;
    let entry = match taken {
        Ok(Ok(Taken::Entry(e))) => e,
        // Its handler is recording it right now: look again in a moment.
        Ok(Ok(Taken::Busy)) => return Settle::Later(Duration::from_millis(250)),
        Ok(Ok(Taken::NotDue(at))) => {
            return Settle::Later(Duration::from_millis((at - now).max(1000) as u64));
        }
        Ok(Ok(Taken::Settled)) => {
            clear_backlog(ctx, job.appid(), &job.group, &job.key).await;
            return Settle::Done;
        }
        Ok(Err(e)) => {
            warn!(entry = %found, error = %e, "outbox: inbox unavailable; job tried again later");
            return Settle::Later(Duration::from_secs(cfg.first_retry_secs));
        }
        Err(_) => {
            warn!(entry = %found, "outbox: inbox did not answer; job tried again later");
            return Settle::Later(Duration::from_secs(cfg.first_retry_secs));
        }
    };
    let claimed = Claimed::taken(&job.key, &claim_id);
    let started = Instant::now();
    let verdict = match target {
        None => Verdict::Dead("the account is no longer configured".into()),
        Some(Target {
            closed: Some(why), ..
        }) => Verdict::Dead(format!("the account is closed: {why}")),
        Some(t) if is_agent_message(&entry) => agent_message(ctx, t.app, &entry.payload).await,
        Some(t) => customer_message(ctx, desk, t.app, &entry).await,
    };
    metric(
        "DeliveryLatency",
        started.elapsed().as_secs_f64() * 1000.0,
        "Milliseconds",
    );
    let appid = entry.appid.as_str();
    let age = Duration::from_millis((now - entry.since_ms).max(0) as u64);
    let verdict = match verdict {
        Verdict::Retry { error, .. } if age.as_secs() >= cfg.max_age_secs => Verdict::Dead(
            format!("gave up after {} s; last error: {error}", age.as_secs()),
        ),
        v => v,
    };
    let keep = expires_at(ctx, entry.since_ms);
    let (outcome, settle) = match &verdict {
        Verdict::Delivered => (Outcome::Answered(""), Settle::Done),
        Verdict::Dead(why) => (
            Outcome::Dead {
                why,
                expires_at: keep,
                at_ms: ctx.clock.unix_ms(),
            },
            Settle::Done,
        ),
        Verdict::Retry { error, answer } => {
            let delay = retry_delay(cfg, entry.attempts);
            (
                Outcome::Pending {
                    error,
                    due_ms: ctx.clock.unix_ms() + delay.as_millis() as i64,
                    group: &entry.group,
                    answer: answer.as_deref(),
                    expires_at: keep,
                    queued: true,
                },
                Settle::Later(delay),
            )
        }
    };
    if !claimed
        .finish(ctx.inbox.as_ref(), outcome, STORE_WITHIN)
        .await
    {
        // The lease runs out and the job takes the entry again.
        return Settle::Later(lease);
    }
    match &verdict {
        Verdict::Delivered => {
            metric("Delivered", 1.0, "Count");
            info!(appid, entry = %found, attempt = entry.attempts, "outbox: delivered");
        }
        Verdict::Dead(why) => {
            crate::telemetry::dead_metric(dead_reason(why));
            error!(appid, entry = %found, attempt = entry.attempts, reason = %why, "outbox: entry is dead (`wxdesk-local outbox replay` sends it again)");
            // Once per death: only the worker whose finish recorded it gets here.
            if is_agent_message(&entry) {
                tell_agent(desk, appid, &entry.payload, why).await;
            }
        }
        Verdict::Retry { error, .. } => {
            metric("Retried", 1.0, "Count");
            warn!(appid, entry = %found, attempt = entry.attempts, error = %error, "outbox: delivery failed; tried again later");
        }
    }
    if settle == Settle::Done {
        clear_backlog(ctx, appid, &entry.group, &entry.key).await;
    }
    settle
}

async fn clear_backlog(ctx: &Context, appid: &str, group: &str, key: &str) {
    let Some(openid) = inbound_customer(group) else {
        return;
    };
    if let Err(e) = conversation::clear_backlog(ctx.inbox.as_ref(), appid, openid, key).await {
        // The mark names a settled entry: harmless, it is checked before it is trusted.
        warn!(entry = %entry_ref(key), error = %e, "could not clear the customer's backlog mark");
    }
}

/// A customer's message: to the desk, or — when the desk answered already — its answer
/// to the customer.
async fn customer_message(
    ctx: &Context,
    desk: Option<&dyn Desk>,
    app: &AppConfig,
    entry: &crate::store::InboxEntry,
) -> Verdict {
    let msg = match Message::parse(&entry.payload) {
        Ok(m) => m,
        Err(e) => return Verdict::Dead(format!("the stored message is unreadable: {e}")),
    };
    if let Some(xml) = entry.answer.as_deref().filter(|a| !a.trim().is_empty()) {
        return late_answer(ctx, app, &msg, xml).await;
    }
    let Some(desk) = desk else {
        return Verdict::Dead("the account has no desk".into());
    };
    let timeout = Duration::from_millis(ctx.config.delivery.desk_timeout_ms);
    match forward_within(desk, &msg, &entry.payload, timeout).await {
        Ok(DeskReply::Empty) => Verdict::Delivered,
        Ok(DeskReply::Passive(xml) | DeskReply::Said { xml, .. }) => {
            late_answer(ctx, app, &msg, &xml).await
        }
        // The desk took the message; only its answer is unusable.
        Err(e @ DeskError::UnexpectedAnswer(_)) => {
            warn!(appid = %app.appid, error = %e, "outbox: the desk's answer is ignored");
            Verdict::Delivered
        }
        Err(e) if e.is_permanent() => Verdict::Dead(e.to_string()),
        Err(e) => Verdict::Retry {
            error: e.to_string(),
            answer: None,
        },
    }
}

/// A desk's passive reply that came too late for WeChat's answer: converted as a Mini
/// Program's replies are, and sent through the transport.
async fn late_answer(ctx: &Context, app: &AppConfig, msg: &Message, xml: &str) -> Verdict {
    let kf = match plan_mini_program_reply(xml, &msg.from_user) {
        Ok(PassivePlan::Send(kf)) => kf,
        // `transfer_customer_service` only matters inside WeChat's answer.
        Ok(PassivePlan::Keep) => return Verdict::Delivered,
        Err(e) => return Verdict::Dead(format!("the desk's reply cannot be sent: {e}")),
    };
    match transport::deliver(ctx, app, &kf, &Agent::default()).await {
        Ok(_) => {
            info!(appid = %app.appid, msgtype = %kf.msgtype, "outbox: the desk's late reply sent to the customer");
            Verdict::Delivered
        }
        Err(e) if e.is_permanent() => Verdict::Dead(format!("the desk's reply was refused: {e}")),
        Err(e) => Verdict::Retry {
            error: format!("sending the desk's reply failed: {e}"),
            answer: Some(xml.to_owned()),
        },
    }
}

/// An agent whose message died hears of it from their desk, with the reason in words
/// (an agent must never believe a customer got a message that was not delivered).
async fn tell_agent(desk: Option<&dyn Desk>, appid: &str, payload: &str, why: &str) {
    let Some(desk) = desk else {
        return;
    };
    let v: Value = serde_json::from_str(payload).unwrap_or_default();
    let body = &v["body"];
    let (Some(agent), Some(openid)) = (body["From_Account"].as_str(), body["To_Account"].as_str())
    else {
        return;
    };
    if let Err(e) = desk
        .undelivered(openid, agent, &undelivered_reason(why))
        .await
    {
        warn!(appid, error = %e, "could not tell the agent their message was not delivered");
    }
}

/// WeChat's errcode in a dead entry's reason ("... WeChat errcode 45015: ...").
fn errcode_in(why: &str) -> Option<i64> {
    why.split_once("errcode ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit() && c != '-').next())
        .and_then(|c| c.parse::<i64>().ok())
}

/// A dead entry's reason as a metric dimension: few values, so that it can be graphed.
pub(crate) fn dead_reason(why: &str) -> &'static str {
    match errcode_in(why) {
        Some(45015) => "window_closed",
        Some(45047) => "quota",
        Some(48001 | 40003) => "refused",
        _ if why.starts_with("gave up after") => "retries_exhausted",
        _ => "other",
    }
}

/// Why an agent message died, for the agent: WeChat's refusals in words, else the error.
pub(crate) fn undelivered_reason(why: &str) -> String {
    match errcode_in(why) {
        Some(45015) => "the customer's 48-hour window has closed (they must write again first)".into(),
        Some(45047) => "WeChat's limit of messages to this customer is used up until they write again (5 per customer message)".into(),
        Some(48001) => "this account is not allowed to send customer-service messages".into(),
        Some(40003) => "the customer is not a follower of this account".into(),
        _ => format!("wxdesk gave up: {why}"),
    }
}

/// What a Tencent IM agent-message entry keeps: the callback and whether it was a
/// transfer (decided when it arrived, from the conversation state then).
pub(crate) fn agent_payload(body: &Value, switched: bool) -> String {
    json!({ "switched": switched, "body": body }).to_string()
}

/// An agent's Tencent IM message, to the customer.
async fn agent_message(ctx: &Context, app: &AppConfig, payload: &str) -> Verdict {
    let Ok(v) = serde_json::from_str::<Value>(payload) else {
        return Verdict::Dead("the stored agent message is not JSON".into());
    };
    let body = &v["body"];
    let switched = v["switched"].as_bool().unwrap_or(false);
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    match deliver_agent_message(ctx, app, s("To_Account"), s("From_Account"), switched, body).await
    {
        Ok(n) => {
            info!(appid = %app.appid, messages = n, "agent reply delivered to WeChat");
            Verdict::Delivered
        }
        Err(e) if e.is_permanent() => Verdict::Dead(e.to_string()),
        Err(e) => Verdict::Retry {
            error: e.to_string(),
            answer: None,
        },
    }
}

/// Turns an agent's IM message into messages for the customer and delivers them (custom
/// send, or the Dialogue Platform); returns how many parts went out.
async fn deliver_agent_message(
    ctx: &Context,
    app: &AppConfig,
    openid: &str,
    agent_id: &str,
    switched: bool,
    body: &Value,
) -> Result<usize, DeliverError> {
    let m = agent::customer_parts(ctx, app, openid, switched, body).await;
    let agent = Agent {
        name: Some(agent_id.to_owned()),
        avatar: None,
        node: None,
    };
    let sent = match (m.parts.is_empty(), m.event) {
        // Nothing the customer could read and no signal: say so rather than drop it.
        (true, None) if m.quiet => Ok(0),
        (true, None) => Err(DeliverError::Empty),
        (true, Some(event)) => transport::signal(ctx, app, openid, event, &agent)
            .await
            .map(|_| 0),
        (false, event) => transport::deliver_many(ctx, app, &m.parts, &agent, event)
            .await
            .map(|_| m.parts.len()),
    }?;
    let inbox = ctx.inbox.as_ref();
    if let Some(offered) = &m.offered {
        let until = ctx.clock.unix_secs() + agent::MENU_OPEN_SECS;
        if let Err(e) =
            conversation::offer_choice(inbox, &app.appid, openid, &offered.encode(), until).await
        {
            warn!(appid = %app.appid, error = %e, "could not keep the menu; the customer's pick goes as text");
        }
    }
    if m.ends {
        info!(appid = %app.appid, "the desk ended the session");
        if let Err(e) = conversation::end(inbox, &app.appid, openid).await {
            warn!(appid = %app.appid, error = %e, "could not end the conversation");
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_reasons_are_few() {
        assert_eq!(
            dead_reason("the desk's reply was refused: WeChat errcode 45015: x"),
            "window_closed"
        );
        assert_eq!(
            dead_reason("WeChat errcode 45047: out of response count limit"),
            "quota"
        );
        assert_eq!(
            dead_reason("gave up after 86400 s; last error: cannot reach WeChat"),
            "retries_exhausted"
        );
        assert_eq!(dead_reason("the stored message is unreadable"), "other");
    }

    #[test]
    fn reasons_for_the_agent_name_wechats_refusal() {
        assert!(
            undelivered_reason("WeChat errcode 45015: response out of time limit")
                .contains("48-hour window has closed")
        );
        assert!(undelivered_reason("gave up after 86400 s; last error: WeChat errcode 45047: out of response count limit").contains("limit of messages"));
        assert_eq!(
            undelivered_reason("cannot reach WeChat: reset"),
            "wxdesk gave up: cannot reach WeChat: reset"
        );
    }

    #[test]
    fn retries_double_up_to_the_cap_with_some_jitter() {
        let cfg = DeliveryConfig::default();
        for (attempt, top) in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (30, 60)] {
            let d = retry_delay(&cfg, attempt);
            let top = Duration::from_secs(top);
            assert!(d <= top && d >= top * 3 / 4, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn groups_name_the_customer_and_direction() {
        assert_eq!(inbound_customer(&inbound_group("wx1", "oA")), Some("oA"));
        assert_eq!(inbound_customer(&outbound_group("wx1", "oA")), None);
        let mut e = crate::store::rules::state_entry("wx1#tim#k", "wx1", "", 0);
        e.group = outbound_group("wx1", "oA");
        assert!(is_agent_message(&e));
        e.group = inbound_group("wx1", "oA");
        assert!(!is_agent_message(&e));
    }
}
