//! `GET|POST /wechat/{appid}`: the URL an Official Account or Mini Program configures as its
//! message-push URL. Verifies, decrypts, de-duplicates, forwards to the account's desk and
//! answers WeChat within its 5 s deadline.

mod replay;

use crate::http::{Protocol, Refused};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::AppCiphers;
use crate::config::{AppConfig, AppKind};
use crate::context::Context;
use crate::desk::{Desk, DeskReply};
use crate::http::{Request, Response};
use crate::outbox::{self, Deferral};
use crate::store::idempotency::{self, LEASE_MARGIN, Next};
use crate::store::{Outcome, entry_ref};
use crate::support::ids::OpenId;
use crate::telemetry::metric;
use crate::wechat::crypto::{CryptoError, MsgCrypt};
use crate::wechat::kf::{PassivePlan, plan_mini_program_reply};
use crate::wechat::message::{Format, Message};
use crate::wechat::quota;
use crate::wechat::reply::{SUCCESS, encrypt_field, encrypt_reply};
use crate::wechat::signature::{matches, msg_signature};
use crate::wechat::xml::Doc;

/// Time kept back from the desk call to record its outcome (or queue it) before the
/// deadline.
const RECORD_RESERVE: Duration = Duration::from_millis(500);
/// The dedup write's share of WeChat's 5 s: a store that hangs must not cost the answer.
const CLAIM_WITHIN: Duration = Duration::from_millis(1000);

/// WeChat reads a refused push's status (its console counts failures) and a plain-text
/// reason; an encrypted push that cannot be opened gets one answer, whatever the reason.
pub(crate) struct WechatPush;

impl Protocol for WechatPush {
    const ROUTE: &'static str = "wechat";
    const EVENT: &'static str = "push refused";
    const UNREADABLE: &'static str = "cannot decrypt";
    fn answer(status: u16, why: &str) -> Response {
        Response::text(status, why)
    }
}

pub(crate) type Refusal = Refused<WechatPush>;

/// The checks on the query alone, for the account the path named: a fresh timestamp and
/// WeChat's signature.
pub(crate) fn authenticate<'a>(
    svc: &Context,
    app: &'a AppConfig,
    req: &Request,
) -> Result<&'a AppConfig, Refusal> {
    let refuse = |status, why| Refusal::new(status, app.appid.as_str(), why);
    super::signed_query(svc, &app.token, req).map_err(|(status, why)| refuse(status, why))?;
    // WeChat sends an account in compatible or safe mode only encrypted pushes; the plain
    // `signature` does not cover the body, so a captured query would carry any body.
    if req.method == http::Method::POST
        && req.query("encrypt_type") != Some("aes")
        && app.encoding_aes_key.is_some()
        && !app.allow_plaintext
    {
        return Err(refuse(
            403,
            "plaintext push to an account in safe mode (set allow_plaintext while switching modes)",
        ));
    }
    Ok(app)
}

/// Serves a push that `authenticate` has passed, with the account's desk.
pub(crate) async fn handle(
    svc: &Context,
    desk: &dyn Desk,
    app: &AppConfig,
    req: &Request,
) -> Result<Response, Refusal> {
    let started = Instant::now();
    let appid = app.appid.as_str();
    let (timestamp, nonce) = (
        req.query("timestamp").unwrap_or(""),
        req.query("nonce").unwrap_or(""),
    );
    // Plain mode: the signature does not cover the body, so it carries only its first.
    let plain = req.query("encrypt_type") != Some("aes");
    if plain && !replay::bind(svc, app, req).await {
        return Err(Refusal::new(
            403,
            appid,
            "this signature was used with another body (a replayed query)",
        ));
    }
    match req.method {
        http::Method::GET => {
            let echo = req
                .query("echostr")
                .ok_or_else(|| Refusal::new(400, appid, "missing echostr"))?;
            info!(appid, "URL verification passed");
            Ok(Response::text(200, echo))
        }
        http::Method::POST => {
            let (msg, env) = open(app, req, timestamp, nonce)?;
            Ok(push(svc, desk, app, msg, env, nonce, started).await)
        }
        _ => Err(Refusal::new(405, appid, "method not allowed")),
    }
}

