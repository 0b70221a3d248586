//! `POST /chatbot/{appid}/{gateway_key}` (the Dialogue Platform's hand-off, served by
//! `source::chatbot`) and `POST /chatbot/{appid}/{gateway_key}/event` (waiter events a desk
//! drives, which go desk → customer through the transport).

use serde_json::{Value, json};

use super::gate::desk_gate;
use crate::app::Services;
use crate::config::{AppConfig, ChatbotConfig};
use crate::desk::Desk;
use crate::http::{Request, Response, Route};
use crate::source::chatbot::refuse;
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
    svc: &'a Services,
    route: &Route,
    req: &Request,
) -> Result<Chatbot<'a>, Response> {
    let appid = route.appid.as_str();
    let (app, cb) = desk_gate(
        svc,
        route,
        req,
        |a| a.chatbot.as_ref(),
        |status, why| refuse(status, appid, why),
    )?;
    let desk = svc.desk(&app.appid).ok_or_else(Response::no_such_route)?;
    Ok(Chatbot {
        app,
        cb,
        desk: desk.as_ref(),
    })
}

/// The hand-off, for the account's desk.
pub(crate) async fn handoff(svc: &Services, proof: Chatbot<'_>, req: &Request) -> Response {
    let Chatbot { app, cb, desk } = proof;
    crate::source::chatbot::handoff(svc, desk, app, cb, req).await
}

/// `POST /chatbot/{appid}/{key}/event`: `{openid, event, kefuname?, kefuavatar?, msg?}`.
pub(crate) async fn event(svc: &Services, proof: Chatbot<'_>, req: &Request) -> Response {
    let Chatbot { app, cb, .. } = proof;
    let appid = app.appid.as_str();
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return refuse(400, appid, "the body must be a JSON object");
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(openid) = s("openid") else {
        return refuse(400, appid, "missing field openid");
    };
    if crate::support::ids::OpenId::parse(openid).is_err() {
        return refuse(400, appid, "openid is not an openid");
    }
    let Some(ev) = s("event").filter(|e| EVENTS.contains(e)) else {
        return refuse(
            400,
            appid,
            &format!("event must be one of {}", EVENTS.join(", ")),
        );
    };
    let agent = Agent {
        name: s("kefuname").map(str::to_owned),
        avatar: s("kefuavatar").map(str::to_owned),
        // The desk's queue or skill, where it names one.
        node: s("ans_node_name").map(str::to_owned),
    };
    let msg = s("msg").unwrap_or(crate::wechat::dialogue::default_event_text(ev));
    let parts = [KfMessage::text(openid, msg)];
    match transport::send(svc, app, cb, &parts, &agent, Some(ev)).await {
        Ok(v) => Response::json(v.to_string()),
        Err(e) => Response::json_status(
            if e.answered() { 200 } else { 502 },
            &json!({ "errcode": e.errcode(), "errmsg": format!("wxdesk: {e}") }),
        ),
    }
}
