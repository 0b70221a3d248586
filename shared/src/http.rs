//! Transport-neutral requests and responses, the route table, and the adapter that lets the
//! same handlers serve API Gateway (lambda_http) and the local server.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::services::Services;

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

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
    pub content_type: Cow<'static, str>,
    /// Headers beyond Content-Type.
    pub headers: Vec<(http::header::HeaderName, String)>,
    pub body: Bytes,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed(content_type),
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }
    pub fn xml(body: impl Into<String>) -> Self {
        Self::new(200, "text/xml; charset=utf-8", body.into())
    }
    pub fn json(body: impl Into<String>) -> Self {
        Self::new(200, "application/json; charset=utf-8", body.into())
    }
    pub fn json_status(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status, "application/json; charset=utf-8", body.to_string())
    }
    pub fn bytes(content_type: String, body: Bytes) -> Self {
        Self {
            status: 200,
            content_type: Cow::Owned(content_type),
            headers: Vec::new(),
            body,
        }
    }
    pub fn redirect(location: String) -> Self {
        let mut r = Self::new(302, "text/plain; charset=utf-8", "");
        r.headers.push((http::header::LOCATION, location));
        r
    }
    pub fn with_header(mut self, name: http::header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
    /// Text-like bodies go to API Gateway as text, everything else base64-encoded.
    pub fn is_text(&self) -> bool {
        let ct = self.content_type.as_ref();
        ct.starts_with("text/")
            || ct.starts_with("application/json")
            || ct.starts_with("application/xml")
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
    /// `GET|POST /udesk/{appid}/{key}` (or `/udesk/{key}?appid=`): Udesk's simulated
    /// WeChat domain, told apart by method and query.
    UdeskGateway,
    /// `GET /udesk/{appid}/{key}/template/get_all_private_template`
    UdeskTemplateList,
    /// `POST /udesk/{appid}/{key}/message/template/send`
    UdeskTemplateSend,
    /// `POST /udesk-im/{appid}/{key}`: agent messages from Udesk's message interface.
    UdeskImPush,
    /// `GET /media/{key}?expires=&sig=`: staged media (embedded store, local server only).
    StagedMedia,
    /// `POST /tim/{appid}/{key}`: Tencent IM's third-party callback.
    TimCallback,
    /// `POST /chatbot/{appid}/{key}`: the Dialogue Platform's hand-off callback.
    ChatbotHandoff,
    /// `POST /chatbot/{appid}/{key}/event`: waiter events driven by a desk.
    ChatbotEvent,
}

/// The largest body of a Udesk media upload: a 10 MB video plus the multipart framing.
pub const MAX_UPLOAD_BODY: usize = 11 * 1024 * 1024;
/// The largest body of a desk-facing JSON or form request (an agent message, a template, a
/// callback): WeChat's own messages are far smaller.
pub const MAX_DESK_BODY: usize = 64 * 1024;

impl RouteKind {
    pub fn is_udesk(self) -> bool {
        matches!(
            self,
            RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend
        )
    }

    /// The largest request body the route takes; `upload` says whether the request is a
    /// Udesk media upload (`POST ...?type=`), the one kind of request with a large body.
    pub fn max_body_bytes(self, config: &crate::Config, upload: bool) -> usize {
        match self {
            RouteKind::WechatCallback => config.callback.max_body_bytes,
            RouteKind::UdeskGateway if upload => MAX_UPLOAD_BODY,
            RouteKind::UdeskGateway
            | RouteKind::UdeskTemplateList
            | RouteKind::UdeskTemplateSend
            | RouteKind::UdeskImPush
            | RouteKind::TimCallback
            | RouteKind::ChatbotHandoff
            | RouteKind::ChatbotEvent => MAX_DESK_BODY,
            RouteKind::StagedMedia => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    /// From the path; empty when the request names it in `?appid=` instead.
    pub appid: String,
    /// The secret path segment of routes that have one.
    pub key: Option<crate::config::Secret>,
}

impl Route {
    /// Whether the path carries the account's gateway key (compared in constant time). An
    /// account without one has its desk-facing routes closed.
    pub fn key_matches(&self, app: &crate::config::AppConfig) -> bool {
        match (&app.gateway_key, &self.key) {
            (Some(expected), Some(given)) => expected.matches(given.expose()),
            _ => false,
        }
    }
}

/// What every desk-facing route checks first: the path's gateway key, then that the
/// request is a POST. A refusal is (status, reason), for the route to answer in its own
/// protocol's shape.
pub fn desk_gate(
    route: &Route,
    app: &crate::config::AppConfig,
    req: &Request,
) -> Result<(), (u16, &'static str)> {
    if !route.key_matches(app) {
        return Err((401, "missing or wrong gateway key in the URL"));
    }
    if req.method != http::Method::POST {
        return Err((405, "use POST"));
    }
    Ok(())
}

/// Matches a request path (leading API Gateway stage segments are tolerated). An appid
/// segment that cannot be one (see `config::is_identifier`) matches nothing, so that no
/// oversized or odd value reaches a lookup or a log line.
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let i = segs.iter().position(|s| {
        matches!(
            *s,
            "wechat" | "udesk" | "udesk-im" | "media" | "tim" | "chatbot"
        )
    })?;
    let r = |kind, appid: &str, key: Option<&str>| {
        let appid_ok =
            appid.is_empty() || crate::config::is_identifier(appid, crate::config::MAX_APPID_LEN);
        appid_ok.then(|| Route {
            kind,
            appid: appid.to_owned(),
            key: key.map(crate::config::Secret::new),
        })
    };
    match &segs[i..] {
        ["wechat", appid] => r(RouteKind::WechatCallback, appid, None),
        ["udesk-im", appid, key] => r(RouteKind::UdeskImPush, appid, Some(key)),
        ["tim", appid, key] => r(RouteKind::TimCallback, appid, Some(key)),
        ["chatbot", appid, key] => r(RouteKind::ChatbotHandoff, appid, Some(key)),
        ["chatbot", appid, key, "event"] => r(RouteKind::ChatbotEvent, appid, Some(key)),
        ["media", _, ..] => r(RouteKind::StagedMedia, "", None),
        ["udesk", rest @ ..] => {
            let (base, kind) = match rest {
                [base @ .., "template", "get_all_private_template"] => {
                    (base, RouteKind::UdeskTemplateList)
                }
                [base @ .., "message", "template", "send"] => (base, RouteKind::UdeskTemplateSend),
                base => (base, RouteKind::UdeskGateway),
            };
            match base {
                [appid, key] => r(kind, appid, Some(key)),
                [key] => r(kind, "", Some(key)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether a request is a Udesk media upload, from its head alone.
pub fn is_upload(kind: RouteKind, method: &http::Method, query: &[(String, String)]) -> bool {
    kind == RouteKind::UdeskGateway
        && method == http::Method::POST
        && query.iter().any(|(k, _)| k == "type")
}

/// Everything a route checks from the request's head alone (path key, signature, time
/// window, account and method), before its body is read: a refusal here is the whole
/// answer, and nothing else happens.
pub async fn authenticate(svc: &Services, route: &Route, req: &Request) -> Result<(), Response> {
    match route.kind {
        RouteKind::WechatCallback => {
            crate::source::wechat_push::authenticate(svc, &route.appid, req).map(|_| ())
        }
        RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend => {
            crate::desk::udesk_wechat::gateway::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::UdeskImPush => {
            crate::desk::udesk_im::push::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::TimCallback => {
            crate::desk::tencent_im::callback::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::ChatbotHandoff | RouteKind::ChatbotEvent => {
            crate::source::chatbot::authenticate(svc, route, req).map(|_| ())
        }
        RouteKind::StagedMedia => {
            crate::wechat::media::authenticate_link(&svc.links, req, svc.clock.unix_secs())
        }
    }
}

/// Authenticates, checks the body against the route's limit, and serves.
pub async fn dispatch(svc: &Arc<Services>, route: &Route, req: &Request) -> Response {
    if let Err(refused) = authenticate(svc, route, req).await {
        return refused;
    }
    let limit = route
        .kind
        .max_body_bytes(&svc.config, is_upload(route.kind, &req.method, &req.query));
    if req.body.len() > limit {
        tracing::warn!(appid = %route.appid, limit, "request body over the route's limit");
        return Response::text(413, "body too large");
    }
    serve_authenticated(svc, route, req).await
}

/// Serves a request that `authenticate` has passed and whose body is within its limit.
pub(crate) async fn serve_authenticated(
    svc: &Arc<Services>,
    route: &Route,
    req: &Request,
) -> Response {
    match route.kind {
        RouteKind::WechatCallback => {
            crate::source::wechat_push::handle(svc, &route.appid, req).await
        }
        RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend => {
            crate::desk::udesk_wechat::gateway::handle(svc, route, req).await
        }
        RouteKind::UdeskImPush => crate::desk::udesk_im::push::handle(svc, &route.appid, req).await,
        RouteKind::ChatbotHandoff => crate::source::chatbot::handoff(svc, &route.appid, req).await,
        RouteKind::ChatbotEvent => crate::source::chatbot::event(svc, route, req).await,
        RouteKind::TimCallback => {
            crate::desk::tencent_im::callback::handle(svc, &route.appid, req).await
        }
        RouteKind::StagedMedia => crate::wechat::media::serve_signed(&svc.links, req).await,
    }
}

/// The one file part named `field` of a multipart/form-data body: (file name, content
/// type, bytes).
pub fn multipart_part(
    content_type: &str,
    body: &Bytes,
    field: &str,
) -> Result<(String, String, Bytes), String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
        .filter(|b| !b.is_empty())
        .ok_or("the request is not multipart/form-data with a boundary")?;
    let delim = format!("--{boundary}");
    let data = body.as_ref();
    let mut pos = find(data, delim.as_bytes(), 0).ok_or("no multipart boundary in the body")?;
    loop {
        let start = pos + delim.len();
        if data[start..].starts_with(b"--") {
            return Err(format!("no part named {field:?}"));
        }
        let head_start = start + 2; // CRLF after the boundary
        let head_end =
            find(data, b"\r\n\r\n", head_start).ok_or("a multipart part has no header end")?;
        let headers = String::from_utf8_lossy(&data[head_start.min(head_end)..head_end]);
        let next = find(data, format!("\r\n{delim}").as_bytes(), head_end + 4)
            .ok_or("a multipart part is not terminated")?;
        let mut name = None;
        let mut filename = String::new();
        let mut ct = String::from("application/octet-stream");
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').map(str::trim) {
                    if let Some(n) = p.strip_prefix("name=") {
                        name = Some(n.trim_matches('"').to_owned());
                    } else if let Some(f) = p.strip_prefix("filename=") {
                        filename = f.trim_matches('"').to_owned();
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ct = v.trim().to_owned();
            }
        }
        if name.as_deref() == Some(field) {
            return Ok((filename, ct, body.slice(head_end + 4..next)));
        }
        pos = next + 2;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
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
            headers: req.headers().clone(),
            body,
        }
    }

    pub fn to_lambda_response(resp: Response) -> lambda_http::Response<Body> {
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
    pub async fn handle(
        svc: &Arc<Services>,
        kind: RouteKind,
        req: lambda_http::Request,
    ) -> Response {
        let request = to_request(&req);
        let found = match route(&request.path) {
            Some(r) if r.kind == kind => Some(r),
            // The simulated-domain function serves every Udesk path it is given.
            Some(r) if kind == RouteKind::UdeskGateway && r.kind.is_udesk() => Some(r),
            // A custom domain's base path can hide the route's own prefix: fall back on
            // what API Gateway matched.
            _ => req.path_parameters_ref().and_then(|p| {
                let key = p.first("key").map(crate::config::Secret::new);
                p.first("appid")
                    .map(|appid| super::Route {
                        kind,
                        appid: appid.to_owned(),
                        key: key.clone(),
                    })
                    .or_else(|| {
                        key.map(|k| super::Route {
                            kind,
                            appid: String::new(),
                            key: Some(k),
                        })
                    })
            }),
        };
        match found {
            Some(r) => dispatch(svc, &r, &request).await,
            None => {
                // Only the first segment: Udesk paths carry the gateway key further on.
                let prefix = request
                    .path
                    .split('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or("");
                tracing::warn!(prefix, "no route for this path");
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