/// Opens a POSTed push as `handle` does, and answers it with what `reply` makes of it
/// (a passive reply, or empty for `success`) instead of the pipeline: no dedup, no desk.
/// WeChat's release test of a third-party platform (`app::handlers::release`).
pub(crate) async fn answer_with<F, Fut>(
    svc: &Context,
    app: &AppConfig,
    req: &Request,
    reply: F,
) -> Result<Response, Refusal>
where
    F: FnOnce(Message) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    if req.method != http::Method::POST {
        return Err(Refusal::new(405, app.appid.as_str(), "method not allowed"));
    }
    let nonce = req.query("nonce").unwrap_or("");
    let (msg, env) = open(app, req, req.query("timestamp").unwrap_or(""), nonce)?;
    let answer = reply(msg).await;
    Ok(render(&answer, &env, app, svc, nonce))
}

/// How the push arrived, which decides how the answer is wrapped.
struct Envelope<'a> {
    format: Format,
    crypt: Option<&'a MsgCrypt>,
}

/// The push's message, decrypted when it came encrypted, and how it came.
fn open<'a>(
    app: &'a AppConfig,
    req: &Request,
    timestamp: &str,
    nonce: &str,
) -> Result<(Message, Envelope<'a>), Refusal> {
    let appid = app.appid.as_str();
    let body = std::str::from_utf8(&req.body)
        .map_err(|_| Refusal::new(400, appid, "body is not UTF-8"))?;
    let format = Format::detect(body)
        .ok_or_else(|| Refusal::new(400, appid, "body is neither XML nor JSON"))?;
    let (plaintext, crypt) = if req.query("encrypt_type") == Some("aes") {
        decrypt(app, app.ciphers(), req, body, format, timestamp, nonce)?
    } else {
        (body.to_owned(), None)
    };
    let msg = Message::parse(&plaintext).map_err(|e| match crypt {
        // What an encrypted push decrypted to is never described to the caller.
        Some(_) => Refusal::unreadable(appid, format!("unreadable plaintext: {e}")),
        None => Refusal::new(400, appid, format!("unreadable message: {e}")),
    })?;
    if OpenId::parse(&msg.from_user).is_err() {
        return Err(Refusal::new(400, appid, "FromUserName is not an openid"));
    }
    let env = Envelope {
        format: msg.format,
        crypt,
    };
    Ok((msg, env))
}

async fn push(
    svc: &Context,
    desk: &dyn Desk,
    app: &AppConfig,
    msg: Message,
    env: Envelope<'_>,
    nonce: &str,
    started: Instant,
) -> Response {
    let appid = app.appid.as_str();
    if let Some(ev) = msg.event()
        && app.skips_event(ev.name(), &svc.config.callback)
    {
        info!(
            appid,
            event = ev.name(),
            "event not forwarded (skip_events)"
        );
        return Response::text(200, SUCCESS);
    }
    // The desk gets WeChat XML re-serialized from what was parsed, never the bytes as
    // received: no DOCTYPE, comment or second field of the sender's reaches it.
    let payload = msg.to_xml();
    let key = msg.dedup_key(appid);
    let group = outbox::inbound_group(appid, &msg.from_user);
    // Logs name the entry by a hash: the key holds the customer's openid.
    let entry = entry_ref(&key);
    let deadline = started + Duration::from_millis(svc.config.callback.reply_deadline_ms);
    let now_ms = svc.clock.unix_ms();
    let claim = idempotency::Entry {
        key: &key,
        appid,
        payload: &payload,
        lease: Duration::from_millis(svc.config.callback.reply_deadline_ms) + LEASE_MARGIN,
        ttl_secs: svc.config.callback.inbox_ttl_secs,
        group: &group,
    };
    let (next, backlog) = tokio::join!(
        idempotency::begin(svc.inbox.as_ref(), now_ms, &claim, CLAIM_WITHIN),
        outbox::has_backlog(svc, appid, &msg.from_user, CLAIM_WITHIN),
    );
    let claimed = match next {
        Next::Deliver(c) => c,
        Next::InFlight => return Response::text(200, SUCCESS),
        Next::Answered(answer) => return render(&answer, &env, app, svc, nonce),
    };
    let deferral = |error, answer, due_ms| Deferral {
        group: &group,
        error,
        answer,
        due_ms,
        customer: Some(&msg.from_user),
    };
    // The customer acted: what WeChat now lets us send them, written beside the desk call.
    let earned = earn_sends(svc, app, &msg, now_ms);
    if backlog {
        // An earlier message of this customer's is queued: this one goes behind it.
        let (_, deferred) = tokio::join!(
            earned,
            outbox::defer(
                svc,
                &claimed,
                deferral(
                    "queued behind an earlier message from this customer",
                    None,
                    now_ms,
                ),
            )
        );
        return accepted(deferred, appid);
    }

    let budget = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(RECORD_RESERVE);
    let desk_started = Instant::now();
    let (_, result) = tokio::join!(
        earned,
        crate::desk::forward_within(desk, &msg, &payload, budget)
    );
    metric(
        "DeskLatency",
        desk_started.elapsed().as_secs_f64() * 1000.0,
        "Milliseconds",
    );
    let retry_at = svc.clock.unix_ms() + 1000 * svc.config.delivery.first_retry_secs as i64;
    let left = || deadline.saturating_duration_since(Instant::now());
    let answer = match result.map(DeskReply::unsigned) {
        Ok(DeskReply::Empty) => String::new(),
        Ok(DeskReply::Passive(xml)) if app.kind == AppKind::MiniProgram => {
            match mini_program_reply(svc, app, &msg, &xml, deadline).await {
                Ok(answer) => answer,
                Err(Unsent::Never(why)) => {
                    outbox::bury(svc, &claimed, &why, left()).await;
                    return Response::text(200, SUCCESS);
                }
                Err(Unsent::Later(why)) => {
                    // The desk has the message: only its reply is still to deliver.
                    let deferred =
                        outbox::defer(svc, &claimed, deferral(&why, Some(&xml), retry_at)).await;
                    return accepted(deferred, appid);
                }
            }
        }
        Ok(DeskReply::Passive(xml)) => xml,
        Ok(DeskReply::Said { xml, .. }) => xml,
        // The desk took the message; only its answer is unusable.
        Err(e @ crate::desk::DeskError::UnexpectedAnswer(_)) => {
            warn!(appid, entry = %entry, error = %e, "the desk's answer is ignored; WeChat gets `success`");
            String::new()
        }
        Err(e) if e.is_permanent() => {
            outbox::bury(svc, &claimed, &e.to_string(), left()).await;
            return Response::text(200, SUCCESS);
        }
        Err(e) => {
            warn!(appid, entry = %entry, error = %e, "desk delivery failed; WeChat gets `success`, the outbox delivers it");
            let deferred =
                outbox::defer(svc, &claimed, deferral(&e.to_string(), None, retry_at)).await;
            return accepted(deferred, appid);
        }
    };
    claimed
        .finish(svc.inbox.as_ref(), Outcome::Answered(&answer), left())
        .await;
    render(&answer, &env, app, svc, nonce)
}

