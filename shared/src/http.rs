//! Transport-neutral requests and responses, the route table, and the adapter that lets the
//! same handlers serve API Gateway (lambda_http) and the local server.

use bytes::Bytes;

use crate::services::Services;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn parse_query(raw: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }
    pub fn xml(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "text/xml; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "application/json; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// Every route template.yaml declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `GET|POST /wechat/{appid}`
    WechatCallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub appid: String,
}

/// Matches a request path (leading API Gateway stage segments are tolerated).
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let i = segs.iter().position(|s| *s == "wechat")?;
    match &segs[i..] {
        ["wechat", appid] => Some(Route {
            kind: RouteKind::WechatCallback,
            appid: (*appid).to_owned(),
        }),
        _ => None,
    }
}

pub async fn dispatch(svc: &Services, route: &Route, req: &Request) -> Response {
    match route.kind {
        RouteKind::WechatCallback => {
            crate::source::wechat_push::handle(svc, &route.appid, req).await
        }
    }
}

pub mod lambda {
    //! API Gateway (HTTP API payload v2 and REST) through lambda_http.

    use std::sync::Arc;

    use lambda_http::{Body, RequestExt, service_fn};

    use super::{Request, Response, RouteKind, dispatch, route};
    use crate::services::Services;

    pub fn to_request(req: &lambda_http::Request) -> Request {
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
            body,
        }
    }

    pub fn to_lambda_response(resp: Response) -> lambda_http::Response<Body> {
        let body = match String::from_utf8(resp.body.to_vec()) {
            Ok(s) if s.is_empty() => Body::Empty,
            Ok(s) => Body::Text(s),
            Err(e) => Body::Binary(e.into_bytes()),
        };
        lambda_http::Response::builder()
            .status(resp.status)
            .header("Content-Type", resp.content_type)
            .body(body)
            .unwrap_or_else(|_| lambda_http::Response::new(Body::Empty))
    }

    /// Serves one function's route: the appid comes from API Gateway's path parameters,
    /// else from the path itself.
    pub async fn handle(svc: &Services, kind: RouteKind, req: lambda_http::Request) -> Response {
        let request = to_request(&req);
        let from_params = req
            .path_parameters_ref()
            .and_then(|p| p.first("appid"))
            .map(str::to_owned);
        let found = match (from_params, route(&request.path)) {
            (Some(appid), _) => Some(super::Route { kind, appid }),
            (None, Some(r)) if r.kind == kind => Some(r),
            _ => None,
        };
        match found {
            Some(r) => dispatch(svc, &r, &request).await,
            None => {
                tracing::warn!(path = %request.path, "no route for this path");
                Response::text(404, "no such route")
            }
        }
    }

    /// The whole main of a function: telemetry, config and services once, then serve.
    pub async fn run(kind: RouteKind) -> Result<(), lambda_http::Error> {
        crate::telemetry::init();
        let svc = match Services::from_env().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return Err(e.into());
            }
        };
        lambda_http::run(service_fn(move |req| {
            let svc = svc.clone();
            async move {
                Ok::<_, std::convert::Infallible>(to_lambda_response(handle(&svc, kind, req).await))
            }
        }))
        .await
    }
}
