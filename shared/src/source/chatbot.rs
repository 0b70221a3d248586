//! The Dialogue Platform's hand-off callback `POST /chatbot/{appid}/{gateway_key}`, an
//! inbound source of customer messages: the platform POSTs
//! `{"encrypted": "<base64>"}` (also accepted: `encrypt`, and an XML `<Encrypt>` wrapper),
//! decrypted with the platform key and checked against its APPID. A customer asking for a
//! person, their messages, their leaving and their rating go to the app's desk; whatever
//! the desk answers goes back through sendmsg. Also `POST /chatbot/{appid}/{key}/event`,
//! for desks that cannot signal waiter events themselves. The platform signs nothing but
//! its ciphertext, so the gateway key in the path is what keeps outsiders off both routes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use tracing::{info, warn};

use crate::config::{AppConfig, ChatbotConfig};
use crate::context::Context;
use crate::desk::{Desk, DeskReply};
use crate::http::{Protocol, Refused, Request, Response};
use crate::outbox::{self, Deferral};
use crate::store::Outcome;
use crate::store::idempotency::{self, LEASE_MARGIN, Next};
use crate::transport::chatbot as transport;
use crate::transport::{Agent, deliver};
use crate::wechat::kf::{PassivePlan, plan_mini_program_reply};
use crate::wechat::message::{Format, Message};
use crate::wechat::xml::{Doc, Value as XmlValue};

/// The dedup write's and the outcome record's share of the platform's wait.
const CLAIM_WITHIN: Duration = Duration::from_millis(1000);

fn answer(errcode: i64, errmsg: &str) -> Response {
    Response::json(json!({ "errcode": errcode, "errmsg": errmsg }).to_string())
}

/// The Dialogue Platform's answer to a request refused: its own `errcode`/`errmsg` shape.
pub(crate) struct DialoguePlatform;

impl Protocol for DialoguePlatform {
    const ROUTE: &'static str = "chatbot";
    const EVENT: &'static str = "Dialogue Platform callback refused";
    fn answer(status: u16, why: &str) -> Response {
        Response::json_status(status, &json!({ "errcode": -1, "errmsg": why }))
    }
}

pub(crate) type Refusal = Refused<DialoguePlatform>;

/// The ciphertext, from any of the three wrappers seen in the wild.
fn ciphertext(body: &str) -> Option<String> {
    let t = body.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).ok()?;
        return v
            .get("encrypted")
            .or_else(|| v.get("encrypt"))
            .or_else(|| v.get("Encrypt"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    Doc::parse_xml(t).ok()?.non_empty("Encrypt")
}

/// The hand-off, as plain fields.
#[derive(Debug, Default)]
struct Handoff {
    userid: String,
    content: String,
    event: String,
    from: i64,
    kfstate: i64,
    assessment: i64,
    createtime: i64,
}

fn read(plain: &str) -> Result<Handoff, String> {
    let doc = Doc::parse_xml(plain).map_err(|e| format!("not the platform's XML: {e}"))?;
    let num = |k: &str| doc.text(k).trim().parse::<i64>().unwrap_or(0);
    // `content` holds `<msg>` (or is the text itself).
    let content = match doc.get_value("content") {
        Some(XmlValue::Children(c)) => c
            .iter()
            .find(|(k, _)| k == "msg")
            .and_then(|(_, v)| v.as_text())
            .unwrap_or("")
            .to_owned(),
        Some(v) => v.as_text().unwrap_or("").to_owned(),
        None => String::new(),
    };
    let h = Handoff {
        userid: doc.text("userid"),
        content,
        event: doc.text("event"),
        from: num("from"),
        kfstate: num("kfstate"),
        assessment: num("assessment"),
        createtime: num("createtime"),
    };
    if h.userid.is_empty() {
        return Err("the hand-off has no userid".into());
    }
    Ok(h)
}

/// What the desk should hear about a hand-off, if anything.
fn desk_text(h: &Handoff) -> Option<String> {
    if (1..=5).contains(&h.assessment) {
        return Some(format!(
            "[The customer rated the conversation {}/5]",
            h.assessment
        ));
    }
    match h.event.as_str() {
        // kfstate 3 = needperson.
        "userEnter" if h.kfstate == 3 => Some("[The customer asked for an agent]".into()),
        "userEnter" => None,
        "userQuit" => Some("[The customer left the conversation]".into()),
        _ if h.from == 0 && !h.content.is_empty() => Some(h.content.clone()),
        _ => None,
    }
}

/// A userid the platform could have sent: printable, no separators our keys and XML use.
fn plausible_userid(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 128
        && u.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'#' | b'<' | b'>' | b'&'))
}

