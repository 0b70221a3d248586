//! Udesk's "simulated WeChat domain" (Udesk, "WeChat simulated middleware", https://www.udeskglobal.com/doc/thirdparty/simulate_weixin, sections 2–7): Udesk calls it as if it were
//! `api.weixin.qq.com`, without an appid and with a virtual access_token. Our domain for
//! an account is `/udesk/{appid}/{gateway_key}` (or `/udesk/{gateway_key}?appid=`);
//! requests are told apart by method and query, turned into WeChat API calls with the
//! shared access_token, and answered with WeChat's own JSON (or the media bytes) so that
//! Udesk judges success itself. Failures around the call are errcode JSON, never HTML.

use serde_json::{Value, json};
use tracing::{info, warn};

use super::gate::open_account;
use crate::app::Services;
use crate::app::accounts::Account;
use crate::config::AppConfig;
use crate::http::{Protocol, Refused, Request, Response, Route, RouteKind, multipart_part};
use crate::store::StagedMedia;
use crate::transport::{self, Agent};
use crate::wechat::api::Body;
use crate::wechat::error::ApiError;
use crate::wechat::kf::KfMessage;
use crate::wechat::media::{Fetched, MediaError};

/// An answer in WeChat's error shape: `errcode` non-zero and a message saying what to fix.
fn err_json(status: u16, errcode: i64, msg: &str) -> Response {
    Response::json_status(
        status,
        &json!({ "errcode": errcode, "errmsg": format!("wxdesk: {msg}") }),
    )
}

/// The simulated domain answers a refusal as WeChat's API would: a bad key is WeChat's
/// 41001 (no valid access_token), in its error shape.
pub(crate) struct SimulatedDomain;

impl Protocol for SimulatedDomain {
    const ROUTE: &'static str = "udesk";
    const EVENT: &'static str = "simulated domain request refused";
    fn answer(status: u16, why: &str) -> Response {
        let errcode = if status == 401 { 41001 } else { -1 };
        err_json(status, errcode, why)
    }
}

/// WeChat answered: its JSON goes back as is, errors included (HTTP 200, as WeChat does);
/// a failure to reach it is a 502 with errcode JSON.
fn api_answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Response::json(v.to_string()),
        Err(e @ ApiError::Wechat { .. }) => Response::json(e.to_json().to_string()),
        Err(e) => Response::json_status(502, &e.to_json()),
    }
}

/// With a simulated domain of the `?appid=` form, Udesk appends its paths after the query:
/// `/udesk/KEY?appid=wx1/template/get_all_private_template`. Such a path is read back out.
fn appid_from_query(kind: RouteKind, raw: &str) -> (RouteKind, &str) {
    if let Some(a) = raw.strip_suffix("/template/get_all_private_template") {
        (RouteKind::UdeskTemplateList, a)
    } else if let Some(a) = raw.strip_suffix("/message/template/send") {
        (RouteKind::UdeskTemplateSend, a)
    } else {
        (kind, raw)
    }
}

/// The appid a path without one names in `?appid=` (checked), for the route runner.
pub(crate) fn named_in_query(kind: RouteKind, req: &Request) -> Option<crate::config::Appid> {
    let (_, appid) = appid_from_query(kind, req.query("appid").unwrap_or(""));
    crate::config::Appid::parse(appid).ok()
}

/// Which of the account's paths a request calls (a path without an appid names it in
/// `?appid=`, with the path's rest).
fn called(route: &Route, req: &Request) -> RouteKind {
    if route.appid.is_empty() {
        appid_from_query(route.kind, req.query("appid").unwrap_or("")).0
    } else {
        route.kind
    }
}

/// What the head check proved: the account, whose simulated domain is open (a
/// `udesk_wechat` desk) and whose gateway key the path carries, and which of its paths the
/// request calls. Only `check` makes one.
pub(crate) struct Udesk<'a> {
    app: &'a AppConfig,
    kind: RouteKind,
}

/// The account named, once the simulated domain is open for it and the path carries its
/// gateway key.
pub(crate) fn check<'a>(
    _: &'a Services,
    account: Option<&'a Account>,
    route: &Route,
    req: &Request,
) -> Result<Udesk<'a>, Refused<SimulatedDomain>> {
    let app = open_account(account.map(|a| &a.app), route)?;
    Ok(Udesk {
        app,
        kind: called(route, req),
    })
}

