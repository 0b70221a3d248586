//! `POST /udesk-im/{appid}/{gateway_key}`: the "message push server address" Udesk's
//! message interface sends agent messages to. The path carries the account's gateway key
//! (Udesk's sign covers only the query, not the body); the query is signed like Udesk's
//! own calls (number, email, timestamp, sign with the app's KEY); the body is a custom-send message as a bracket-key
//! form or JSON (the shapes the simulated domain takes). Answers are Udesk's own:
//! `{"success": true}` or `{"success": false, "msg": "..."}`.

use serde_json::json;
use tracing::info;

use super::gate::desk_gate;
use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::{AppConfig, UdeskImConfig};
use crate::desk::udesk_im::sign;
use crate::http::{Protocol, Refused, Request, Response, Route};
use crate::wechat::kf::KfMessage;

/// Udesk's own answer to a push it must not count as delivered.
pub(crate) struct UdeskImPush;

impl Protocol for UdeskImPush {
    const ROUTE: &'static str = "udesk-im";
    const EVENT: &'static str = "udesk-im push refused";
    fn answer(status: u16, why: &str) -> Response {
        Response::json_status(status, &json!({ "success": false, "msg": why }))
    }
}

type Refusal = Refused<UdeskImPush>;

/// What the head check proved: the account, whose desk is `udesk_im`, and a push signed by
/// Udesk within its window. Only `check` makes one.
pub(crate) struct UdeskIm<'a> {
    app: &'a AppConfig,
}

/// The path's gateway key, then Udesk's own sign and time window on the query: all before
/// the body is read.
pub(crate) fn check<'a>(
    svc: &'a Services,
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<UdeskIm<'a>, Refusal> {
    let appid = route.appid.as_str();
    let (app, cfg) = desk_gate(account, route, req, |a| a.desk.udesk_im())?;
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
        return Err(Refusal::new(
            401,
            appid,
            "sign verification failed: missing timestamp or sign",
        ));
    };
    if !sign::verify(number, email, timestamp, presented, key) {
        return Err(Refusal::new(401, appid, "sign verification failed"));
    }
    match crate::support::localtime::parse_local_timestamp(timestamp, timezone.offset_secs()) {
        // 0 turns the window off (only for replaying recorded events).
        Some(t)
            if *sign_window_secs == 0 || svc.clock.unix_secs().abs_diff(t) <= *sign_window_secs => {
        }
        Some(_) => {
            return Err(Refusal::new(
                401,
                appid,
                "timestamp outside the allowed window",
            ));
        }
        None => return Err(Refusal::new(400, appid, "timestamp is not YYYYMMDDHHmmss")),
    }
    Ok(UdeskIm { app })
}

/// Serves a push that `check` has passed.
pub(crate) async fn serve(
    svc: &Services,
    proof: UdeskIm<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    let app = proof.app;
    let appid = app.appid.as_str();
    let msg = KfMessage::parse(&req.body, app.kind)
        .map_err(|e| Refusal::new(400, appid, e.to_string()))?;
    match crate::transport::deliver(svc, app, &msg, &crate::transport::Agent::default()).await {
        Ok(_) => {
            info!(appid, msgtype = %msg.msgtype, "agent message from Udesk delivered");
            Ok(Response::json(json!({ "success": true }).to_string()))
        }
        Err(e) => Err(Refusal::new(
            if e.answered() { 200 } else { 502 },
            appid,
            format!("the message was not delivered: {}", e.desk_text()),
        )),
    }
}
