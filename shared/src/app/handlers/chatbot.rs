//! `POST /chatbot/{appid}/{gateway_key}` (the Dialogue Platform's hand-off, served by
//! `source::chatbot`) and `POST /chatbot/{appid}/{gateway_key}/event` (waiter events a desk
//! drives, which go desk → customer through the transport).

use serde_json::{Value, json};

use super::gate::desk_gate;
use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::{AppConfig, ChatbotConfig};
use crate::desk::Desk;
use crate::http::{Request, Response, Route};
use crate::source::chatbot::Refusal;
use crate::transport::Agent;
use crate::transport::chatbot as transport;
use crate::wechat::dialogue::EVENTS;
use crate::wechat::kf::KfMessage;

/// What the head check proved: the path's account, which has `[apps.chatbot]`, and its
/// gateway key (the platform signs nothing but its ciphertext). Only `check` makes one.
pub(crate) struct Chatbot<'a> {
    app: &'a AppConfig,
    cb: &'a ChatbotConfig,
    desk: &'a dyn Desk,
}

/// Both Dialogue Platform routes' head check.
pub(crate) fn check<'a>(
    _: &'a Services,
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Chatbot<'a>, Refusal> {
    let (app, cb) = desk_gate(account, route, req, |a| a.chatbot.as_ref())?;
    let desk = account
        .map(|a| a.desk.as_ref())
        .ok_or_else(|| Refusal::no_such_route(&route.appid))?;
    Ok(Chatbot { app, cb, desk })
}

/// The hand-off, for the account's desk.
pub(crate) async fn handoff(
    svc: &Services,
    proof: Chatbot<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    let Chatbot { app, cb, desk } = proof;
    crate::source::chatbot::handoff(svc, desk, app, cb, req).await
}

/// `POST /chatbot/{appid}/{key}/event`: `{openid, event, kefuname?, kefuavatar?, msg?}`.
pub(crate) async fn event(
    svc: &Services,
    proof: Chatbot<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    let Chatbot { app, cb, .. } = proof;
    let appid = app.appid.as_str();
    let refuse = |why: String| Refusal::new(400, appid, why);
    let v = serde_json::from_slice::<Value>(&req.body)
        .map_err(|_| refuse("the body must be a JSON object".into()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let openid = s("openid").ok_or_else(|| refuse("missing field openid".into()))?;
    crate::support::ids::OpenId::parse(openid)
        .map_err(|_| refuse("openid is not an openid".into()))?;
    let ev = s("event")
        .filter(|e| EVENTS.contains(e))
        .ok_or_else(|| refuse(format!("event must be one of {}", EVENTS.join(", "))))?;
    let agent = Agent {
        name: s("kefuname").map(str::to_owned),
        avatar: s("kefuavatar").map(str::to_owned),
        // The desk's queue or skill, where it names one.
        node: s("ans_node_name").map(str::to_owned),
    };
    let msg = s("msg").unwrap_or(crate::wechat::dialogue::default_event_text(ev));
    let parts = [KfMessage::text(openid, msg)];
    Ok(
        match transport::send(svc, app, cb, &parts, &agent, Some(ev)).await {
            Ok(v) => Response::json(v.to_string()),
            Err(e) => Response::json_status(
                if e.answered() { 200 } else { 502 },
                &json!({ "errcode": e.errcode(), "errmsg": format!("wxdesk: {e}") }),
            ),
        },
    )
}
