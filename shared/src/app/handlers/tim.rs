//! `POST /tim/{appid}/{gateway_key}`: Tencent IM's third-party callback. An agent's
//! `C2C.CallbackAfterSendMsg` to a customer becomes WeChat custom sends to that openid.
//! Tencent waits 2 s, and nothing may run after the answer (a Lambda is frozen then): the
//! message is recorded and queued, the answer goes at once, and the outbox's worker
//! delivers it in the customer's order. A callback Tencent sends again is delivered once
//! (dedup on MsgKey).
//!
//! Tencent's console takes one callback URL per IM app, so the URL of any account on a
//! shared IM app serves every account on it: the customer's account comes from the record
//! written when they were imported. Online-only messages (TUIKit's typing states) are not
//! queued: a typing state becomes WeChat's typing indicator at once, or nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::gate::desk_gate;

use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::{AppConfig, TencentImConfig};
use crate::desk::tencent_im::tuikit::{self, Custom};
use crate::http::{Protocol, Refused, Request, Response, Route};
use crate::outbox::{self, Deferral};
use crate::store::conversation;
use crate::store::idempotency::{self, Next};
use crate::support::ids::{ImMsgKey, ImUserId};

/// Answer Tencent well inside its 2 s.
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);
/// Tencent's RequestTime must be within a minute of ours.
const SIGN_WINDOW_SECS: u64 = 60;

fn ok() -> Response {
    Response::json(json!({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}).to_string())
}

/// Tencent IM's callback answer for a request refused: its console lists failed callbacks.
pub(crate) struct TimCallback;

impl Protocol for TimCallback {
    const ROUTE: &'static str = "tim";
    const EVENT: &'static str = "Tencent IM callback refused";
    fn answer(status: u16, why: &str) -> Response {
        Response::json_status(
            status,
            &json!({"ActionStatus": "FAIL", "ErrorInfo": why, "ErrorCode": 1}),
        )
    }
}

type Refusal = Refused<TimCallback>;

/// `Sign` = lowercase hex SHA-256 of token + RequestTime.
pub(crate) fn callback_sign(token: &str, request_time: &str) -> String {
    crate::support::hex::hex_lower(&Sha256::digest(format!("{token}{request_time}")))
}

/// What the head check proved: the path's account, whose desk is Tencent IM app
/// `sdkappid`, and a callback signed by Tencent within its window. Only `check` makes one.
pub(crate) struct Tim<'a> {
    app: &'a AppConfig,
    sdkappid: u64,
    desk: &'a dyn crate::desk::Desk,
}

/// The path's gateway key, the account's SdkAppid and Tencent's `Sign` over the callback
/// token and a fresh `RequestTime`: all before the body is read.
pub(crate) fn check<'a>(
    svc: &'a Services,
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Tim<'a>, Refusal> {
    let appid = route.appid.as_str();
    let (app, cfg) = desk_gate(account, route, req, |a| a.desk.tencent_im())?;
    let TencentImConfig {
        sdkappid,
        callback_token,
        ..
    } = cfg;
    if req.query("SdkAppid").and_then(|s| s.parse::<u64>().ok()) != Some(*sdkappid) {
        return Err(Refusal::new(403, appid, "SdkAppid is not this account's"));
    }
    let (Some(sign), Some(time)) = (req.query("Sign"), req.query("RequestTime")) else {
        return Err(Refusal::new(401, appid, "missing Sign or RequestTime"));
    };
    let Ok(t) = time.parse::<i64>() else {
        return Err(Refusal::new(401, appid, "RequestTime is not a number"));
    };
    if svc.clock.unix_secs().abs_diff(t) > SIGN_WINDOW_SECS {
        return Err(Refusal::new(401, appid, "RequestTime too far from now"));
    }
    if !crate::config::Secret::new(callback_sign(callback_token.expose(), time)).matches(sign) {
        return Err(Refusal::new(401, appid, "Sign mismatch"));
    }
    let desk = account
        .map(|a| a.desk.as_ref())
        .ok_or_else(|| Refusal::no_such_route(appid))?;
    Ok(Tim {
        app,
        sdkappid: *sdkappid,
        desk,
    })
}

