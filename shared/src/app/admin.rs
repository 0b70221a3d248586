//! Operations beside a running local server. redb lets one process open the embedded
//! store, so `doctor` and `outbox` ask the server that holds it, through `/admin/...` on
//! the same port: only from a loopback address and with `[server] admin_key` as a bearer
//! token (anything else gets 404, as if the route did not exist).
//!
//! - `GET  /admin/doctor[?app=A]` → `{"ok": bool, "lines": [...]}`
//! - `GET  /admin/outbox[?state=pending|dead|in_flight|all][&app=A]` → `{"lines": [...]}`
//! - `POST /admin/outbox/replay?key=K` or `?dead=1[&app=A]` → `{"queued": n}`
//! - `GET  /admin/accounts` → `{"lines": [...]}`: the registry's accounts
//! - `POST /admin/accounts?file=F` (the account file, URL-encoded, at most 16 KiB: admin
//!   routes take no body), `POST /admin/accounts/{disable|enable}?app=A`,
//!   `POST /admin/accounts/rotate-key?app=A&base=B`, `GET /admin/accounts/urls?app=A&base=B`
//!   → `{"lines": [...]}`
//!   (`app::registry_admin`)
//! - `GET  /admin/metrics` → the counters and latencies the Lambda functions write as
//!   EMF, in Prometheus' text format, for a scraper on the same host

use crate::support::throttle::log_refusal;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::Services;
use crate::app::outbox_admin;
use crate::config::Secret;
use crate::http::{Request, Response};
use crate::support::outbound::{MAX_ANSWER_BYTES, http_client, send};

/// Whether `path` is an admin route (served by `serve`, never by the route table).
#[cfg(feature = "local")]
pub(crate) fn is_admin(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

fn not_found() -> Response {
    Response::text(404, "no such route")
}

/// Serves an admin request from `peer`.
pub async fn serve(svc: &Services, peer: IpAddr, req: &Request) -> Response {
    let Some(key) = &svc.config.server.admin_key else {
        return not_found();
    };
    let presented = req
        .header(http::header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer "));
    let local = peer.is_loopback() || is_mapped_loopback(peer);
    if !local || !presented.is_some_and(|p| key.matches(p)) {
        // The path's length only: a caller chooses the path (60 KB of it, once).
        if let Some(suppressed) = log_refusal("admin", "refused") {
            tracing::warn!(%peer, path_len = req.path.len(), suppressed, "admin request refused");
        }
        return not_found();
    }
    let app = req.query("app");
    let answer = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/admin/metrics") => {
            let mut r = Response::text(200, crate::telemetry::local::prometheus());
            r.content_type = "text/plain; version=0.0.4".into();
            return r;
        }
        ("GET", "/admin/doctor") => doctor(svc, app, req.query("checks")).await,
        ("GET", "/admin/outbox") => {
            let Some(shelves) = outbox_admin::shelves(req.query("state").unwrap_or("pending"))
            else {
                return Response::text(400, "state is one of pending, dead, in_flight, all");
            };
            match outbox_admin::list(svc, app, shelves).await {
                Ok(entries) => {
                    let now = svc.clock.unix_ms();
                    json!({ "lines": entries.iter().map(|e| outbox_admin::describe(e, now)).collect::<Vec<_>>() })
                }
                Err(e) => return Response::text(503, e.to_string()),
            }
        }
        ("POST", "/admin/outbox/replay") => {
            let queued = match (req.query("key"), req.query("dead")) {
                (Some(k), _) => outbox_admin::replay(svc, k).await.map(usize::from),
                (None, Some(_)) => outbox_admin::replay_dead(svc, app).await,
                (None, None) => return Response::text(400, "give key=... or dead=1"),
            };
            match queued {
                Ok(n) => json!({ "queued": n }),
                Err(e) => return Response::text(503, e.to_string()),
            }
        }
        (method, path) if path.starts_with("/admin/accounts") => {
            match accounts(svc, method, path, req).await {
                Ok(lines) => json!({ "lines": lines }),
                Err(e) => return Response::text(400, e),
            }
        }
        _ => return not_found(),
    };
    Response::json(answer.to_string())
}

/// The largest account file `POST /admin/accounts` takes.
const MAX_ACCOUNT_FILE: usize = 16 * 1024;

