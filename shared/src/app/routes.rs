//! The route table: for each route, what it checks from the request's head before its
//! body is read, and the handler that serves it.

use crate::support::throttle::log_refusal;
use std::sync::Arc;

use crate::app::Services;
use crate::app::handlers;
use crate::config::{AppConfig, DeskConfig, Secret};
use crate::http::{MAX_DESK_BODY, MAX_UPLOAD_BODY, Request, Response, Route, RouteKind, is_upload};
use crate::source;

/// The largest request body a route takes; `upload` says whether the request is a Udesk
/// media upload (`POST ...?type=`), the one kind of request with a large body.
pub(crate) fn max_body_bytes(kind: RouteKind, config: &crate::Config, upload: bool) -> usize {
    match kind {
        RouteKind::WechatCallback => config.callback.max_body_bytes,
        RouteKind::UdeskGateway if upload => MAX_UPLOAD_BODY,
        RouteKind::UdeskGateway
        | RouteKind::UdeskTemplateList
        | RouteKind::UdeskTemplateSend
        | RouteKind::UdeskImPush
        | RouteKind::TimCallback
        | RouteKind::ChatbotHandoff
        | RouteKind::ChatbotEvent => MAX_DESK_BODY,
        RouteKind::StagedMedia => 0,
    }
}

/// Whether an account uses a desk-facing route at all: each desk kind calls its own
/// route, and only an account with `[apps.chatbot]` has the Dialogue Platform's. For any
/// other account the route does not exist (the same 404 as an unknown path), so a key
/// captured from one integration opens no other.
pub(crate) fn opens(kind: RouteKind, app: &AppConfig) -> bool {
    match kind {
        RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend => {
            matches!(app.desk, DeskConfig::UdeskWechat(_))
        }
        RouteKind::UdeskImPush => matches!(app.desk, DeskConfig::UdeskIm(_)),
        RouteKind::TimCallback => matches!(app.desk, DeskConfig::TencentIm(_)),
        RouteKind::ChatbotHandoff | RouteKind::ChatbotEvent => app.chatbot.is_some(),
        RouteKind::WechatCallback | RouteKind::StagedMedia => true,
    }
}

/// Whether the path's key is the one for this route: the Dialogue Platform's hand-off
/// has a key of its own; every route the desk calls takes the account's.
fn key_matches(kind: RouteKind, app: &AppConfig, presented: Option<&Secret>) -> bool {
    match kind {
        RouteKind::ChatbotHandoff => app.handoff_key_matches(presented),
        _ => app.desk_key_matches(presented),
    }
}

/// The account of a desk-facing route, once the route is open for it (else the answer to
/// an unknown path) and the path carries its key (else `refuse(401, …)`, in the route's
/// own protocol).
pub(crate) fn open_account<'a>(
    app: Option<&'a AppConfig>,
    route: &Route,
    refuse: impl FnOnce(u16, &'static str) -> Response,
) -> Result<&'a AppConfig, Response> {
    let Some(app) = app.filter(|a| opens(route.kind, a)) else {
        if let Some(suppressed) = log_refusal("desk", "closed") {
            tracing::warn!(route = ?route.kind, suppressed, "desk-facing route closed for this appid");
        }
        return Err(Response::no_such_route());
    };
    if !key_matches(route.kind, app, route.key.as_ref()) {
        return Err(refuse(401, "missing or wrong gateway key in the URL"));
    }
    Ok(app)
}

/// What every desk-facing route but Udesk's simulated domain checks first: `open_account`
/// for the path's appid, then that the request is a POST. Returns the account's part of
/// the config that the route needs (`pick`), which an open route always has.
pub fn desk_gate<'a, T: 'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
    pick: impl FnOnce(&'a AppConfig) -> Option<&'a T>,
    refuse: impl Fn(u16, &'static str) -> Response,
) -> Result<(&'a AppConfig, &'a T), Response> {
    let app = open_account(svc.config.app(&route.appid), route, &refuse)?;
    if req.method != http::Method::POST {
        return Err(refuse(405, "use POST"));
    }
    let part = pick(app).ok_or_else(Response::no_such_route)?;
    Ok((app, part))
}

/// Everything a route checks from the request's head alone (path key, signature, time
/// window, account and method), before its body is read: a refusal here is the whole
/// answer, and nothing else happens.
pub(crate) async fn authenticate(
    svc: &Services,
    route: &Route,
    req: &Request,
) -> Result<(), Response> {
    match route.kind {
        RouteKind::WechatCallback => {
            source::wechat_push::authenticate(svc, &route.appid, req).map(|_| ())
        }
        RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend => {
            handlers::udesk::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::UdeskImPush => handlers::udesk_im::authenticate(svc, route, req).map(|_| ()),
        RouteKind::TimCallback => handlers::tim::authenticate(svc, route, req).map(|_| ()),
        RouteKind::ChatbotHandoff | RouteKind::ChatbotEvent => {
            handlers::chatbot::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::StagedMedia => {
            handlers::media::authenticate(&svc.links, req, svc.clock.unix_secs())
        }
    }
}

/// Authenticates, checks the body against the route's limit, and serves.
pub(crate) async fn dispatch(svc: &Arc<Services>, route: &Route, req: &Request) -> Response {
    if let Err(refused) = authenticate(svc, route, req).await {
        return refused;
    }
    let limit = max_body_bytes(
        route.kind,
        &svc.config,
        is_upload(route.kind, &req.method, &req.query),
    );
    if req.body.len() > limit {
        if let Some(suppressed) = log_refusal("body", "over the limit") {
            tracing::warn!(appid = %route.appid, limit, suppressed, "request body over the route's limit");
        }
        return Response::text(413, "body too large");
    }
    serve_authenticated(svc, route, req).await
}

/// Serves a request that `authenticate` has passed and whose body is within its limit.
pub(crate) async fn serve_authenticated(
    svc: &Arc<Services>,
    route: &Route,
    req: &Request,
) -> Response {
    match route.kind {
        RouteKind::WechatCallback => match svc.desk(&route.appid) {
            Some(desk) => source::wechat_push::handle(svc, desk.as_ref(), &route.appid, req).await,
            None => Response::text(404, "unknown appid"),
        },
        RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend => {
            handlers::udesk::handle(svc, route, req).await
        }
        RouteKind::UdeskImPush => handlers::udesk_im::handle(svc, &route.appid, req).await,
        RouteKind::ChatbotHandoff => handlers::chatbot::handoff(svc, route, req).await,
        RouteKind::ChatbotEvent => handlers::chatbot::event(svc, route, req).await,
        RouteKind::TimCallback => handlers::tim::handle(svc, &route.appid, req).await,
        RouteKind::StagedMedia => handlers::media::serve(&svc.links, req).await,
    }
}
