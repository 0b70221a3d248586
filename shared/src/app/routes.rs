//! The route table: for each route, what it checks from the request's head before its
//! body is read, and the handler that serves it.

use std::sync::Arc;

use crate::app::Services;
use crate::app::handlers;
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

/// What every desk-facing route checks first: a known account, the path's gateway key,
/// then that the request is a POST. Returns the account; a refusal is (status, reason),
/// for the route to answer in its own protocol's shape.
pub fn desk_gate<'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
) -> Result<&'a crate::config::AppConfig, (u16, &'static str)> {
    let app = svc.config.app(&route.appid).ok_or((404, "unknown appid"))?;
    if !app.gateway_key_matches(route.key.as_ref()) {
        return Err((401, "missing or wrong gateway key in the URL"));
    }
    if req.method != http::Method::POST {
        return Err((405, "use POST"));
    }
    Ok(app)
}

/// `desk_gate`, then the account's part of the config that the route needs (`pick`), else
/// 404 with `missing`.
pub fn desk_gate_for<'a, T: 'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
    pick: impl FnOnce(&'a crate::config::AppConfig) -> Option<&'a T>,
    missing: &'static str,
) -> Result<(&'a crate::config::AppConfig, &'a T), (u16, &'static str)> {
    let app = desk_gate(svc, route, req)?;
    let part = pick(app).ok_or((404, missing))?;
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
        tracing::warn!(appid = %route.appid, limit, "request body over the route's limit");
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
