//! `GET|POST /wechat/{appid}`: the URL an Official Account or Mini Program configures as
//! its message-push URL. The pipeline behind it is `source::wechat_push`.

use crate::app::Services;
use crate::config::AppConfig;
use crate::desk::Desk;
use crate::http::{Request, Response, Route};
use crate::source::wechat_push::Refusal;

/// What the head check proved: a known account, a fresh timestamp and WeChat's signature
/// over the query. Only `check` makes one.
pub(crate) struct Push<'a> {
    app: &'a AppConfig,
    desk: &'a dyn Desk,
}

pub(crate) fn check<'a>(
    svc: &'a Services,
    route: &Route,
    req: &Request,
) -> Result<Push<'a>, Refusal> {
    let app = crate::source::wechat_push::authenticate(svc, &route.appid, req)?;
    let desk = svc
        .desk(&app.appid)
        .ok_or_else(|| Refusal::no_such_route(&route.appid))?;
    Ok(Push {
        app,
        desk: desk.as_ref(),
    })
}

/// Serves a push that `check` has passed, with the account's desk.
pub(crate) async fn serve(
    svc: &Services,
    proof: Push<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    crate::source::wechat_push::handle(svc, proof.desk, proof.app, req).await
}