/// The account `user` (a customer's UserID) belongs to when it is not the callback's own:
/// the one recorded at their import, on the same IM app, in whatever standing (a closed
/// one's messages die in the outbox and are told back, never sent for another account).
/// An error while that account cannot be read (it must not be sent for another).
async fn owner(
    svc: &Services,
    path_app: &AppConfig,
    sdkappid: u64,
    user: &str,
) -> Result<Option<Arc<Account>>, crate::app::accounts::Unreadable> {
    let read = conversation::im_owner(svc.inbox.as_ref(), sdkappid, user, svc.clock.unix_ms());
    let recorded = match tokio::time::timeout(ANSWER_WITHIN / 4, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            warn!(appid = %path_app.appid, error = %e, "customer's account record unreadable; the callback's account serves");
            None
        }
        Err(_) => None,
    };
    let Some(recorded) = recorded.filter(|a| *a != path_app.appid.as_str()) else {
        return Ok(None);
    };
    Ok(svc.lookup(&recorded).await?.filter(|a| {
        a.app
            .desk
            .tencent_im()
            .is_some_and(|c| c.sdkappid == sdkappid)
    }))
}

/// Whether a callback is an agent's message to a customer that IM delivered: from one of
/// `app`'s agents, to someone who is not one.
fn agent_to_customer(app: &AppConfig, from: &str, to: &str, body: &Value) -> bool {
    let agents = app
        .desk
        .tencent_im()
        .map(|c| c.agents.as_slice())
        .unwrap_or_default();
    let failed = body
        .get("SendMsgResult")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0;
    agents.iter().any(|a| a == from) && !agents.iter().any(|a| a == to) && !failed
}

/// Why an agent's message was not sent when wxdesk cannot tell for which account.
const NO_SHOP: &str =
    "wxdesk does not know which shop this customer wrote to (no message from them was recorded)";
const ACCOUNTS_UNREADABLE: &str =
    "wxdesk could not read its accounts just now; send the message again in a moment";

/// An agent's message wxdesk cannot send for any account (a customer no shop recorded, or
/// accounts that cannot be read now): not sent, and the agent told why, in their
/// conversation.
async fn not_sent(
    desk: &dyn crate::desk::Desk,
    path_app: &AppConfig,
    from: &str,
    to: &str,
    body: &Value,
    reason: &str,
) -> Response {
    let online_only = body.get("OnlineOnlyFlag").and_then(Value::as_i64) == Some(1);
    if !agent_to_customer(path_app, from, to, body) || online_only {
        return ok();
    }
    warn!(appid = %path_app.appid, reason, "agent message not sent; the agent is told");
    if let Err(e) = desk.undelivered(to, from, reason).await {
        warn!(appid = %path_app.appid, error = %e, "could not tell the agent their message was not delivered");
    }
    ok()
}

/// An online-only message (TUIKit's typing state): the customer's typing indicator, or
/// nothing. WeChat refuses it without a message in the last 30 s (45080) and while it
/// shows (45081): dropped quietly, never retried, never told ("客服输入状态").
async fn online_only(svc: &Services, app: &AppConfig, to: &str, body: &Value) -> Response {
    let typing = body
        .get("MsgBody")
        .and_then(Value::as_array)
        .and_then(|elems| {
            elems.iter().find_map(|e| {
                e.pointer("/MsgContent/Data")
                    .and_then(Value::as_str)
                    .and_then(tuikit::parse)
            })
        });
    let Some(Custom::Typing(on)) = typing else {
        info!(appid = %app.appid, "online-only agent message ignored (not a typing state)");
        return ok();
    };
    let sent = tokio::time::timeout(ANSWER_WITHIN / 2, svc.wechat.typing(app, to, on)).await;
    match sent {
        Ok(Ok(_)) => info!(appid = %app.appid, typing = on, "typing state shown to the customer"),
        Ok(Err(e)) if matches!(e.errcode(), 45080 | 45081) => {
            info!(appid = %app.appid, errcode = e.errcode(), "WeChat did not show the typing state")
        }
        Ok(Err(e)) => warn!(appid = %app.appid, error = %e, "typing state not shown"),
        Err(_) => warn!(appid = %app.appid, "typing state not shown in time"),
    }
    ok()
}

