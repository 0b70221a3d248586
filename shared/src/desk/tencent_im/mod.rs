//! Tencent Cloud IM as the agents' desk (seed 004 and Tencent's WeChat sample, made
//! production-grade): each customer is an IM account (UserID = openid) that messages an
//! agent account through the REST API; agents' replies come back through the after-send
//! callback (`callback`).

pub mod agent;
pub mod usersig;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Desk, DeskError, DeskReply};
use crate::config::{AppConfig, Secret, TencentImConfig};
use crate::context::Context;
use crate::store::{InboxStore, conversation};
use crate::support::clock::Clock;
use crate::support::outbound;
use crate::support::retry::retry;
use crate::support::url::with_query;
use crate::wechat::api::WechatApi;
use crate::wechat::media::{Fetched, MediaLinks, media_key};
use crate::wechat::message::{Event, Kind, Message};

/// Errors that mean "this customer has no IM account yet".
const NOT_IMPORTED: [i64; 3] = [20003, 90012, 70107];
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
    pub fn code(&self) -> i64 {
        match self {
            ImError::Fail { code, .. } => *code,
            _ => -1,
        }
    }
}

/// The REST API with the admin's UserSig, cached until close to its expiry.
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    pub sdkappid: u64,
    key: Secret,
    admin: String,
    sig: Mutex<Option<(String, i64)>>,
    clock: Arc<dyn Clock>,
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
    pub async fn call(
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

pub(crate) struct TencentIm {
    pub rest: Rest,
    agents: Vec<String>,
    welcome: Option<String>,
    connecting_text: Option<String>,
    delete_on_unsubscribe: bool,
    app: AppConfig,
    api: Arc<WechatApi>,
    links: Arc<MediaLinks>,
    /// Where the agent who last served each customer is kept (shared by every function).
    inbox: Arc<dyn InboxStore>,
}

impl TencentIm {
    pub fn new(ctx: &Context, app: &AppConfig, cfg: &TencentImConfig) -> Self {
        Self {
            rest: Rest {
                http: ctx.http.clone(),
                base: cfg.api_base.trim_end_matches('/').to_owned(),
                sdkappid: cfg.sdkappid,
                key: cfg.secret_key.clone(),
                admin: cfg.admin.clone(),
                sig: Mutex::new(None),
                clock: ctx.clock.clone(),
            },
            agents: cfg.agents.clone(),
            welcome: cfg.welcome.clone(),
            connecting_text: cfg.connecting_text.clone(),
            delete_on_unsubscribe: cfg.delete_on_unsubscribe,
            app: app.clone(),
            api: ctx.wechat.clone(),
            links: ctx.links.clone(),
            inbox: ctx.inbox.clone(),
        }
    }

    /// The agent who last served `openid` (if still an agent), else the first.
    async fn agent_for(&self, openid: &str) -> String {
        let read = conversation::last_agent(
            self.inbox.as_ref(),
            &self.app.appid,
            openid,
            self.rest.clock.unix_ms(),
        );
        // A slow store must not cost the customer's message: the first agent serves then.
        let last = match tokio::time::timeout(Duration::from_millis(500), read).await {
            Ok(Ok(last)) => last,
            Ok(Err(e)) => {
                warn!(appid = %self.app.appid, error = %e, "conversation state unavailable; the first agent serves");
                None
            }
            Err(_) => {
                warn!(appid = %self.app.appid, "conversation state too slow; the first agent serves");
                None
            }
        };
        last.filter(|a| self.agents.contains(a))
            .unwrap_or_else(|| self.agents[0].clone())
    }

    async fn import(&self, openid: &str, deadline: Instant) -> Result<(), ImError> {
        self.rest
            .call(
                "im_open_login_svc/account_import",
                &json!({ "UserID": openid }),
                deadline,
            )
            .await
            .map(|_| info!(appid = %self.app.appid, "customer imported into Tencent IM"))
    }

    /// A staged copy of a WeChat media id: (URL, size, md5 as UUID).
    async fn staged(&self, media_id: &str, budget: Duration) -> Option<(String, usize, String)> {
        let media = self.links.media(&self.api);
        let fetched =
            tokio::time::timeout(budget, media.fetch(&self.app, media_id, u64::MAX)).await;
        let m = match fetched {
            Ok(Ok(Fetched::Inline(m))) => m,
            Ok(Ok(Fetched::Large { .. })) => return None,
            Ok(Err(e)) => {
                warn!(appid = %self.app.appid, error = %e, "could not stage the customer's media");
                return None;
            }
            Err(_) => {
                warn!(appid = %self.app.appid, "staging the customer's media took too long");
                return None;
            }
        };
        let url = self
            .links
            .url(
                &media_key(&self.app.appid, media_id),
                Duration::from_secs(7 * 24 * 3600),
            )
            .await
            .map_err(|e| warn!(appid = %self.app.appid, error = %e, "no URL for staged media"))
            .ok()?;
        use md5::{Digest, Md5};
        let uuid = crate::support::hex::hex_lower(&Md5::digest(&m.bytes));
        Some((url, m.bytes.len(), uuid))
    }

    /// The IM message body for a customer message.
    async fn msg_body(&self, msg: &Message, budget: Duration) -> Value {
        let text = |t: String| json!([{ "MsgType": "TIMTextElem", "MsgContent": { "Text": t } }]);
        match &msg.kind {
            Kind::Text { content, .. } => text(content.clone()),
            Kind::Image { pic_url, media_id } => match self.staged(media_id, budget).await {
                Some((url, size, uuid)) => {
                    // Original, large and thumbnail: the same staged file.
                    let infos: Vec<Value> = [1, 2, 3]
                        .iter()
                        .map(|t| json!({ "Type": t, "Size": size, "Width": 0, "Height": 0, "URL": url }))
                        .collect();
                    json!([{ "MsgType": "TIMImageElem", "MsgContent": {
                        "UUID": uuid, "ImageFormat": 255, "ImageInfoArray": infos,
                    }}])
                }
                None => text(format!("[Image] {pic_url}")),
            },
            Kind::Voice {
                media_id,
                recognition,
                ..
            } => match self.staged(media_id, budget).await {
                Some((url, size, uuid)) => json!([{ "MsgType": "TIMSoundElem", "MsgContent": {
                    "Url": url, "UUID": uuid, "Size": size, "Second": 0, "Download_Flag": 2,
                }}]),
                None => text(format!(
                    "[Voice] {}",
                    recognition.as_deref().unwrap_or("(could not be fetched)")
                )),
            },
            Kind::Video { media_id, .. } | Kind::ShortVideo { media_id, .. } => {
                match self.staged(media_id, budget).await {
                    Some((url, size, uuid)) => {
                        json!([{ "MsgType": "TIMVideoFileElem", "MsgContent": {
                            "VideoUrl": url, "VideoUUID": uuid, "VideoSize": size, "VideoSecond": 0,
                            "VideoFormat": "mp4", "VideoDownloadFlag": 2,
                        }}])
                    }
                    None => text("[Video] (could not be fetched)".into()),
                }
            }
            Kind::Location {
                latitude,
                longitude,
                label,
                ..
            } => json!([{ "MsgType": "TIMLocationElem", "MsgContent": {
                "Desc": label,
                "Latitude": latitude.parse::<f64>().unwrap_or(0.0),
                "Longitude": longitude.parse::<f64>().unwrap_or(0.0),
            }}]),
            Kind::Link { title, url, .. } => text(format!("[Link] {title} {url}")),
            Kind::MiniProgramPage {
                title, page_path, ..
            } => text(format!("[Mini Program page] {title} {page_path}")),
            Kind::Event(e) => text(format!("[{}]", e.name())),
            Kind::Unknown { msg_type } => text(format!("[{msg_type} message]")),
        }
    }

    async fn send_to_agent(&self, msg: &Message, deadline: Instant) -> Result<(), ImError> {
        let openid = msg.from_user.as_str();
        let left = deadline.saturating_duration_since(Instant::now());
        let body = json!({
            "SyncOtherMachine": 2,
            "From_Account": openid,
            "To_Account": self.agent_for(openid).await,
            "MsgRandom": rand::random::<u32>(),
            "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
            "MsgBody": self.msg_body(msg, left / 2).await,
        });
        match self.rest.call("openim/sendmsg", &body, deadline).await {
            Err(e) if NOT_IMPORTED.contains(&e.code()) => {
                info!(appid = %self.app.appid, code = e.code(), "customer not in Tencent IM yet: importing, then sending again");
                self.import(openid, deadline).await?;
                let mut retry = body;
                retry["MsgRandom"] = json!(rand::random::<u32>());
                self.rest
                    .call("openim/sendmsg", &retry, deadline)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

fn passive_or_empty(msg: &Message, text: &Option<String>, now_secs: i64) -> DeskReply {
    match text {
        Some(t) if !t.is_empty() => {
            DeskReply::Passive(crate::wechat::reply::passive_text(msg, t, now_secs))
        }
        _ => DeskReply::Empty,
    }
}

/// Tencent IM's refusals to import a customer that no retry can help, with what the
/// operator must do ("删除账号" and "导入单个账号", cloud.tencent.com/document/product/269).
pub(crate) fn account_refusal(code: i64) -> Option<&'static str> {
    Some(match code {
        70398 => {
            "Tencent IM error 70398: the IM app has as many accounts as its edition allows (the free edition: 100, and every WeChat customer is one): upgrade the IM app's edition, or delete unused accounts"
        }
        70399 => {
            "Tencent IM error 70399: this customer's IM account was deleted less than 3 months ago and cannot be imported again until then (paid editions): keep delete_on_unsubscribe off"
        }
        _ => return None,
    })
}

/// How an agent tells a wxdesk notice from the customer's own words: its text begins
/// with this, and its `CloudCustomData` is `UNDELIVERED_DATA` (for a desk UI to style).
pub(crate) const UNDELIVERED_PREFIX: &str = "[not delivered] ";
pub(crate) const UNDELIVERED_DATA: &str = r#"{"wxdesk":"undelivered"}"#;

#[async_trait]
impl Desk for TencentIm {
    /// The notice goes from the customer's account into that agent's conversation with
    /// the customer, with both send callbacks off so that it never comes back to us as an
    /// agent's message.
    async fn undelivered(&self, openid: &str, agent: &str, reason: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(8);
        let body = json!({
            "SyncOtherMachine": 2,
            "From_Account": openid,
            "To_Account": agent,
            "MsgRandom": rand::random::<u32>(),
            "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
            "CloudCustomData": UNDELIVERED_DATA,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("{UNDELIVERED_PREFIX}{reason}")}}],
        });
        self.rest
            .call("openim/sendmsg", &body, deadline)
            .await
            .map(|_| info!(appid = %self.app.appid, "agent told their message was not delivered"))
            .map_err(|e| e.to_string())
    }

    async fn check(&self) -> Result<String, String> {
        // Importing the first agent is idempotent and proves the admin's UserSig works.
        let deadline = Instant::now() + Duration::from_secs(8);
        self.rest
            .call(
                "im_open_login_svc/account_import",
                &json!({ "UserID": self.agents[0] }),
                deadline,
            )
            .await
            .map(|_| "the REST API accepted the admin's UserSig".into())
            .map_err(|e| {
                account_refusal(e.code())
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string())
            })
    }

    async fn forward(
        &self,
        msg: &Message,
        _xml: &str,
        timeout: Duration,
    ) -> Result<DeskReply, DeskError> {
        let deadline = Instant::now() + timeout;
        let openid = msg.from_user.as_str();
        if openid.is_empty() || openid.len() > 32 {
            return Err(DeskError::Refused(
                "the openid does not fit an IM UserID (1-32 bytes)".into(),
            ));
        }
        let im = |e: ImError| match e {
            ImError::OutOfTime => DeskError::Timeout(timeout),
            ImError::Transport(m) => DeskError::Transport(m),
            other => match account_refusal(other.code()) {
                // No retry can import this customer: the operator must act.
                Some(what) => DeskError::Refused(what.into()),
                None => DeskError::Connector(Box::new(other)),
            },
        };
        match msg.event() {
            Some(Event::Subscribe { .. }) => {
                self.import(openid, deadline).await.map_err(im)?;
                Ok(passive_or_empty(
                    msg,
                    &self.welcome,
                    self.rest.clock.unix_secs(),
                ))
            }
            Some(Event::Unsubscribe) if self.delete_on_unsubscribe => {
                self.rest
                    .call(
                        "im_open_login_svc/account_delete",
                        &json!({ "DeleteItem": [{ "UserID": openid }] }),
                        deadline,
                    )
                    .await
                    .map_err(im)?;
                info!(appid = %self.app.appid, "customer's IM account deleted (delete_on_unsubscribe)");
                Ok(DeskReply::Empty)
            }
            // Other events say nothing to an agent.
            Some(_) => Ok(DeskReply::Empty),
            None => {
                self.send_to_agent(msg, deadline).await.map_err(im)?;
                Ok(passive_or_empty(
                    msg,
                    &self.connecting_text,
                    self.rest.clock.unix_secs(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_refusals_say_what_to_do_and_are_permanent() {
        assert!(account_refusal(70398).unwrap().contains("upgrade"));
        assert!(
            account_refusal(70399)
                .unwrap()
                .contains("delete_on_unsubscribe")
        );
        assert!(account_refusal(60007).is_none());
        assert!(DeskError::Refused(account_refusal(70399).unwrap().into()).is_permanent());
    }
}