/// Serves a request that `check` has passed.
pub(crate) async fn serve(svc: &Services, proof: Udesk<'_>, req: &Request) -> Response {
    let Udesk { app, kind } = proof;
    let method = &req.method;
    match kind {
        RouteKind::UdeskGateway if method == http::Method::POST => match req.query("type") {
            Some(t) => upload(svc, app, req, t).await,
            None => send(svc, app, req).await,
        },
        RouteKind::UdeskGateway if method == http::Method::GET => {
            if let Some(media_id) = req.query("media_id") {
                // Udesk's access_token is virtual: it is never sent on.
                get_media(svc, app, media_id).await
            } else if let Some(openid) = req.query("openid") {
                user_info(svc, app, openid, req.query("lang").unwrap_or("zh_CN")).await
            } else {
                err_json(400, 40035, "a GET needs media_id=… or openid=…")
            }
        }
        RouteKind::UdeskTemplateList if method == http::Method::GET => api_answer(
            svc.wechat
                .call(
                    app,
                    http::Method::GET,
                    "/cgi-bin/template/get_all_private_template",
                    &[],
                    Body::None,
                )
                .await,
        ),
        RouteKind::UdeskTemplateSend if method == http::Method::POST => {
            template_send(svc, app, req).await
        }
        _ => err_json(405, 43001, &format!("{method} is not used on this path")),
    }
}

async fn send(svc: &Services, app: &AppConfig, req: &Request) -> Response {
    let msg = match KfMessage::parse(&req.body, app.kind) {
        Ok(m) => m,
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "simulated domain: message not convertible");
            return err_json(400, 40035, &e.to_string());
        }
    };
    let result = transport::deliver(svc, app, &msg, &Agent::default()).await;
    match result {
        Ok(v) => {
            info!(appid = %app.appid, msgtype = %msg.msgtype, "agent message sent");
            Response::json(v.to_string())
        }
        Err(e) => {
            warn!(appid = %app.appid, msgtype = %msg.msgtype, error = %e, "agent message not sent");
            Response::json_status(if e.answered() { 200 } else { 502 }, &e.to_json())
        }
    }
}

async fn upload(svc: &Services, app: &AppConfig, req: &Request, media_type: &str) -> Response {
    let content_type = req.header(http::header::CONTENT_TYPE).unwrap_or("");
    let (filename, part_type, bytes) = match multipart_part(content_type, &req.body, "media") {
        Ok(p) => p,
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "simulated domain: upload without a media part");
            return err_json(400, 41005, &format!("media upload: {e}"));
        }
    };
    let file = StagedMedia {
        bytes,
        content_type: part_type,
        filename,
    };
    match svc.media().upload(app, media_type, file).await {
        Ok(v) => Response::json(v.to_string()),
        Err(e) => media_error(app, e),
    }
}

fn media_error(app: &AppConfig, e: MediaError) -> Response {
    warn!(appid = %app.appid, error = %e, "media request failed");
    let status = match &e {
        MediaError::Rejected { .. } => 400,
        MediaError::Api(ApiError::Wechat { .. }) => 200,
        _ => 502,
    };
    Response::json_status(status, &e.to_json())
}

async fn get_media(svc: &Services, app: &AppConfig, media_id: &str) -> Response {
    let max_inline = svc.config.media.max_inline_bytes;
    let fetched = match svc.media().fetch(app, media_id, max_inline).await {
        Ok(f) => f,
        Err(e) => return media_error(app, e),
    };
    match fetched {
        Fetched::Inline(m) => {
            let disposition = format!(
                "attachment; filename=\"{}\"",
                crate::store::safe_segment(&m.filename)
            );
            Response::bytes(m.content_type, m.bytes)
                .with_header(http::header::CONTENT_DISPOSITION, disposition)
        }
        Fetched::Large { key, size } => {
            let ttl = std::time::Duration::from_secs(svc.config.media.presign_secs);
            match svc.media_store.presign(&key, ttl).await {
                Ok(Some(url)) => {
                    info!(appid = %app.appid, media_id, size, "large media: redirecting to a presigned URL");
                    Response::redirect(url)
                }
                // A store without URLs (the local directory): the server sends the file.
                Ok(None) => match svc.media_store.open(&key).await {
                    Ok(Some(m)) => Response::media(m.content_type, m.body),
                    Ok(None) => err_json(502, -1, "staged media vanished; try again"),
                    Err(e) => media_error(app, e.into()),
                },
                Err(e) => media_error(app, e.into()),
            }
        }
    }
}

async fn user_info(svc: &Services, app: &AppConfig, openid: &str, lang: &str) -> Response {
    if openid.is_empty() {
        return err_json(400, 40003, "openid is empty");
    }
    api_answer(
        svc.wechat
            .call(
                app,
                http::Method::GET,
                "/cgi-bin/user/info",
                &[("openid", openid), ("lang", lang)],
                Body::None,
            )
            .await,
    )
}

async fn template_send(svc: &Services, app: &AppConfig, req: &Request) -> Response {
    let doc: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return err_json(400, 47001, "the template message must be a JSON object"),
    };
    for field in ["touser", "template_id"] {
        if doc
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return err_json(400, 40035, &format!("missing field {field}"));
        }
    }
    if !doc.get("data").is_some_and(Value::is_object) {
        return err_json(
            400,
            40035,
            "missing field data (an object of {key: {value}})",
        );
    }
    api_answer(
        svc.wechat
            .call(
                app,
                http::Method::POST,
                "/cgi-bin/message/template/send",
                &[],
                Body::Json(doc),
            )
            .await,
    )
}
