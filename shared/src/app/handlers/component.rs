//! The third-party platform's routes: `POST /component/{component_appid}/events` (its
//! authorization events), and the authorization page and WeChat's redirect back,
//! `GET /component/{component_appid}/authorize` and `/authorized`. The pipeline behind
//! them is `source::component`.

use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::ComponentConfig;
use crate::http::{Request, Response, Route};
use crate::source::component::Refusal;

/// What the head check proved: this install is the platform named, and the query carries
/// WeChat's fresh signature. Only `check` makes one.
pub(crate) struct Event<'a> {
    component: &'a ComponentConfig,
}

pub(crate) fn check<'a>(
    svc: &'a Services,
    _: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Event<'a>, Refusal> {
    let component = crate::source::component::authenticate(svc, &route.appid, req)?;
    Ok(Event { component })
}

pub(crate) async fn serve(
    svc: &Services,
    proof: Event<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    crate::source::component::handle(svc, proof.component, req).await
}

/// What the pages' head check proved: this install is the platform named, it has an entry
/// domain, and the request is a GET. Anyone may open the page: a shop's administrator
/// does, from a link the platform gives them.
pub(crate) struct Page<'a> {
    component: &'a ComponentConfig,
}

pub(crate) fn check_page<'a>(
    svc: &'a Services,
    _: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Page<'a>, Refusal> {
    let Some(component) = svc
        .config
        .component
        .as_ref()
        .filter(|c| c.appid.as_str() == route.appid && c.public_base_url.is_some())
    else {
        return Err(Refusal::no_such_route(&route.appid));
    };
    if req.method != http::Method::GET {
        return Err(Refusal::new(405, &route.appid, "method not allowed"));
    }
    Ok(Page { component })
}

pub(crate) async fn page(
    svc: &Services,
    proof: Page<'_>,
    _: &Request,
) -> Result<Response, Refusal> {
    crate::source::component::authorize::page(svc, proof.component).await
}

pub(crate) async fn authorized(
    svc: &Services,
    proof: Page<'_>,
    req: &Request,
) -> Result<Response, Refusal> {
    crate::source::component::authorize::redirected(svc, proof.component, req.query("auth_code"))
        .await
}