/// `/admin/accounts...`: `app::registry_admin`'s operations.
async fn accounts(
    svc: &Services,
    method: &str,
    path: &str,
    req: &Request,
) -> Result<Vec<String>, String> {
    use crate::app::registry_admin as registry;
    use crate::store::Standing;
    let app = || req.query("app").ok_or("give app=...");
    match (method, path) {
        ("GET", "/admin/accounts") => registry::list(svc).await,
        ("POST", "/admin/accounts") => {
            let file = req.query("file").ok_or("give file=...")?;
            if file.len() > MAX_ACCOUNT_FILE {
                return Err("the account file is over 16 KiB".into());
            }
            registry::add(svc, file).await.map(|l| vec![l])
        }
        ("POST", "/admin/accounts/disable") => {
            registry::set_standing(svc, app()?, Standing::Disabled)
                .await
                .map(|l| vec![l])
        }
        ("POST", "/admin/accounts/enable") => {
            registry::set_standing(svc, app()?, Standing::Authorized)
                .await
                .map(|l| vec![l])
        }
        ("GET", "/admin/accounts/urls") => {
            let base = req.query("base").unwrap_or("http://127.0.0.1:8080");
            registry::urls(svc, app()?, base).await
        }
        ("POST", "/admin/accounts/rotate-key") => {
            let base = req.query("base").unwrap_or("http://127.0.0.1:8080");
            registry::rotate_key(svc, app()?, base).await
        }
        _ => Err("no such accounts operation".into()),
    }
}

/// `GET /admin/doctor[?app=A][&checks=access_token]`: the checks (only those that need
/// the store, with `checks=access_token`), the config version the server runs, and per
/// account its secret's fingerprint and access_token line, so that `doctor --config F`
/// can tell which of the file's accounts the server's answers still describe.
async fn doctor(svc: &Services, app: Option<&str>, checks: Option<&str>) -> Value {
    use crate::app::doctor;
    let mut lines = Vec::new();
    let mut accounts = serde_json::Map::new();
    for a in doctor::accounts(svc, app) {
        let token = doctor::access_token(svc, a).await;
        accounts.insert(
            a.appid.to_string(),
            json!({ "secret": doctor::secret_fingerprint(a), "access_token": token.to_string() }),
        );
        if checks == Some("access_token") {
            lines.push(token);
        } else {
            lines.extend([doctor::config(svc, a), token, doctor::desk(svc, a).await]);
        }
    }
    json!({
        "ok": !lines.is_empty() && lines.iter().all(|c| c.result.is_ok()),
        "lines": lines.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "version": svc.config.version,
        "accounts": accounts,
    })
}

/// Whether `base` (`http://host:port`) names this machine: the admin key goes nowhere
/// else (a local user listening on another port must not receive it).
pub(crate) fn is_loopback_base(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    match authority.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback() || is_mapped_loopback(addr.ip()),
        Err(_) => authority
            .strip_prefix("localhost:")
            .is_some_and(|p| p.parse::<u16>().is_ok()),
    }
}

/// `::ffff:127.0.0.1` and friends: loopback, spelt as IPv6.
pub(crate) fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// The CLI's side: asks the server at `base` (`http://127.0.0.1:8080`), which must be a
/// loopback address.
pub async fn call(
    base: &str,
    key: &Secret,
    method: http::Method,
    path_and_query: &str,
) -> Result<Value, String> {
    if !is_loopback_base(base) {
        return Err(format!(
            "{base} is not a loopback address (http://127.0.0.1:PORT or http://[::1]:PORT): the admin key is sent nowhere else"
        ));
    }
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let req = http_client().request(method, &url).header(
        http::header::AUTHORIZATION,
        format!("Bearer {}", key.expose()),
    );
    let answer = send(req, Duration::from_secs(60), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| format!("cannot reach the running server at {base}: {e}"))?;
    let text = String::from_utf8_lossy(&answer.bytes).into_owned();
    match answer.status {
        200 => serde_json::from_str(&text).map_err(|_| format!("unreadable answer: {text}")),
        404 => Err(format!(
            "{base} refused the admin request: is it the server on this config, with the same [server] admin_key, reached over loopback?"
        )),
        s => Err(format!("the server answered HTTP {s}: {text}")),
    }
}
