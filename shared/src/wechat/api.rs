//! WeChat's server API (`api.weixin.qq.com`) with the shared access_token: custom send,
//! temporary media, user info, templates. Every call checks `errcode` in the body whatever
//! the HTTP status, renews a rejected token and retries exactly once, and retries `-1` and
//! 5xx a bounded number of times with backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tracing::{error, warn};

use crate::config::{AppConfig, WechatConfig};
use crate::outbound::{GuardedFetch, read_capped};

use super::token::TokenAuthority;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// WeChat answered with a non-zero errcode; `body` is its answer as is.
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Wechat {
        errcode: i64,
        errmsg: String,
        body: Value,
    },
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    #[error("WeChat answered HTTP {0}")]
    Status(u16),
    #[error("WeChat's answer is unreadable: {0}")]
    Garbled(String),
    #[error("no access_token: {0}")]
    Token(String),
}

/// Codes that say the token itself was refused: renew it and retry once.
pub const TOKEN_INVALID: [i64; 3] = [40001, 40014, 42001];

/// What the operator must fix for codes that no retry can help.
pub fn operator_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        40164 => {
            "this server's IP is not in the account's IP whitelist (WeChat admin console → Basic Configuration → IP whitelist)"
        }
        89503 => "the account's administrator must confirm this server's IP in WeChat",
        40013 => "the appid is wrong: check apps.appid",
        40125 => {
            "the AppSecret is wrong: check apps.secret (reset it in the WeChat admin console if needed)"
        }
        40243 => "the AppSecret is frozen: unfreeze or reset it in the WeChat admin console",
        45009 => "the daily API quota is used up (cgi-bin/clear_quota resets it, 10 times a month)",
        48001 => "the account is not authorised for this API (verification or permission missing)",
        _ => return None,
    })
}

impl ApiError {
    pub fn from_body(errcode: i64, body: Value) -> Self {
        let errmsg = body
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        ApiError::Wechat {
            errcode,
            errmsg,
            body,
        }
    }

    /// WeChat's code, or -1 (WeChat's own "system busy") for failures around the call.
    pub fn errcode(&self) -> i64 {
        match self {
            ApiError::Wechat { errcode, .. } => *errcode,
            _ => -1,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Wechat { errcode, .. } => *errcode == -1,
            ApiError::Transport(_) => true,
            ApiError::Status(s) => *s >= 500,
            ApiError::Garbled(_) | ApiError::Token(_) => false,
        }
    }

    /// The JSON a desk gets: WeChat's own answer when there is one, else an errcode/errmsg
    /// pair saying what went wrong around the call.
    pub fn to_json(&self) -> Value {
        match self {
            ApiError::Wechat { body, .. } => body.clone(),
            other => json!({ "errcode": other.errcode(), "errmsg": format!("wxdesk: {other}") }),
        }
    }
}

/// `errcode` when present and non-zero.
pub fn errcode_of(v: &Value) -> Option<i64> {
    v.get("errcode")
        .and_then(|c| {
            c.as_i64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|c| *c != 0)
}

/// Exponential backoff with full jitter: a random wait in [base·2^(n-1)/2, base·2^(n-1)].
pub fn backoff(attempt: u32, base: Duration) -> Duration {
    let top = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let half = top / 2;
    half + Duration::from_micros(rand::random_range(0..=half.as_micros().max(1) as u64))
}

/// The body of a call.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    /// A multipart/form-data upload: one file part.
    File {
        field: &'static str,
        filename: String,
        content_type: String,
        bytes: Bytes,
    },
}

/// A raw answer: media downloads are bytes, everything else JSON.
#[derive(Debug, Clone)]
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub content_disposition: Option<String>,
    pub bytes: Bytes,
}

impl Raw {
    pub fn is_json(&self) -> bool {
        self.content_type.starts_with("application/json")
            || self.content_type.starts_with("text/plain")
            || self.bytes.first() == Some(&b'{')
    }
}

/// The largest answer read from WeChat's API: media downloads (images, voice, thumbs; at
/// most 10 MB by WeChat's own limits) with room to spare. JSON answers are far smaller.
pub const MAX_API_ANSWER: usize = 12 * 1024 * 1024;
/// A video behind `video_url`: WeChat's temporary videos are at most 10 MB.
pub const MAX_VIDEO_BYTES: usize = 10 * 1024 * 1024;

pub struct WechatApi {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    pub tokens: Arc<TokenAuthority>,
    /// `video_url`s from `media/get`, fetched under `[fetch] wechat_hosts`.
    video: GuardedFetch,
}

