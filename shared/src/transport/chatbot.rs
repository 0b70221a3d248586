//! The WeChat Dialogue Open Platform's third-party customer-service API ("Third Party Service System Access - Send Customer Service Message", https://developers.weixin.qq.com/doc/aispeech/confapi/thirdkefu/sendmsg.html):
//! `POST {api_base}/openapi/sendmsg/{TOKEN}` with `{"encrypt": WXBizMsgCrypt(xml)}`, the
//! XML carrying appid, openid, msg, channel and optionally event, kefuname, kefuavatar.
//! Waiter events follow the conversation: the first agent message carries `waiterEnter`.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

use super::Agent;
use crate::config::{AppConfig, ChatbotConfig};
use crate::context::Context;
use crate::store::idempotency;
use crate::support::outbound;
use crate::support::retry::retry;
use crate::wechat::dialogue::{meaning, msg_of};
use crate::wechat::kf::KfMessage;
use crate::wechat::xml::{Doc, Value as XmlValue};

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ChatbotError {
    #[error("Dialogue Platform errcode {code}: {meaning}")]
    Refused { code: i64, meaning: String },
    #[error("cannot reach the Dialogue Platform: {0}")]
    Transport(String),
    #[error("the Dialogue Platform answered HTTP {0}")]
    Status(u16),
    #[error("the Dialogue Platform's answer is not JSON")]
    Garbled,
    #[error("{0}")]
    Unusable(String),
}

impl ChatbotError {
    pub(crate) fn errcode(&self) -> i64 {
        match self {
            ChatbotError::Refused { code, .. } => *code,
            ChatbotError::Unusable(_) => 40035,
            _ => -1,
        }
    }
    pub(crate) fn answered(&self) -> bool {
        matches!(
            self,
            ChatbotError::Refused { .. } | ChatbotError::Unusable(_)
        )
    }
    fn transient(&self) -> bool {
        matches!(self, ChatbotError::Transport(_))
            || matches!(self, ChatbotError::Status(s) if *s >= 500)
    }
}

fn conversation_key(appid: &str, openid: &str) -> String {
    crate::support::keys::key(
        appid,
        crate::support::keys::Kind::ChatbotConversation,
        &[&openid],
    )
}

/// Whether this agent message opens a conversation (and marks it open).
async fn opens_conversation(
    svc: &Context,
    app: &AppConfig,
    cb: &ChatbotConfig,
    openid: &str,
) -> bool {
    let key = conversation_key(&app.appid, openid);
    let ttl = std::time::Duration::from_secs(cb.conversation_secs);
    match idempotency::first_time(
        svc.inbox.as_ref(),
        &key,
        &app.appid,
        svc.clock.unix_ms(),
        ttl,
    )
    .await
    {
        Ok(opened) => opened,
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "conversation state unavailable; no waiterEnter");
            false
        }
    }
}

/// Forgets a conversation (after `waiterQuit`): the next agent message opens a new one.
pub(crate) async fn close_conversation(svc: &Context, app: &AppConfig, openid: &str) {
    if let Err(e) = svc
        .inbox
        .remove(&conversation_key(&app.appid, openid))
        .await
    {
        warn!(appid = %app.appid, error = %e, "could not close the conversation");
    }
}

/// Sends agent messages (one, or several as `multimsg`) to a customer, with `event` when
/// given and `waiterEnter` when the conversation is new.
pub(crate) async fn send(
    svc: &Context,
    app: &AppConfig,
    cb: &ChatbotConfig,
    parts: &[KfMessage],
    agent: &Agent,
    event: Option<&str>,
) -> Result<Value, ChatbotError> {
    let Some(first) = parts.first() else {
        return Err(ChatbotError::Unusable("nothing to send".into()));
    };
    let openid = first.touser.clone();
    let mut event = event.map(str::to_owned);
    let mut msg = if parts.len() == 1 {
        msg_of(first)
    } else {
        json!({ "multimsg": parts.iter().map(msg_of).collect::<Vec<_>>() })
    };
    if event.is_none() && msg.as_str() == Some(cb.satisfaction_text.as_str()) {
        event = Some("waiterQualityEvaluate".into());
        msg = Value::String(cb.satisfaction_prompt.clone());
    }
    if event.is_none() && opens_conversation(svc, app, cb, &openid).await {
        event = Some("waiterEnter".into());
    }
    let result = send_raw(svc, app, cb, &openid, &msg, event.as_deref(), agent).await;
    if event.as_deref() == Some("waiterQuit") && result.is_ok() {
        close_conversation(svc, app, &openid).await;
    }
    result
}

/// One sendmsg call: build, encrypt, post, read the errcode; network errors and 5xx are
/// retried with backoff, the platform's own refusals never.
pub(crate) async fn send_raw(
    svc: &Context,
    app: &AppConfig,
    cb: &ChatbotConfig,
    openid: &str,
    msg: &Value,
    event: Option<&str>,
    agent: &Agent,
) -> Result<Value, ChatbotError> {
    let mut d = Doc::default();
    if matches!(cb.channel, 0 | 5 | 6) {
        d.push("appid", XmlValue::text(&app.appid));
    }
    d.push("openid", XmlValue::text(openid));
    let msg_text = match msg {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    d.push("msg", XmlValue::text(msg_text));
    d.push("channel", XmlValue::number(cb.channel));
    if let Some(e) = event {
        d.push("event", XmlValue::text(e));
    }
    if let Some(n) = agent.name.as_ref().or(cb.kefuname.as_ref()) {
        d.push("kefuname", XmlValue::text(n));
    }
    if let Some(a) = agent.avatar.as_ref().or(cb.kefuavatar.as_ref()) {
        d.push("kefuavatar", XmlValue::text(a));
    }
    if let Some(n) = agent.node.as_ref().or(cb.ans_node_name.as_ref()) {
        d.push("ans_node_name", XmlValue::text(n));
    }
    let crypt = &cb.encoding_aes_key;
    let body = json!({ "encrypt": crypt.encrypt(&d.to_xml(), &cb.appid) }).to_string();
    let url = format!(
        "{}/openapi/sendmsg/{}",
        cb.api_base.trim_end_matches('/'),
        cb.token.expose()
    );
    let result = retry(
        3,
        Duration::from_millis(200),
        |_| post(svc, &url, &body),
        ChatbotError::transient,
        |attempt, e| warn!(appid = %app.appid, attempt, error = %e, "Dialogue Platform call failed; retrying"),
    )
    .await;
    match &result {
        Ok(_) => {
            info!(appid = %app.appid, event, "agent message sent through the Dialogue Platform")
        }
        Err(e) => {
            warn!(appid = %app.appid, errcode = e.errcode(), error = %e, "Dialogue Platform refused the message")
        }
    }
    result
}

async fn post(svc: &Context, url: &str, body: &str) -> Result<Value, ChatbotError> {
    let req = svc
        .http
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    let answer = outbound::send(
        req,
        Duration::from_millis(svc.config.wechat.timeout_ms),
        outbound::MAX_ANSWER_BYTES,
    )
    .await
    .map_err(|e| ChatbotError::Transport(e.to_string()))?;
    let status = answer.status;
    let v = match answer.json() {
        Some(v) => v,
        None if status >= 500 => return Err(ChatbotError::Status(status)),
        None => return Err(ChatbotError::Garbled),
    };
    let code = v
        .get("errcode")
        .or_else(|| v.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if code != 0 {
        return Err(ChatbotError::Refused {
            code,
            meaning: meaning(code).to_owned(),
        });
    }
    if status >= 500 {
        return Err(ChatbotError::Status(status));
    }
    Ok(v)
}
