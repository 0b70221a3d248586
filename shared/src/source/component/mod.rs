//! `POST /component/{component_appid}/events`: the third-party platform's authorization-
//! event URL ("授权事件接收 URL"). WeChat signs and encrypts every event with the
//! platform's token and key, the receive-id being the platform's appid; the answer is the
//! string `success` ("授权变更通知推送",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/authorize_event.html).
//! The ticket is stored (the newest wins) for the component_access_token; an authorization
//! is taken (`authorize::take`), a withdrawal recorded.

pub(crate) mod authorize;

use tracing::{info, warn};

use crate::config::ComponentConfig;
use crate::context::Context;
use crate::http::{Protocol, Refused, Request, Response};
use crate::store::{Standing, Ticket};
use crate::wechat::component::AuthEvent;
use crate::wechat::message::Format;
use crate::wechat::reply::{SUCCESS, encrypt_field};
use crate::wechat::signature::{matches, msg_signature};

/// WeChat reads a refused event's status and a plain-text reason, as for pushes.
pub(crate) struct ComponentEvents;

impl Protocol for ComponentEvents {
    const ROUTE: &'static str = "component";
    const EVENT: &'static str = "authorization event refused";
    const UNREADABLE: &'static str = "cannot decrypt";
    fn answer(status: u16, why: &str) -> Response {
        Response::text(status, why)
    }
}

pub(crate) type Refusal = Refused<ComponentEvents>;

/// The checks on the query alone: this install is the platform the path names, the
/// timestamp is fresh and the signature WeChat's. Events always come encrypted.
pub(crate) fn authenticate<'a>(
    ctx: &'a Context,
    component_appid: &str,
    req: &Request,
) -> Result<&'a ComponentConfig, Refusal> {
    let refuse = |status, why| Refusal::new(status, component_appid, why);
    let Some(c) = ctx
        .config
        .component
        .as_ref()
        .filter(|c| c.appid.as_str() == component_appid)
    else {
        return Err(Refusal::no_such_route(component_appid));
    };
    if req.method != http::Method::POST {
        return Err(refuse(405, "method not allowed"));
    }
    super::signed_query(ctx, &c.token, req).map_err(|(status, why)| refuse(status, why))?;
    // The plain signature does not cover the body: an unencrypted event is never WeChat's.
    if req.query("encrypt_type") != Some("aes") {
        return Err(refuse(403, "authorization events come encrypted"));
    }
    Ok(c)
}

/// Opens an event that `authenticate` has passed and acts on it.
pub(crate) async fn handle(
    ctx: &Context,
    c: &ComponentConfig,
    req: &Request,
) -> Result<Response, Refusal> {
    let event = open(c, req)?;
    let component = c.appid.as_str();
    match &event {
        AuthEvent::Ticket { ticket, created_at } => {
            let ticket = Ticket {
                ticket: ticket.clone(),
                created_at: *created_at,
            };
            // Not stored: WeChat retries, and the next push comes in 10 minutes.
            let stored = ctx
                .wechat
                .tokens
                .put_ticket(component, &ticket)
                .await
                .map_err(|e| Refusal::new(503, component, format!("store: {e}")))?;
            info!(
                component,
                created_at, stored, "component_verify_ticket received"
            );
        }
        AuthEvent::Authorized(g) | AuthEvent::UpdateAuthorized(g) => {
            // The redirect may have taken this code already: the exchange is repeated,
            // and a failure here is logged, not retried by WeChat (the redirect decides).
            if let Err(why) = authorize::take(ctx, c, &g.code).await {
                warn!(
                    component,
                    event = event.name(),
                    authorizer = %g.authorizer.as_str(),
                    why,
                    "could not take the authorization from its event"
                );
            }
        }
        AuthEvent::Unauthorized { authorizer } => {
            let at_ms = event_ms(req, ctx);
            let recorded = ctx
                .registry
                .set_standing(authorizer.as_str(), Standing::Withdrawn, at_ms)
                .await
                .map_err(|e| Refusal::new(503, component, format!("store: {e}")))?;
            ctx.registry_changed();
            if let Err(e) = ctx.wechat.tokens.forget(authorizer.as_str()).await {
                warn!(component, authorizer = %authorizer.as_str(), error = %e, "could not expire the withdrawn account's token");
            }
            warn!(
                component,
                authorizer = %authorizer.as_str(),
                recorded,
                "a shop withdrew its authorization: its account is closed"
            );
        }
        AuthEvent::Other(info_type) => {
            info!(component, info_type, "authorization event not acted on");
        }
    }
    Ok(Response::text(200, SUCCESS))
}

/// When an event happened, in ms: its query's signed timestamp (its `CreateTime` is the
/// same second), else now.
fn event_ms(req: &Request, ctx: &Context) -> i64 {
    req.query("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .map_or_else(|| ctx.clock.unix_ms(), |t| t * 1000)
}

/// The event in the body: its msg_signature checked, decrypted for the platform's appid,
/// parsed. One answer for every way it cannot be opened.
fn open(c: &ComponentConfig, req: &Request) -> Result<AuthEvent, Refusal> {
    let component = c.appid.as_str();
    let q = |k| req.query(k).unwrap_or("");
    let body = std::str::from_utf8(&req.body)
        .map_err(|_| Refusal::unreadable(component, "body is not UTF-8"))?;
    let encrypt = encrypt_field(body, Format::Xml)
        .ok_or_else(|| Refusal::unreadable(component, "event without an Encrypt field"))?;
    let sig = req
        .query("msg_signature")
        .ok_or_else(|| Refusal::new(401, component, "event without msg_signature"))?;
    if !matches(
        &msg_signature(c.token.expose(), q("timestamp"), q("nonce"), &encrypt),
        sig,
    ) {
        return Err(Refusal::new(401, component, "msg_signature mismatch"));
    }
    let plain = c
        .encoding_aes_key
        .decrypt(&encrypt, component)
        .map_err(|e| Refusal::unreadable(component, format!("cannot decrypt: {e}")))?;
    AuthEvent::parse(&plain, &c.appid)
        .map_err(|e| Refusal::unreadable(component, format!("unreadable event: {e}")))
}
