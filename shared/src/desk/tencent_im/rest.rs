//! Tencent IM's REST API: the admin's UserSig (cached until close to its expiry), one call
//! with frequency limits retried inside the caller's deadline, and its error shape
//! ("REST API 简介", cloud.tencent.com/document/product/269/1519).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

use super::usersig;
use crate::config::Secret;
use crate::support::clock::Clock;
use crate::support::outbound;
use crate::support::retry::retry;
use crate::support::url::with_query;

/// Frequency limits: retried with backoff.
const RATE_LIMITED: [i64; 2] = [60007, 60011];
/// Tencent's REST server gives up after 3 s; we wait a little longer.
const REST_TIMEOUT: Duration = Duration::from_millis(3500);
const ADMIN_SIG_LIFETIME: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ImError {
    #[error("Tencent IM error {code}: {info}")]
    Fail { code: i64, info: String },
    #[error("cannot reach Tencent IM: {0}")]
    Transport(String),
    #[error("Tencent IM answered HTTP {0}")]
    Status(u16),
    #[error("Tencent IM's answer is not JSON")]
    Garbled,
    #[error("no time left for Tencent IM")]
    OutOfTime,
}

impl ImError {
    pub(crate) fn code(&self) -> i64 {
        match self {
            ImError::Fail { code, .. } => *code,
            _ => -1,
        }
    }
}

/// The REST API with the admin's UserSig, cached until close to its expiry.
pub(crate) struct Rest {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub sdkappid: u64,
    pub(super) key: Secret,
    pub(super) admin: String,
    pub(super) sig: Mutex<Option<(String, i64)>>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Rest {
    fn admin_sig(&self) -> String {
        let now = self.clock.unix_secs();
        let mut cached = self.sig.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((sig, made)) if now - made < ADMIN_SIG_LIFETIME - 3600 => sig.clone(),
            _ => {
                let sig = usersig::generate(
                    self.key.expose(),
                    self.sdkappid,
                    &self.admin,
                    now,
                    ADMIN_SIG_LIFETIME,
                );
                *cached = Some((sig.clone(), now));
                sig
            }
        }
    }

    /// One REST call, retrying frequency limits while `deadline` allows.
    pub(crate) async fn call(
        &self,
        command: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, ImError> {
        retry(
            3,
            Duration::from_millis(100),
            |_| async {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(50) {
                    return Err(ImError::OutOfTime);
                }
                let random = rand::random::<u32>().to_string();
                let sdkappid = self.sdkappid.to_string();
                let sig = self.admin_sig();
                let url = with_query(
                    &format!("{}/v4/{command}", self.base),
                    &[
                        ("sdkappid", sdkappid.as_str()),
                        ("identifier", self.admin.as_str()),
                        ("usersig", sig.as_str()),
                        ("random", random.as_str()),
                        ("contenttype", "json"),
                    ],
                );
                self.send(url, body, left.min(REST_TIMEOUT)).await
            },
            |e: &ImError| RATE_LIMITED.contains(&e.code()),
            |attempt, e| {
                warn!(
                    command,
                    code = e.code(),
                    attempt,
                    "Tencent IM rate limit; backing off"
                )
            },
        )
        .await
    }

    async fn send(&self, url: String, body: &Value, timeout: Duration) -> Result<Value, ImError> {
        let req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = outbound::send(req, timeout, outbound::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ImError::Transport(e.to_string()))?;
        if answer.status != 200 {
            return Err(ImError::Status(answer.status));
        }
        let v = answer.json().ok_or(ImError::Garbled)?;
        let code = v.get("ErrorCode").and_then(Value::as_i64).unwrap_or(0);
        if v.get("ActionStatus").and_then(Value::as_str) != Some("OK") || code != 0 {
            return Err(ImError::Fail {
                code,
                info: v
                    .get("ErrorInfo")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        Ok(v)
    }
}