/// WeChat's answer once delivery was handed to the outbox: `success`, unless the message
/// could be neither delivered nor recorded (the store down with the desk). Then it is
/// not accepted: WeChat gets an error (its console counts it) rather than a `success`
/// that would drop the message unseen.
fn accepted(deferred: bool, appid: &str) -> Response {
    if deferred {
        return Response::text(200, SUCCESS);
    }
    error!(
        appid,
        "message neither delivered nor recorded: answered 503"
    );
    Response::text(503, "not delivered; try again")
}

/// Why a desk's reply to a Mini Program customer was not sent.
enum Unsent {
    /// It cannot be, ever.
    Never(String),
    /// Not now: the outbox tries again.
    Later(String),
}

/// Mini Programs take only `transfer_customer_service` as a passive reply: anything else
/// the desk says goes through the custom-send API inside the deadline, and WeChat gets
/// `success`. Returns the answer for WeChat, or why the reply was not delivered.
async fn mini_program_reply(
    svc: &Context,
    app: &AppConfig,
    msg: &Message,
    xml: &str,
    deadline: Instant,
) -> Result<String, Unsent> {
    let plan = plan_mini_program_reply(xml, &msg.from_user).map_err(|e| {
        Unsent::Never(format!(
            "the desk's reply cannot be sent to a mini program: {e}"
        ))
    })?;
    let kf = match plan {
        PassivePlan::Keep => return Ok(xml.to_owned()),
        PassivePlan::Send(kf) => kf,
    };
    // A desk's notice (queueing, connecting, offline texts) never takes the customer's
    // last send: that one stays for the agent's answer.
    let now_ms = svc.clock.unix_ms();
    let left = quota::current(svc.inbox.as_ref(), &app.appid, &msg.from_user, now_ms)
        .await
        .ok()
        .flatten()
        .map(|a| a.at(now_ms));
    if left.is_some_and(|n| n < 2) {
        info!(appid = %app.appid, "mini program: the desk's reply is not sent, to keep the customer's last send for the agent");
        return Ok(String::new());
    }
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(RECORD_RESERVE);
    if left.is_some() {
        let _ = quota::spend(svc.inbox.as_ref(), &app.appid, &msg.from_user, now_ms).await;
    }
    match tokio::time::timeout(budget, svc.wechat.custom_send(app, &kf.to_json())).await {
        Ok(Ok(_)) => {
            info!(appid = %app.appid, msgtype = %kf.msgtype, "mini program: desk reply sent through custom send");
            Ok(String::new())
        }
        Ok(Err(e)) => {
            let why = format!("custom send of the desk's reply failed: {e}");
            let permanent = crate::transport::DeliverError::from(e).is_permanent();
            Err(if permanent {
                Unsent::Never(why)
            } else {
                Unsent::Later(why)
            })
        }
        Err(_) => Err(Unsent::Later(
            "custom send of the desk's reply did not finish in time".to_owned(),
        )),
    }
}

