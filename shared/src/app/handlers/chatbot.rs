//! `POST /chatbot/{appid}/{gateway_key}` (the Dialogue Platform's hand-off, served by
//! `source::chatbot`) and `POST /chatbot/{appid}/{gateway_key}/event` (waiter events a desk
//! drives, which go desk → customer through the transport).

use serde_json::{Value, json};

use crate::app::Services;
use crate::app::routes::desk_gate;
use crate::config::{AppConfig, ChatbotConfig};
use crate::http::{Request, Response, Route};
use crate::source::chatbot::refuse;
use crate::transport::Agent;
use crate::transport::chatbot as transport;
use crate::wechat::dialogue::EVENTS;
use crate::wechat::kf::KfMessage;

/// Both Dialogue Platform routes: the path's gateway key (the platform signs nothing but
/// its ciphertext), and an account that has `[apps.chatbot]`.
pub(crate) fn authenticate<'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
) -> Result<(&'a AppConfig, &'a ChatbotConfig), Response> {
    let appid = route.appid.as_str();
    desk_gate(
        svc,
        route,
        req,
        |a| a.chatbot.as_ref(),
        |status, why| refuse(status, appid, why),
    )
}

/// The hand-off, for the account's desk.
pub(crate) async fn handoff(svc: &Services, route: &Route, req: &Request) -> Response {
    let (app, cb) = match authenticate(svc, route, req) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match svc.desk(&app.appid) {
        Some(desk) => crate::source::chatbot::handoff(svc, desk.as_ref(), app, cb, req).await,
        None => refuse(404, &app.appid, "no desk configured"),
    }
}

/// `POST /chatbot/{appid}/{key}/event`: `{openid, event, kefuname?, kefuavatar?, msg?}`.
pub(crate) async fn event(svc: &Services, route: &Route, req: &Request) -> Response {
    let appid = route.appid.as_str();
    let (app, cb) = match authenticate(svc, route, req) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
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
