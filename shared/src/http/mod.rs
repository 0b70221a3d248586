//! Transport-neutral requests and responses, multipart bodies, and the paths of every
//! route (which route a path is, with its appid and key). Knows no handler: the route
//! table that calls them is `app::routes`.

pub(crate) mod refusal;

pub(crate) use refusal::{Answer, Protocol, Refused};

use bytes::Bytes;
use std::borrow::Cow;

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

    pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
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
    /// Instead of `body`: a file the server sends as the client reads it.
    pub file: Option<FileBody>,
}

/// A response body read from a file as it is sent (the local server), so that a staged
/// object is never held whole in memory: 100 clients holding one 9.9 MB link unread took
/// the server from 19 MB to 958 MB when it was. The file is open already, so a sweep
/// that deletes it meanwhile does not cut the answer short.
#[derive(Clone)]
pub struct FileBody {
    pub file: std::sync::Arc<std::fs::File>,
    pub len: u64,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody").field("len", &self.len).finish()
    }
}

impl PartialEq for FileBody {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.file, &other.file) && self.len == other.len
    }
}

impl Eq for FileBody {}

impl FileBody {
    /// The whole file, where a transport cannot stream (Lambda): at most `max` bytes.
    pub(crate) fn read_all(&self, max: u64) -> std::io::Result<Bytes> {
        use std::io::Read;
        if self.len > max {
            return Err(std::io::Error::other(format!(
                "{} bytes is over the {max} this transport sends",
                self.len
            )));
        }
        let mut out = Vec::with_capacity(self.len as usize);
        (&*self.file).take(max).read_to_end(&mut out)?;
        Ok(out.into())
    }
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed(content_type),
            headers: Vec::new(),
            body: body.into(),
            file: None,
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
    pub(crate) fn json_status(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status, "application/json; charset=utf-8", body.to_string())
    }
    pub fn bytes(content_type: String, body: Bytes) -> Self {
        Self {
            status: 200,
            content_type: Cow::Owned(content_type),
            headers: Vec::new(),
            body,
            file: None,
        }
    }
    /// A staged object, from memory or streamed from its file.
    pub(crate) fn media(content_type: String, body: MediaBody) -> Self {
        match body {
            MediaBody::Bytes(b) => Self::bytes(content_type, b),
            MediaBody::File(f) => Self {
                file: Some(f),
                ..Self::bytes(content_type, Bytes::new())
            },
        }
    }
    /// The answer to a path no route serves, and to a route that is closed for the account
    /// it names: the two must look the same.
    pub(crate) fn no_such_route() -> Self {
        Self::text(404, "no such route")
    }
    pub fn redirect(location: String) -> Self {
        let mut r = Self::new(302, "text/plain; charset=utf-8", "");
        r.headers.push((http::header::LOCATION, location));
        r
    }
    pub(crate) fn with_header(mut self, name: http::header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
    /// Text-like bodies go to API Gateway as text, everything else base64-encoded.
    pub(crate) fn is_text(&self) -> bool {
        let ct = self.content_type.as_ref();
        ct.starts_with("text/")
            || ct.starts_with("application/json")
            || ct.starts_with("application/xml")
    }
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// Where a staged object's bytes are: in memory (S3), or in a file (the local directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaBody {
    Bytes(Bytes),
    File(FileBody),
}

impl MediaBody {
    pub fn len(&self) -> u64 {
        match self {
            MediaBody::Bytes(b) => b.len() as u64,
            MediaBody::File(f) => f.len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    /// `POST /component/{component_appid}/events`: the third-party platform's
    /// authorization events.
    ComponentEvents,
    /// `GET /component/{component_appid}/authorize`: the page with the link to WeChat's
    /// authorization page.
    ComponentAuthorize,
    /// `GET /component/{component_appid}/authorized?auth_code=`: WeChat's redirect back.
    ComponentAuthorized,
    /// `POST /wechat/component/{component_appid}/{appid}`: pushes for a shop's account
    /// served through the platform (the platform's message URL, `$APPID$` replaced).
    ComponentPush,
}

/// The largest body of a Udesk media upload: a 10 MB video plus the multipart framing.
pub(crate) const MAX_UPLOAD_BODY: usize = 11 * 1024 * 1024;
/// The largest body of a desk-facing JSON or form request (an agent message, a template, a
/// callback): WeChat's own messages are far smaller.
pub const MAX_DESK_BODY: usize = 64 * 1024;

impl RouteKind {
    pub(crate) fn is_udesk(self) -> bool {
        matches!(
            self,
            RouteKind::UdeskGateway | RouteKind::UdeskTemplateList | RouteKind::UdeskTemplateSend
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    /// From the path; empty when the request names it in `?appid=` instead.
    pub appid: String,
    /// The third-party platform's appid in a path that names one besides the account's
    /// (`/wechat/component/{platform}/{appid}`); empty otherwise.
    pub platform: String,
    /// The secret path segment of routes that have one.
    pub key: Option<crate::support::secret::Secret>,
}

/// Whether a request is a Udesk media upload, from its head alone.
pub(crate) fn is_upload(
    kind: RouteKind,
    method: &http::Method,
    query: &[(String, String)],
) -> bool {
    kind == RouteKind::UdeskGateway
        && method == http::Method::POST
        && query.iter().any(|(k, _)| k == "type")
}

/// Whether a request moves a media file (a staged-media link, a Udesk media download or
/// upload): the local server caps how many of these a peer has in flight.
#[cfg(feature = "local")]
pub(crate) fn is_media(kind: RouteKind, method: &http::Method, query: &[(String, String)]) -> bool {
    match kind {
        RouteKind::StagedMedia => true,
        RouteKind::UdeskGateway => {
            is_upload(kind, method, query)
                || (method == http::Method::GET && query.iter().any(|(k, _)| k == "media_id"))
        }
        _ => false,
    }
}

/// The one file part named `field` of a multipart/form-data body: (file name, content
/// type, bytes).
pub(crate) fn multipart_part(
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

#[cfg(all(test, feature = "local"))]
mod tests {
    use super::*;

    #[test]
    fn media_requests_are_told_apart() {
        let q = |k: &str| vec![(k.to_owned(), "x".to_owned())];
        let (get, post) = (http::Method::GET, http::Method::POST);
        assert!(is_media(RouteKind::StagedMedia, &get, &[]));
        assert!(is_media(RouteKind::UdeskGateway, &get, &q("media_id")));
        assert!(is_media(RouteKind::UdeskGateway, &post, &q("type")));
        assert!(!is_media(RouteKind::UdeskGateway, &get, &q("openid")));
        assert!(!is_media(RouteKind::UdeskGateway, &post, &[]));
        assert!(!is_media(RouteKind::TimCallback, &post, &q("type")));
    }
}
