//! The checks every desk-facing route shares: the route is open for the account (its desk
//! calls it), and the path carries the account's key.

use crate::app::accounts::Account;
use crate::config::{AppConfig, DeskConfig, Secret};
use crate::http::{Protocol, Refused, Request, Route, RouteKind};

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
        RouteKind::WechatCallback
        | RouteKind::StagedMedia
        | RouteKind::ComponentEvents
        | RouteKind::ComponentAuthorize
        | RouteKind::ComponentAuthorized
        | RouteKind::ComponentPush => true,
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
/// an unknown path) and the path carries its key (else 401, in the route's own protocol).
pub(crate) fn open_account<'a, P: Protocol>(
    app: Option<&'a AppConfig>,
    route: &Route,
) -> Result<&'a AppConfig, Refused<P>> {
    let Some(app) = app.filter(|a| opens(route.kind, a)) else {
        return Err(Refused::no_such_route(&route.appid));
    };
    if !key_matches(route.kind, app, route.key.as_ref()) {
        return Err(Refused::new(
            401,
            &route.appid,
            "missing or wrong gateway key in the URL",
        ));
    }
    Ok(app)
}

/// What every desk-facing route but Udesk's simulated domain checks first: `open_account`
/// for the path's appid, then that the request is a POST. Returns the account's part of
/// the config that the route needs (`pick`), which an open route always has.
pub(crate) fn desk_gate<'a, T: 'a, P: Protocol>(
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
    pick: impl FnOnce(&'a AppConfig) -> Option<&'a T>,
) -> Result<(&'a AppConfig, &'a T), Refused<P>> {
    let app = open_account(account.map(|a| &a.app), route)?;
    if req.method != http::Method::POST {
        return Err(Refused::new(405, &route.appid, "use POST"));
    }
    let part = pick(app).ok_or_else(|| Refused::no_such_route(&route.appid))?;
    Ok((app, part))
}