/// Serves a callback that `check` has passed.
pub(crate) async fn serve(
    svc: &Services,
    proof: Tim<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    let Tim {
        app: path_app,
        sdkappid,
        desk,
    } = proof;
    let appid = path_app.appid.as_str();
    let body = serde_json::from_slice::<Value>(&req.body)
        .map_err(|_| Refusal::new(400, appid, "body is not JSON"))?;
    let command = body
        .get("CallbackCommand")
        .and_then(Value::as_str)
        .or(req.query("CallbackCommand"))
        .unwrap_or("");
    if command != "C2C.CallbackAfterSendMsg" {
        info!(
            appid,
            command, "Tencent IM callback ignored (not an after-send)"
        );
        return Ok(ok());
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let (from, to) = (s("From_Account"), s("To_Account"));
    // The customer's UserID is their openid: checked before it reaches a map, a store key
    // or a log line.
    if ImUserId::parse(to).is_err() {
        return Err(Refusal::new(
            400,
            appid,
            "To_Account is not an IM UserID (1-32 letters, digits, '_', '-')",
        ));
    }
    let Ok(recorded) = owner(svc, path_app, sdkappid, to).await else {
        return Ok(not_sent(desk, path_app, from, to, &body, ACCOUNTS_UNREADABLE).await);
    };
    // The platform's route stands for no account: a customer no shop recorded cannot be
    // answered, and the agent hears so.
    if recorded.is_none() && svc.platform_account(path_app.appid.as_str()).is_some() {
        return Ok(not_sent(desk, path_app, from, to, &body, NO_SHOP).await);
    }
    let app = recorded.as_ref().map_or(path_app, |a| &a.app);
    let appid = app.appid.as_str();
    if !agent_to_customer(app, from, to, &body) {
        // Customers' own messages (sent by us) and agent-to-agent chat are not for WeChat.
        return Ok(ok());
    }
    if body.get("OnlineOnlyFlag").and_then(Value::as_i64) == Some(1) {
        return Ok(online_only(svc, app, to, &body).await);
    }
    let msg_key = match s("MsgKey") {
        "" => format!(
            "{from}_{}_{}",
            body.get("MsgSeq").and_then(Value::as_u64).unwrap_or(0),
            body.get("MsgRandom").and_then(Value::as_u64).unwrap_or(0)
        ),
        k => k.to_owned(),
    };
    if ImMsgKey::parse(&msg_key).is_err() {
        return Err(Refusal::new(
            400,
            appid,
            "MsgKey is not a Tencent IM message key",
        ));
    }
    // A different agent than the one who served this customer last: a transfer.
    let previous = match conversation::set_last_agent(
        svc.inbox.as_ref(),
        appid,
        to,
        from,
        svc.clock.unix_ms(),
        svc.config.callback.inbox_ttl_secs,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            warn!(appid, error = %e, "conversation state unavailable; no waiterSwitch");
            None
        }
    };
    let switched = previous.is_some_and(|p| p != from);
    let key = crate::support::keys::key(appid, crate::support::keys::Kind::Tim, &[&msg_key]);
    let group = outbox::outbound_group(appid, to);
    let payload = outbox::agent_payload(&body, switched);
    let next = idempotency::begin(
        svc.inbox.as_ref(),
        svc.clock.unix_ms(),
        &idempotency::Entry {
            key: &key,
            appid,
            payload: &payload,
            lease: ANSWER_WITHIN,
            ttl_secs: svc.config.callback.inbox_ttl_secs,
            group: &group,
        },
        ANSWER_WITHIN / 2,
    )
    .await;
    let Next::Deliver(claimed) = next else {
        return Ok(ok());
    };
    // Nothing runs after the answer (a Lambda is frozen then): the worker delivers it.
    let deferred = outbox::defer(
        svc,
        &claimed,
        Deferral {
            group: &group,
            error: "queued for delivery",
            answer: None,
            due_ms: svc.clock.unix_ms(),
            customer: None,
        },
    )
    .await;
    if !deferred {
        // Neither recorded nor queued: tell Tencent, whose console shows failed callbacks.
        return Err(Refusal::new(
            503,
            appid,
            "cannot queue the agent's message; try again",
        ));
    }
    Ok(ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn documented_sign() {
        // The doc's sample (token xxxxyyyy, RequestTime 1669872112).
        assert_eq!(
            super::callback_sign("xxxxyyyy", "1669872112"),
            "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
        );
    }
}
