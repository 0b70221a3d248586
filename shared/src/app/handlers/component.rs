//! `POST /component/{component_appid}/events`: the third-party platform's authorization
//! events. The pipeline behind it is `source::component`.

use crate::app::Services;
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