/// Serves a hand-off to `app`, whose route was authenticated, with its desk.
pub(crate) async fn handoff(
    svc: &Context,
    desk: &dyn Desk,
    app: &AppConfig,
    cb: &ChatbotConfig,
    req: &Request,
) -> Result<Response, Refusal> {
    let started = Instant::now();
    let appid = app.appid.as_str();
    let h = open(svc, appid, cb, req)?;
    let Some(text) = desk_text(&h) else {
        info!(appid, event = %h.event, from = h.from, "hand-off callback: nothing for the desk");
        return Ok(answer(0, "ok"));
    };
    let mut hash = Sha1::new();
    hash.update(h.content.as_bytes());
    hash.update(h.event.as_bytes());
    let digest = crate::support::hex::hex_lower(&hash.finalize());
    let key = crate::support::keys::key(
        appid,
        crate::support::keys::Kind::Chatbot,
        &[&h.userid, &h.createtime, &&digest[..16]],
    );
    let deadline = Duration::from_millis(svc.config.callback.reply_deadline_ms);
    // The entry keeps the message as the desk gets it, so the outbox can forward it again.
    let (msg, xml) = desk_message(cb, &h, &text).map_err(|e| Refusal::unreadable(appid, e))?;
    let group = outbox::inbound_group(appid, &h.userid);
    let claim = idempotency::Entry {
        key: &key,
        appid,
        payload: &xml,
        lease: deadline + LEASE_MARGIN,
        ttl_secs: svc.config.callback.inbox_ttl_secs,
        group: &group,
    };
    let (next, backlog) = tokio::join!(
        idempotency::begin(
            svc.inbox.as_ref(),
            svc.clock.unix_ms(),
            &claim,
            CLAIM_WITHIN
        ),
        outbox::has_backlog(svc, appid, &h.userid, CLAIM_WITHIN),
    );
    let Next::Deliver(claimed) = next else {
        return Ok(answer(0, "ok"));
    };
    // Only a hand-off seen for the first time ends the conversation: a replayed `userQuit`
    // must not close a conversation that started since.
    if h.event == "userQuit" {
        transport::close_conversation(svc, app, &h.userid).await;
    }
    let outcome = if backlog {
        Err(Failure {
            why: "queued behind an earlier message from this customer".into(),
            answer: None,
            permanent: false,
            now: true,
        })
    } else {
        forward(svc, desk, app, &msg, &xml, started + deadline).await
    };
    match outcome {
        Ok(()) => {
            claimed
                .finish(svc.inbox.as_ref(), Outcome::Answered(""), CLAIM_WITHIN)
                .await;
        }
        Err(f) if f.permanent => {
            warn!(appid, error = %f.why, "hand-off refused for good; entry is dead");
            let expires_at = svc.clock.unix_secs() + svc.config.callback.inbox_ttl_secs as i64;
            claimed
                .finish(
                    svc.inbox.as_ref(),
                    Outcome::Dead {
                        why: &f.why,
                        expires_at,
                        at_ms: svc.clock.unix_ms(),
                    },
                    CLAIM_WITHIN,
                )
                .await;
        }
        Err(f) => {
            let due_ms = svc.clock.unix_ms()
                + if f.now {
                    0
                } else {
                    1000 * svc.config.delivery.first_retry_secs as i64
                };
            let deferred = outbox::defer(
                svc,
                &claimed,
                Deferral {
                    group: &group,
                    error: &f.why,
                    answer: f.answer.as_deref(),
                    due_ms,
                    customer: Some(&h.userid),
                },
            )
            .await;
            if !deferred {
                // Neither delivered nor recorded: not accepted, so the platform is told.
                return Err(Refusal::new(503, appid, "not delivered; try again"));
            }
        }
    }
    Ok(answer(0, "ok"))
}

