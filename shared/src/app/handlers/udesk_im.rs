//! `POST /udesk-im/{appid}/{gateway_key}`: the "message push server address" Udesk's
//! message interface sends agent messages to. The path carries the account's gateway key
//! (Udesk's sign covers only the query, not the body); the query is signed like Udesk's
//! own calls (number, email, timestamp, sign with the app's KEY); the body is a custom-send message as a bracket-key
//! form or JSON (the shapes the simulated domain takes). Answers are Udesk's own:
//! `{"success": true}` or `{"success": false, "msg": "..."}`.

use crate::support::throttle::log_refusal;
use serde_json::json;
use tracing::{info, warn};

use super::gate::desk_gate;
use crate::app::Services;
use crate::config::{AppConfig, UdeskImConfig};
use crate::desk::udesk_im::sign;
use crate::http::{Request, Response, Route};
use crate::wechat::kf::KfMessage;

fn failure(status: u16, appid: &str, msg: &str) -> Response {
    if let Some(suppressed) = log_refusal("udesk-im", msg) {
        warn!(
            appid,
            status,
            reason = msg,
            suppressed,
            "udesk-im push refused"
        );
    }
    Response::json_status(status, &json!({ "success": false, "msg": msg }))
}

/// What the head check proved: the account, whose desk is `udesk_im`, and a push signed by
/// Udesk within its window. Only `check` makes one.
pub(crate) struct UdeskIm<'a> {
    app: &'a AppConfig,
}

/// The path's gateway key, then Udesk's own sign and time window on the query: all before
/// the body is read.
pub(crate) fn check<'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
) -> Result<UdeskIm<'a>, Response> {
    let appid = route.appid.as_str();
    let (app, cfg) = desk_gate(
        svc,
        route,
        req,
        |a| a.desk.udesk_im(),
        |status, why| failure(status, appid, why),
    )?;
    let UdeskImConfig {
        key,
        timezone,
        sign_window_secs,
        ..
    } = cfg;
    let (number, email) = (
        req.query("number").unwrap_or(""),
        req.query("email").unwrap_or(""),
    );
    let (Some(timestamp), Some(presented)) = (req.query("timestamp"), req.query("sign")) else {
        return Err(failure(
            401,
            appid,
            "sign verification failed: missing timestamp or sign",
        ));
    };
    if !sign::verify(number, email, timestamp, presented, key) {
        return Err(failure(401, appid, "sign verification failed"));
    }
    match crate::support::localtime::parse_local_timestamp(timestamp, timezone.offset_secs()) {
        // 0 turns the window off (only for replaying recorded events).
        Some(t)
            if *sign_window_secs == 0 || svc.clock.unix_secs().abs_diff(t) <= *sign_window_secs => {
        }
        Some(_) => return Err(failure(401, appid, "timestamp outside the allowed window")),
        None => return Err(failure(400, appid, "timestamp is not YYYYMMDDHHmmss")),
    }
    Ok(UdeskIm { app })
}

/// Serves a push that `check` has passed.
pub(crate) async fn serve(svc: &Services, proof: UdeskIm<'_>, req: &Request) -> Response {
    let app = proof.app;
    let appid = app.appid.as_str();
    let msg = match KfMessage::parse(&req.body, app.kind) {
        Ok(m) => m,
        Err(e) => return failure(400, appid, &e.to_string()),
    };
    match crate::transport::deliver(svc, app, &msg, &crate::transport::Agent::default()).await {
        Ok(_) => {
            info!(appid, msgtype = %msg.msgtype, "agent message from Udesk delivered");
            Response::json(json!({ "success": true }).to_string())
        }
        Err(e) => failure(
            if e.answered() { 200 } else { 502 },
            appid,
            &format!("the message was not delivered: {}", e.desk_text()),
        ),
    }
}
