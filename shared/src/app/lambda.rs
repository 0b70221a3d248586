//! API Gateway (HTTP API payload v2 and REST) through lambda_http: one function's main.

use std::sync::Arc;

use lambda_http::{Body, RequestExt, service_fn};

use crate::app::Services;
use crate::app::live::Live;
use crate::app::routes::find as route;
use crate::http::{Request, Response, RouteKind};

pub(crate) fn to_request(req: &lambda_http::Request) -> Request {
    let query = req
        .query_string_parameters_ref()
        .map(|q| {
            q.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_else(|| {
            req.uri()
                .query()
                .map(Request::parse_query)
                .unwrap_or_default()
        });
    let body = match req.body() {
        Body::Empty => bytes::Bytes::new(),
        Body::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
        Body::Binary(b) => bytes::Bytes::copy_from_slice(b),
        _ => bytes::Bytes::new(),
    };
    Request {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query,
        headers: req.headers().clone(),
        body,
    }
}

/// API Gateway's response limit is 10 MB and Lambda's 6 MB, base64 included.
const MAX_LAMBDA_BODY: u64 = 4 * 1024 * 1024;

pub fn to_lambda_response(mut resp: Response) -> lambda_http::Response<Body> {
    // The aws store never answers with a file (large media is a presigned URL); a file
    // from any other store goes whole, within what API Gateway returns.
    if let Some(file) = resp.file.take() {
        match file.read_all(MAX_LAMBDA_BODY) {
            Ok(bytes) => resp.body = bytes,
            Err(e) => {
                tracing::warn!(error = %e, "staged media cannot go out through Lambda");
                resp = Response::text(502, "this media is too large to send here");
            }
        }
    }
    let text = resp.is_text();
    let body = if resp.body.is_empty() {
        Body::Empty
    } else if text {
        match String::from_utf8(resp.body.to_vec()) {
            Ok(s) => Body::Text(s),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    } else {
        // lambda_http base64-encodes binary bodies for API Gateway.
        Body::Binary(resp.body.to_vec())
    };
    let mut builder = lambda_http::Response::builder()
        .status(resp.status)
        .header("Content-Type", resp.content_type.as_ref());
    for (name, value) in &resp.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| lambda_http::Response::new(Body::Empty))
}

/// Serves one function's route: the appid comes from API Gateway's path parameters,
/// else from the path itself.
pub async fn handle(svc: &Arc<Services>, kind: RouteKind, req: lambda_http::Request) -> Response {
    let mut request = to_request(&req);
    let found = match route(&request.path) {
        Some(r) if r.kind == kind => Some(r),
        // The simulated-domain function serves every Udesk path it is given.
        Some(r) if kind == RouteKind::UdeskGateway && r.kind.is_udesk() => Some(r),
        // A custom domain's base path can hide the route's own prefix: fall back on
        // what API Gateway matched.
        _ => req.path_parameters_ref().and_then(|p| {
            let key = p.first("key").map(crate::config::Secret::new);
            p.first("appid")
                .map(|appid| crate::http::Route {
                    kind,
                    appid: appid.to_owned(),
                    platform: p.first("platform").unwrap_or("").to_owned(),
                    key: key.clone(),
                })
                .or_else(|| {
                    key.map(|k| crate::http::Route {
                        kind,
                        appid: String::new(),
                        platform: String::new(),
                        key: Some(k),
                    })
                })
        }),
    };
    match found {
        Some(r) => {
            let mut body = crate::app::routes::InMemory(std::mem::take(&mut request.body));
            crate::app::routes::serve(svc, &r, request, &mut body).await
        }
        None => {
            // Only the first segment: Udesk paths carry the gateway key further on.
            let prefix = request
                .path
                .split('/')
                .find(|s| !s.is_empty())
                .unwrap_or("");
            if let Some(suppressed) = crate::support::throttle::log_refusal("route", "none") {
                // What this function serves, from the route table (template.yaml's event).
                let serves = crate::app::routes::decl(kind)
                    .lambda
                    .as_ref()
                    .map(|l| format!("{} {}", l.method, l.path));
                tracing::warn!(
                    prefix_len = prefix.len(),
                    serves = serves.as_deref().unwrap_or(""),
                    suppressed,
                    "no route for this path"
                );
            }
            Response::no_such_route()
        }
    }
}

/// A function's init: telemetry, then the config and services, kept current.
async fn init() -> Result<Arc<Live>, lambda_http::Error> {
    crate::telemetry::init();
    match Live::from_env().await {
        Ok(live) => Ok(Arc::new(live)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            Err(e.into())
        }
    }
}

/// The whole main of a function: init once, then serve.
pub async fn run(kind: RouteKind) -> Result<(), lambda_http::Error> {
    let live = init().await?;
    // The first push pays DynamoDB's TLS handshake otherwise: open the connection now,
    // while the runtime fetches the event (a read of a key that never exists).
    let warm = live.current();
    tokio::spawn(async move {
        let _ = warm.inbox.get("warmup#connection", 0).await;
    });
    lambda_http::run(service_fn(move |req| {
        let live = live.clone();
        async move {
            let svc = live.fresh().await;
            Ok::<_, std::convert::Infallible>(to_lambda_response(handle(&svc, kind, req).await))
        }
    }))
    .await
}

/// The whole main of a function fed by events other than HTTP (a schedule, SQS):
/// telemetry, config and services once, then `handle` for each event's JSON.
pub(crate) async fn run_events<F, Fut>(handle: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<Services>, serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, lambda_http::Error>>,
{
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    let live = init().await?;
    let (handle, live) = (&handle, &live);
    lambda_http::lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handle(live.fresh().await, event.payload).await
        },
    ))
    .await
}
