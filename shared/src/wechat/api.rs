//! WeChat's server API (`api.weixin.qq.com`) with the shared access_token: custom send,
//! temporary media, user info, templates. Every call checks `errcode` in the body whatever
//! the HTTP status, renews a rejected token and retries exactly once, and retries `-1` and
//! 5xx a bounded number of times with backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tracing::{error, warn};

use crate::config::{AppConfig, WechatConfig};
use crate::support::outbound::{self, GuardedFetch};

use super::error::{ApiError, TOKEN_INVALID, errcode_of, operator_hint};
use super::token::TokenAuthority;
use crate::support::retry::retry;
use crate::support::url::with_query;

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
    pub(crate) fn is_json(&self) -> bool {
        self.content_type.starts_with("application/json")
            || self.content_type.starts_with("text/plain")
            || self.bytes.first() == Some(&b'{')
    }
}

/// The largest answer read from WeChat's API: media downloads (images, voice, thumbs; at
/// most 10 MB by WeChat's own limits) with room to spare. JSON answers are far smaller.
pub(crate) const MAX_API_ANSWER: usize = 12 * 1024 * 1024;
/// A video behind `video_url`: WeChat's temporary videos are at most 10 MB.
pub(crate) const MAX_VIDEO_BYTES: usize = 10 * 1024 * 1024;

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
    pub(crate) async fn custom_send(
        &self,
        app: &AppConfig,
        message: &Value,
    ) -> Result<Value, ApiError> {
        self.call(
            app,
            http::Method::POST,
            "/cgi-bin/message/custom/send",
            &[],
            Body::Json(message.clone()),
        )
        .await
    }

    /// The customer sees the agent typing (or stops seeing it): `custom/typing` on
    /// Official Accounts, `custom/business/typing` on Mini Programs ("客服输入状态").
    pub(crate) async fn typing(
        &self,
        app: &AppConfig,
        openid: &str,
        typing: bool,
    ) -> Result<Value, ApiError> {
        let path = match app.kind {
            crate::wechat::AppKind::MiniProgram => "/cgi-bin/message/custom/business/typing",
            _ => "/cgi-bin/message/custom/typing",
        };
        let command = if typing { "Typing" } else { "CancelTyping" };
        self.call(
            app,
            http::Method::POST,
            path,
            &[],
            Body::Json(serde_json::json!({ "touser": openid, "command": command })),
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
        // -1 and 5xx are tried three times in all; a refused token is renewed once.
        let attempt = |token: String| {
            let (method, body) = (&method, &body);
            async move {
                retry(
                    3,
                    Duration::from_millis(200),
                    |_| self.send_once(method, path, query, body, &token),
                    ApiError::is_transient,
                    |attempt, e| warn!(appid, path, attempt, error = %e, "WeChat call failed; retrying"),
                )
                .await
                .map_err(|e| (e, token))
            }
        };
        let token = self.tokens.get(app).await?;
        let result = match attempt(token).await {
            Err((e, token)) if TOKEN_INVALID.contains(&e.errcode()) => {
                warn!(
                    appid,
                    path,
                    errcode = e.errcode(),
                    "access_token refused; renewing and retrying once"
                );
                let renewed = self.tokens.renew_after_rejection(app, &token).await?;
                attempt(renewed).await
            }
            other => other,
        };
        result.map_err(|(e, _)| {
            match operator_hint(&e) {
                Some(hint) => error!(
                    appid,
                    path,
                    errcode = e.errcode(),
                    "WeChat refused the call: {hint}"
                ),
                None => warn!(appid, path, error = %e, "WeChat call failed"),
            }
            e
        })
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
        let mut req = self.http.request(method.clone(), url);
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
        // The URL carries the access_token: `outbound::send` reports errors without it.
        let answer = outbound::send(req, self.timeout, MAX_API_ANSWER)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = answer.status;
        let raw = Raw {
            status,
            content_type: answer
                .header(http::header::CONTENT_TYPE)
                .unwrap_or_default()
                .to_owned(),
            content_disposition: answer
                .header(http::header::CONTENT_DISPOSITION)
                .map(str::to_owned),
            bytes: answer.bytes,
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
    pub(crate) async fn fetch_video(&self, url: &str) -> Result<Raw, ApiError> {
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

/// A multipart/form-data body with one file part: (content type, body).
pub(crate) fn multipart_file(
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    let boundary = format!("wxdesk{}", crate::support::hex::hex_lower(&b));
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
