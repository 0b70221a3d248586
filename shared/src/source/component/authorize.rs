//! A shop's authorization of the platform. WeChat opens its authorization page only from
//! a link on a page of the platform's configured entry domain (授权发起页域名), never
//! pasted or reached by a redirect, and sends the administrator back only to a URI on
//! that same domain ("授权流程技术说明",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/Authorization_Process_Technical_Description.html;
//! "授权入口页所在域名：空" in its troubleshooting page, .../2.0/troubleshooting/authorization_troubleshooting.html):
//! `GET /component/{appid}/authorize` serves that page, its link carrying a fresh
//! pre-authorization code; WeChat sends the administrator back to
//! `GET /component/{appid}/authorized?auth_code=…`, whose code `api_query_auth` exchanges
//! for the shop's account, refresh token and permission sets, stored sealed in the
//! registry. The `authorized` event carries the same code and is taken the same way.

use tracing::{info, warn};

use super::Refusal;
use crate::config::ComponentConfig;
use crate::context::Context;
use crate::http::Response;
use crate::store::{AccountSettings, Authorizer, Standing, authorizer_context};
use crate::support::secret::new_gateway_key;
use crate::support::url::with_query;
use crate::wechat::platform::Authorization;

/// WeChat's authorization page.
const LOGIN_PAGE: &str = "https://mp.weixin.qq.com/cgi-bin/componentloginpage";
/// The longest authorization code taken from a query (WeChat's are under 100 bytes).
const MAX_CODE: usize = 512;
/// Pages (each one `api_create_preauthcode` call, against the platform's daily quota)
/// served per process and minute: anyone can open the page, so a loop opening it must
/// not spend the platform's quota.
const PAGES_PER_MINUTE: u32 = 60;

/// A fixed-window count of pages served, per process.
struct Window {
    started_ms: i64,
    served: u32,
}

static PAGES: std::sync::Mutex<Window> = std::sync::Mutex::new(Window {
    started_ms: 0,
    served: 0,
});
/// The redirect's code exchanges (each one `api_query_auth` call), counted the same way:
/// anyone can call the redirect with a made-up code.
static EXCHANGES: std::sync::Mutex<Window> = std::sync::Mutex::new(Window {
    started_ms: 0,
    served: 0,
});

/// Whether `window` admits one more call at `now_ms`.
fn admitted(window: &std::sync::Mutex<Window>, now_ms: i64) -> bool {
    window
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(now_ms, PAGES_PER_MINUTE)
}

impl Window {
    /// Whether one more page may be served at `now_ms`.
    fn admit(&mut self, now_ms: i64, per_minute: u32) -> bool {
        if now_ms - self.started_ms >= 60_000 {
            self.started_ms = now_ms;
            self.served = 0;
        }
        self.served += 1;
        self.served <= per_minute
    }
}

/// The page with the link to WeChat's authorization page, for `c`'s entry domain.
pub(crate) async fn page(ctx: &Context, c: &ComponentConfig) -> Result<Response, Refusal> {
    let component = c.appid.as_str();
    let base = c
        .public_base_url
        .as_deref()
        .ok_or_else(|| Refusal::no_such_route(component))?;
    if !admitted(&PAGES, ctx.clock.unix_ms()) {
        return Err(Refusal::new(
            429,
            component,
            "too many authorization pages this minute",
        ));
    }
    let pre = ctx
        .platform
        .pre_auth_code(c)
        .await
        .map_err(|e| Refusal::new(502, component, format!("no pre_auth_code: {e}")))?;
    let back = format!("{base}/component/{component}/authorized");
    // auth_type 3: Official Accounts and Mini Programs alike.
    let link = with_query(
        LOGIN_PAGE,
        &[
            ("component_appid", component),
            ("pre_auth_code", &pre.code),
            ("redirect_uri", &back),
            ("auth_type", "3"),
        ],
    );
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize</title></head>\
         <body><p><a href=\"{}\">Authorize this platform to serve your Official Account or Mini Program</a></p></body></html>",
        html_attr(&link)
    );
    // A code per visit, so no cache may keep one; WeChat checks the Referer's domain.
    Ok(
        Response::bytes("text/html; charset=utf-8".into(), html.into())
            .with_header(http::header::CACHE_CONTROL, "no-store".into()),
    )
}

