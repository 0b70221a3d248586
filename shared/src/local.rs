//! The local server: every route of template.yaml on one port, on the same handlers the
//! Lambda functions use. For development and small self-hosted installs.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::http::{Request, Response, dispatch, route};
use crate::services::Services;

async fn serve_one(svc: &Arc<Services>, req: hyper::Request<hyper::body::Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(r) = route(&path) else {
        return Response::text(404, "no such route");
    };
    // Read at most one byte more than allowed, so an oversize body is refused without
    // being buffered whole.
    let limit = r.kind.max_body_bytes(&svc.config);
    let body = match Limited::new(body, limit + 1).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            tracing::warn!(appid = %r.appid, limit, "request body over the limit or unreadable");
            return Response::text(413, "body too large");
        }
    };
    let query = parts
        .uri
        .query()
        .map(Request::parse_query)
        .unwrap_or_default();
    dispatch(
        svc,
        &r,
        &Request {
            method: parts.method,
            path,
            query,
            headers: parts.headers,
            body,
        },
    )
    .await
}

fn to_hyper(resp: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(resp.body));
    *out.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&resp.content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    for (name, value) in resp.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.append(name, v);
        }
    }
    out
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    svc: Arc<Services>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let svc = svc.clone();
                async move { Ok::<_, Infallible>(to_hyper(serve_one(&svc, req).await)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