impl WechatApi {
    pub fn new(
        http: reqwest::Client,
        cfg: &WechatConfig,
        tokens: Arc<TokenAuthority>,
        video: GuardedFetch,
    ) -> Self {
        Self {
            http,
            base: cfg.api_base.trim_end_matches('/').to_owned(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            tokens,
            video,
        }
    }

    /// A JSON API call; `Ok` only for a success answer.
    pub async fn call(
        &self,
        app: &AppConfig,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<Value, ApiError> {
        let raw = self.send(app, method, path, query, body).await?;
        serde_json::from_slice(&raw.bytes)
            .map_err(|_| ApiError::Garbled(format!("{path} answered something that is not JSON")))
    }

    /// `cgi-bin/message/custom/send`.
    pub async fn custom_send(&self, app: &AppConfig, message: &Value) -> Result<Value, ApiError> {
        self.call(
            app,
            http::Method::POST,
            "/cgi-bin/message/custom/send",
            &[],
            Body::Json(message.clone()),
        )
        .await
    }

    /// Any call, with the token, the retry rules and the errcode check. A JSON answer with
    /// a non-zero errcode is an error; anything else (media bytes) comes back raw.
    pub async fn send(
        &self,
        app: &AppConfig,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<Raw, ApiError> {
        let appid = app.appid.as_str();
        let mut renewed = false;
        let mut transient = 0u32;
        let mut token = self.tokens.get(app).await?;
        loop {
            let result = self.send_once(&method, path, query, &body, &token).await;
            match result {
                Ok(raw) => return Ok(raw),
                Err(e) if TOKEN_INVALID.contains(&e.errcode()) && !renewed => {
                    renewed = true;
                    warn!(
                        appid,
                        path,
                        errcode = e.errcode(),
                        "access_token refused; renewing and retrying once"
                    );
                    token = self.tokens.renew_after_rejection(app, &token).await?;
                }
                Err(e) if e.is_transient() && transient < 2 => {
                    transient += 1;
                    warn!(appid, path, attempt = transient, error = %e, "WeChat call failed; retrying");
                    tokio::time::sleep(backoff(transient, Duration::from_millis(200))).await;
                }
                Err(e) => {
                    match operator_hint(e.errcode()) {
                        Some(hint) => error!(
                            appid,
                            path,
                            errcode = e.errcode(),
                            "WeChat refused the call: {hint}"
                        ),
                        None => warn!(appid, path, error = %e, "WeChat call failed"),
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn send_once(
        &self,
        method: &http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: &Body,
        token: &str,
    ) -> Result<Raw, ApiError> {
        let mut params = Vec::with_capacity(query.len() + 1);
        params.push(("access_token", token));
        params.extend_from_slice(query);
        let url = with_query(&format!("{}{path}", self.base), &params);
        let mut req = self.http.request(method.clone(), url).timeout(self.timeout);
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header(
                    http::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                // WeChat wants UTF-8 as is, not \u escapes.
                .body(v.to_string()),
            Body::File {
                field,
                filename,
                content_type,
                bytes,
            } => {
                let (ct, body) = multipart_file(field, filename, content_type, bytes);
                req.header(http::header::CONTENT_TYPE, ct).body(body)
            }
        };
        // The URL carries the access_token: errors are reported without it.
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let header = |h: http::header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(http::header::CONTENT_TYPE).unwrap_or_default();
        let content_disposition = header(http::header::CONTENT_DISPOSITION);
        let bytes = read_capped(resp, MAX_API_ANSWER)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let raw = Raw {
            status,
            content_type,
            content_disposition,
            bytes,
        };
        if raw.is_json()
            && let Ok(v) = serde_json::from_slice::<Value>(&raw.bytes)
        {
            // An errcode in the body counts whatever the HTTP status says.
            if let Some(code) = errcode_of(&v) {
                return Err(ApiError::from_body(code, v));
            }
            if status >= 500 {
                return Err(ApiError::Status(status));
            }
            return Ok(raw);
        }
        if status >= 400 {
            return Err(ApiError::Status(status));
        }
        Ok(raw)
    }

    /// A `video_url` from `media/get`: a guarded fetch (WeChat's hosts only, https, no
    /// internal address, at most `MAX_VIDEO_BYTES`), without the token.
    pub async fn fetch_video(&self, url: &str) -> Result<Raw, ApiError> {
        let (content_type, bytes) = self
            .video
            .get(url, MAX_VIDEO_BYTES)
            .await
            .map_err(|e| ApiError::Garbled(format!("video_url refused: {e}")))?;
        Ok(Raw {
            status: 200,
            content_type,
            content_disposition: None,
            bytes,
        })
    }
}

/// `base?k=v&...`, values percent-encoded.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    format!("{base}?{}", ser.finish())
}

/// A multipart/form-data body with one file part: (content type, body).
pub fn multipart_file(
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    let boundary = format!("wxdesk{}", super::signature::hex_lower(&b));
    // Quotes and line breaks cannot be escaped in a part header: leave them out.
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
            .collect()
    };
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            clean(field),
            clean(filename),
            clean(content_type)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        for n in 1..10 {
            let d = backoff(n, base);
            let top = base * (1 << (n - 1).min(6));
            assert!(d >= top / 2 && d <= top, "{n}: {d:?}");
        }
    }

    #[test]
    fn errcode_is_read_from_the_body() {
        assert_eq!(
            errcode_of(&json!({"errcode": 40001, "errmsg": "x"})),
            Some(40001)
        );
        assert_eq!(errcode_of(&json!({"errcode": "45015"})), Some(45015));
        assert_eq!(errcode_of(&json!({"errcode": 0, "errmsg": "ok"})), None);
        assert_eq!(errcode_of(&json!({"access_token": "t"})), None);
        let e = ApiError::from_body(40164, json!({"errcode": 40164, "errmsg": "invalid ip"}));
        assert!(!e.is_transient());
        assert!(operator_hint(e.errcode()).unwrap().contains("whitelist"));
        assert_eq!(e.to_json()["errcode"], 40164);
        let t = ApiError::Transport("connection refused".into());
        assert!(t.is_transient());
        assert_eq!(t.to_json()["errcode"], -1);
    }

    #[test]
    fn multipart_body_shape() {
        let (ct, body) = multipart_file("media", "a\"b.jpg", "image/jpeg", b"\xff\xd8\xffdata");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(
            text.contains(
                "name=\"media\"; filename=\"ab.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
        );
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }
}
