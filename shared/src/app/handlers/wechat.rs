//! `GET|POST /wechat/{appid}`: the URL an Official Account or Mini Program configures as
//! its message-push URL. The pipeline behind it is `source::wechat_push`.

use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::AppConfig;
use crate::desk::Desk;
use crate::http::{Request, Response, Route, RouteKind};
use crate::source::wechat_push::Refusal;

/// What the head check proved: a known account, a fresh timestamp and WeChat's signature
/// over the query. Only `check` makes one.
pub(crate) struct Push<'a> {
    app: &'a AppConfig,
    desk: &'a dyn Desk,
}

/// `/wechat/{appid}` serves an account with its own token and key; a shop's account served
/// through the platform is reached only at `/wechat/component/{platform}/{appid}`, the URL
/// WeChat has for it, and only for the platform that serves it.
pub(crate) fn check<'a>(
    svc: &'a Services,
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Push<'a>, Refusal> {
    let platform = account.and_then(|a| a.app.platform.as_ref());
    let reached = match route.kind {
        RouteKind::ComponentPush => platform.is_some_and(|c| c.appid.as_str() == route.platform),
        _ => platform.is_none(),
    };
    let account = account
        .filter(|_| reached)
        .ok_or_else(|| Refusal::new(404, &route.appid, "unknown appid"))?;
    let app = crate::source::wechat_push::authenticate(svc, &account.app, req)?;
    Ok(Push {
        app,
        desk: account.desk.as_ref(),
    })
}

/// Serves a push that `check` has passed, with the account's desk.
pub(crate) async fn serve(
    svc: &Services,
    proof: Push<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    if let Some(c) = super::release::applies(proof.app) {
        return super::release::serve(svc, c, proof.app, req).await;
    }
    crate::source::wechat_push::handle(svc, proof.desk, proof.app, req).await
}