/// WeChat's redirect after the administrator granted the authorization.
pub(crate) async fn redirected(
    ctx: &Context,
    c: &ComponentConfig,
    auth_code: Option<&str>,
) -> Result<Response, Refusal> {
    let component = c.appid.as_str();
    let code = auth_code
        .filter(|code| !code.is_empty() && code.len() <= MAX_CODE)
        .ok_or_else(|| Refusal::new(400, component, "missing or oversized auth_code"))?;
    if !admitted(&EXCHANGES, ctx.clock.unix_ms()) {
        return Err(Refusal::new(
            429,
            component,
            "too many authorization codes this minute",
        ));
    }
    let authorizer = take(ctx, c, code)
        .await
        .map_err(|why| Refusal::new(502, component, why))?;
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorized</title></head>\
         <body><p>Authorized: {}. You can close this page.</p></body></html>",
        authorizer.as_str()
    );
    Ok(
        Response::bytes("text/html; charset=utf-8".into(), html.into())
            .with_header(http::header::CACHE_CONTROL, "no-store".into()),
    )
}

/// Exchanges `code` and stores the authorizer; the authorizer's appid, or why not (for
/// the log and the caller: never the code or a token).
pub(crate) async fn take(
    ctx: &Context,
    c: &ComponentConfig,
    code: &str,
) -> Result<crate::support::ids::Appid, String> {
    let component = c.appid.as_str();
    let granted = ctx
        .platform
        .query_auth(c, code)
        .await
        .map_err(|e| format!("api_query_auth: {e}"))?;
    store(ctx, c, &granted).await?;
    info!(
        component,
        authorizer = %granted.authorizer.as_str(),
        permissions = ?granted.permissions,
        "a shop authorized the platform"
    );
    Ok(granted.authorizer)
}

async fn store(ctx: &Context, c: &ComponentConfig, granted: &Authorization) -> Result<(), String> {
    let appid = granted.authorizer.as_str();
    // One appid, one source of credentials: a configured account stays the config's.
    if ctx.config.app(appid).is_some() {
        return Err(format!(
            "{appid} is an [[apps]] account of the config: remove it there before the platform serves it"
        ));
    }
    let sealer = ctx.registry.sealer().await.map_err(|e| e.to_string())?;
    // Which kind of account it is (a Mini Program takes no passive reply) and its name;
    // unknown, an Official Account is assumed and `accounts add` can say otherwise.
    let (kind, name) = match ctx.platform.authorizer_info(c, appid).await {
        Ok(info) => (Some(info.kind), info.name),
        Err(e) => {
            warn!(authorizer = appid, error = %e, "api_get_authorizer_info failed: served as an Official Account until `accounts add` gives its kind");
            (None, None)
        }
    };
    let record = Authorizer {
        appid: appid.to_owned(),
        component: c.appid.as_str().to_owned(),
        sealed_refresh_token: sealer.seal(&granted.refresh_token, &authorizer_context(appid)),
        permissions: granted.permissions.clone(),
        standing: Standing::Authorized,
        changed_at_ms: ctx.clock.unix_ms(),
        // Its desk's routes get a key of its own; a new authorization keeps the stored
        // one (rule `authorizer_put`), so a shop authorizing again breaks no desk's URL.
        sealed_settings: Some(
            AccountSettings {
                gateway_key: Some(new_gateway_key().expose().to_owned()),
                kind,
                name,
                ..Default::default()
            }
            .seal(&sealer, appid),
        ),
    };
    let stored = ctx
        .registry
        .put_authorizer(&record)
        .await
        .map_err(|e| e.to_string())?;
    ctx.registry_changed();
    if !stored {
        warn!(
            authorizer = appid,
            "a later change of this authorization is stored; kept it"
        );
    }
    ctx.wechat
        .tokens
        .forget(appid)
        .await
        .map_err(|e| e.to_string())
}

/// `s` for a double-quoted HTML attribute.
fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_per_minute() {
        let mut w = Window {
            started_ms: 0,
            served: 0,
        };
        assert!((0..3).all(|i| w.admit(60_000 + i, 3)));
        assert!(!w.admit(60_010, 3), "the fourth in the minute");
        assert!(w.admit(120_000, 3), "a new minute");
    }

    #[test]
    fn links_are_escaped_for_their_attribute() {
        assert_eq!(html_attr("a?b=1&c=\"<x>"), "a?b=1&amp;c=&quot;&lt;x&gt;");
    }
}