/// Resets the customer's send allowance for their action (one write; a failure only
/// leaves the count to WeChat, which judges every send anyway).
async fn earn_sends(svc: &Context, app: &AppConfig, msg: &Message, now_ms: i64) {
    let Some(action) = quota::Action::of(msg, app.kind) else {
        return;
    };
    let grant = quota::grant(
        svc.inbox.as_ref(),
        &svc.config.wechat.quota,
        &app.appid,
        &msg.from_user,
        action,
        now_ms,
    );
    match tokio::time::timeout(CLAIM_WITHIN, grant).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(appid = %app.appid, error = %e, "could not record the customer's send allowance")
        }
        Err(_) => warn!(appid = %app.appid, "recording the customer's send allowance timed out"),
    }
}

fn decrypt<'a>(
    app: &AppConfig,
    crypto: Option<AppCiphers<'a>>,
    req: &Request,
    body: &str,
    format: Format,
    timestamp: &str,
    nonce: &str,
) -> Result<(String, Option<&'a MsgCrypt>), Refusal> {
    // One answer for every failure to open it; the reason goes to the log only.
    let appid = app.appid.as_str();
    let crypto = crypto.ok_or_else(|| {
        Refusal::unreadable(
            appid,
            "push is encrypted but this app has no encoding_aes_key",
        )
    })?;
    let sig = req
        .query("msg_signature")
        .ok_or_else(|| Refusal::new(401, appid, "encrypted push without msg_signature"))?;
    let encrypt = encrypt_field(body, format)
        .ok_or_else(|| Refusal::unreadable(appid, "encrypted push without an Encrypt field"))?;
    if !matches(
        &msg_signature(app.token.expose(), timestamp, nonce, &encrypt),
        sig,
    ) {
        return Err(Refusal::new(401, appid, "msg_signature mismatch"));
    }
    // An account served through the platform: WeChat encrypts for the platform's appid.
    let receive_id = app.receive_id();
    let first = crypto.current.decrypt(&encrypt, receive_id);
    match (first, crypto.previous) {
        (Ok(plain), _) => Ok((plain, Some(crypto.current))),
        // During a key rotation, pushes already in flight were encrypted with the old key.
        (Err(e), Some(prev)) if e != CryptoError::ReceiveIdMismatch => {
            match prev.decrypt(&encrypt, receive_id) {
                Ok(plain) => Ok((plain, Some(prev))),
                Err(_) => Err(Refusal::unreadable(appid, format!("cannot decrypt: {e}"))),
            }
        }
        (Err(e), _) => Err(Refusal::unreadable(appid, format!("cannot decrypt: {e}"))),
    }
}

/// Turns the desk's answer into WeChat's: empty → `success`; a passive reply as is, as
/// JSON for a JSON push, encrypted when the push was.
fn render(
    answer: &str,
    env: &Envelope<'_>,
    app: &AppConfig,
    svc: &Context,
    nonce: &str,
) -> Response {
    if answer.trim().is_empty() {
        return Response::text(200, SUCCESS);
    }
    let plain = match env.format {
        Format::Xml => answer.to_owned(),
        Format::Json => match Doc::parse_xml(answer) {
            Ok(doc) => doc.to_json().to_string(),
            Err(e) => {
                error!(appid = %app.appid, error = %e, "stored answer is not XML; answering success");
                return Response::text(200, SUCCESS);
            }
        },
    };
    let body = match env.crypt {
        Some(crypt) => {
            let ts = svc.clock.unix_secs().to_string();
            encrypt_reply(
                &plain,
                env.format,
                crypt,
                app.token.expose(),
                app.receive_id(),
                &ts,
                nonce,
            )
        }
        None => plain,
    };
    match env.format {
        Format::Xml => Response::xml(body),
        Format::Json => Response::json(body),
    }
}