/// The hand-off's plaintext, read and fresh; anything else is unreadable (one answer).
fn open(svc: &Context, appid: &str, cb: &ChatbotConfig, req: &Request) -> Result<Handoff, Refusal> {
    let enc = std::str::from_utf8(&req.body)
        .ok()
        .and_then(ciphertext)
        .ok_or_else(|| Refusal::unreadable(appid, "no encrypted field in the body"))?;
    let plain = cb
        .encoding_aes_key
        .decrypt(&enc, &cb.appid)
        .map_err(|e| Refusal::unreadable(appid, format!("cannot decrypt: {e}")))?;
    let h = read(&plain).map_err(|e| Refusal::unreadable(appid, e))?;
    if !plausible_userid(&h.userid) {
        return Err(Refusal::unreadable(
            appid,
            "the userid is not one the platform sends",
        ));
    }
    // The platform signs nothing but its ciphertext: a captured hand-off replays once its
    // dedup entry is gone, unless its own time says it is old.
    let skew = svc.config.callback.max_timestamp_skew_secs;
    if skew > 0 && svc.clock.unix_secs().abs_diff(h.createtime) > skew {
        return Err(Refusal::unreadable(
            appid,
            "createtime too far from now (replayed or clock skew)",
        ));
    }
    Ok(h)
}

/// The customer's words as the WeChat text message the desk gets.
fn desk_message(cb: &ChatbotConfig, h: &Handoff, text: &str) -> Result<(Message, String), String> {
    let mut d = Doc::default();
    d.push("ToUserName", XmlValue::text(&cb.appid));
    d.push("FromUserName", XmlValue::text(&h.userid));
    d.push("CreateTime", XmlValue::number(h.createtime));
    d.push("MsgType", XmlValue::text("text"));
    d.push("Content", XmlValue::text(text));
    d.push("MsgId", XmlValue::number(h.createtime));
    let xml = d.to_xml();
    let msg = Message::from_doc(d, Format::Xml).map_err(|e| e.to_string())?;
    Ok((msg, xml))
}

/// Why a hand-off did not reach the desk (or the desk's answer the customer).
struct Failure {
    why: String,
    /// The desk's answer, when only that is left to deliver.
    answer: Option<String>,
    permanent: bool,
    /// Queue it due now (not after the first retry wait).
    now: bool,
}

impl Failure {
    fn retry(why: impl Into<String>, answer: Option<String>) -> Failure {
        Failure {
            why: why.into(),
            answer,
            permanent: false,
            now: false,
        }
    }
    fn never(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            answer: None,
            permanent: true,
            now: false,
        }
    }
}

/// The message to the desk; the desk's answer, if any, back through sendmsg.
async fn forward(
    svc: &Context,
    desk: &dyn Desk,
    app: &AppConfig,
    msg: &Message,
    xml: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let budget = deadline.saturating_duration_since(Instant::now());
    let reply = match crate::desk::forward_within(desk, msg, xml, budget).await {
        // The desk took the message; only its answer is unusable.
        Err(crate::desk::DeskError::UnexpectedAnswer(why)) => {
            warn!(appid = %app.appid, reason = %why, "the desk's answer to a hand-off is ignored");
            return Ok(());
        }
        Err(e) if e.is_permanent() => return Err(Failure::never(e.to_string())),
        Err(e) => return Err(Failure::retry(e.to_string(), None)),
        Ok(r) => r,
    };
    let (passive, agent) = match reply {
        DeskReply::Empty => return Ok(()),
        DeskReply::Passive(xml) => (xml, Agent::default()),
        // The platform shows the agent's name (`kefuname`).
        DeskReply::Said { xml, agent } => (
            xml,
            Agent {
                name: Some(agent),
                avatar: None,
                node: None,
            },
        ),
    };
    // A passive reply has nowhere to go on this channel but sendmsg.
    match plan_mini_program_reply(&passive, &msg.from_user) {
        Ok(PassivePlan::Send(kf)) => match deliver(svc, app, &kf, &agent).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::never(e.to_string())),
            Err(e) => Err(Failure::retry(e.to_string(), Some(passive))),
        },
        Ok(PassivePlan::Keep) => Ok(()),
        Err(e) => Err(Failure::never(format!(
            "the desk's reply cannot be sent: {e}"
        ))),
    }
}
