//! Outbound transports: how an agent's message reaches the customer. WeChat's custom-send
//! API by default; the Dialogue Platform's sendmsg when the account has `[apps.chatbot]`.
//! Every desk connector delivers through `deliver`, so the choice is made in one place.

pub(crate) mod chatbot;

use serde_json::{Value, json};

use crate::config::AppConfig;
use crate::context::Context;
use crate::wechat::error::ApiError;
use crate::wechat::kf::KfMessage;
use crate::wechat::quota;
use tracing::warn;

/// Who is speaking, when the desk says (shown by the Dialogue Platform).
#[derive(Debug, Clone, Default)]
pub(crate) struct Agent {
    pub name: Option<String>,
    pub avatar: Option<String>,
    /// The desk's queue or skill (the Dialogue Platform's `ans_node_name`).
    pub node: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DeliverError {
    #[error(transparent)]
    Wechat(#[from] ApiError),
    #[error(transparent)]
    Chatbot(#[from] chatbot::ChatbotError),
    #[error("the agent's message has no part the customer could read")]
    Empty,
}

impl DeliverError {
    /// The JSON a desk that speaks WeChat's error shape gets.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            DeliverError::Wechat(e) => e.to_json(),
            DeliverError::Chatbot(e) => {
                json!({ "errcode": e.errcode(), "errmsg": format!("wxdesk: {e}") })
            }
            DeliverError::Empty => json!({ "errcode": 40035, "errmsg": format!("wxdesk: {self}") }),
        }
    }

    /// What a desk is told of the failure, in words: no detail of our stores.
    pub(crate) fn desk_text(&self) -> String {
        let json = self.to_json();
        let text = json["errmsg"].as_str().unwrap_or("");
        text.strip_prefix("wxdesk: ").unwrap_or(text).to_owned()
    }

    /// Whether the far side answered (as opposed to being unreachable).
    pub(crate) fn answered(&self) -> bool {
        match self {
            DeliverError::Wechat(ApiError::Wechat { .. }) => true,
            DeliverError::Chatbot(e) => e.answered(),
            _ => false,
        }
    }

    /// Whether trying again can never succeed (the outbox then marks the entry dead).
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            DeliverError::Wechat(ApiError::Wechat { errcode, .. }) => {
                WECHAT_PERMANENT.contains(errcode)
            }
            DeliverError::Chatbot(e) => matches!(e.errcode(), 1001 | 1005 | 40035),
            DeliverError::Empty => true,
            DeliverError::Wechat(_) => false,
        }
    }
}

/// WeChat codes no retry can help: the customer's 48-hour window closed (45015), not an
/// openid of this account (40003), too many messages in the window (45047), the API not
/// granted (48001).
const WECHAT_PERMANENT: [i64; 4] = [45015, 40003, 45047, 48001];

/// Delivers one agent message; answers the far side's JSON.
pub(crate) async fn deliver(
    svc: &Context,
    app: &AppConfig,
    msg: &KfMessage,
    agent: &Agent,
) -> Result<Value, DeliverError> {
    deliver_many(svc, app, std::slice::from_ref(msg), agent, None).await
}

/// A waiter event with no message of its own (a bare signal from the desk): the Dialogue
/// Platform gets the event with its default text; custom send has no use for it.
pub(crate) async fn signal(
    svc: &Context,
    app: &AppConfig,
    openid: &str,
    event: &str,
    agent: &Agent,
) -> Result<(), DeliverError> {
    let Some(cb) = &app.chatbot else {
        return Ok(());
    };
    let msg = Value::String(crate::wechat::dialogue::default_event_text(event).to_owned());
    chatbot::send_raw(svc, app, cb, openid, &msg, Some(event), agent).await?;
    if event == "waiterQuit" {
        chatbot::close_conversation(svc, app, openid).await;
    }
    Ok(())
}

/// Delivers the parts of one agent message: one custom send per part, or one sendmsg
/// (`multimsg` for several parts) carrying `event` when one is due.
pub(crate) async fn deliver_many(
    svc: &Context,
    app: &AppConfig,
    parts: &[KfMessage],
    agent: &Agent,
    event: Option<&str>,
) -> Result<Value, DeliverError> {
    match &app.chatbot {
        Some(cb) => Ok(chatbot::send(svc, app, cb, parts, agent, event).await?),
        None => {
            let Some(openid) = parts.first().map(|p| p.touser.clone()) else {
                return Err(DeliverError::Empty);
            };
            let now_ms = svc.clock.unix_ms();
            let left = quota::current(svc.inbox.as_ref(), &app.appid, &openid, now_ms)
                .await
                .unwrap_or_else(|e| {
                    warn!(appid = %app.appid, error = %e, "send allowance unreadable; WeChat will judge");
                    None
                })
                .map(|a| a.at(now_ms));
            let plan = fit(merged(parts), left);
            let mut last = json!({"errcode": 0, "errmsg": "ok"});
            for part in plan {
                spend(svc, app, &openid).await;
                last = svc.wechat.custom_send(app, &part.to_json()).await?;
            }
            Ok(last)
        }
    }
}

/// Counts one send against the customer's allowance (WeChat judges it either way).
async fn spend(svc: &Context, app: &AppConfig, openid: &str) {
    let now_ms = svc.clock.unix_ms();
    match quota::spend(svc.inbox.as_ref(), &app.appid, openid, now_ms).await {
        Ok(quota::Spent::Over) => {
            warn!(appid = %app.appid, "the customer's send allowance looks used up; WeChat judges this send")
        }
        Ok(_) => {}
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "could not count the send against the allowance")
        }
    }
}

/// The parts within `left` sends (None: unknown, all go): when there are more, the last
/// send carries the rest folded into one text, media by their links, so that nothing
/// is dropped. With none left, everything goes folded in one send for WeChat to judge.
pub(crate) fn fit(parts: Vec<KfMessage>, left: Option<u32>) -> Vec<KfMessage> {
    let Some(left) = left.map(|l| l.max(1) as usize) else {
        return parts;
    };
    if parts.len() <= left {
        return parts;
    }
    let mut parts = parts;
    let rest = parts.split_off(left - 1);
    let text = rest
        .iter()
        .map(KfMessage::as_text)
        .collect::<Vec<_>>()
        .join("\n");
    parts.push(KfMessage::text(&rest[0].touser, &text));
    parts
}

/// The longest text one merged custom send carries. WeChat's passive text replies stop
/// at 2,048 bytes; its custom-send page gives no figure, so merged texts keep to that.
const MAX_MERGED_TEXT: usize = 2048;

/// Consecutive text parts of one agent message as one text, one per line: every custom
/// send spends one of the customer's allowance (5 per customer message, "客服消息下发规则",
/// developers.weixin.qq.com), and a desk that splits a message into elements (Tencent
/// IM: up to 10) would spend it all on one answer. Other parts keep their place.
pub(crate) fn merged(parts: &[KfMessage]) -> Vec<KfMessage> {
    let mut out: Vec<KfMessage> = Vec::with_capacity(parts.len());
    for part in parts {
        let joined = match (out.last(), part.text_content()) {
            (Some(prev), Some(next)) if prev.kf_account == part.kf_account => prev
                .text_content()
                .filter(|before| before.len() + 1 + next.len() <= MAX_MERGED_TEXT)
                .map(|before| format!("{before}\n{next}")),
            _ => None,
        };
        match (joined, out.last_mut()) {
            (Some(content), Some(prev)) => prev.content = json!({ "content": content }),
            _ => out.push(part.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_allowance_cannot_carry_goes_folded() {
        let t = |c: &str| KfMessage::text("oU", c);
        let img = KfMessage::media("oU", "image", "M1").with_link("https://cos.example/a.jpg");
        let parts = vec![
            t("a"),
            img.clone(),
            t("b"),
            KfMessage::media("oU", "voice", "M2"),
        ];
        assert_eq!(fit(parts.clone(), None), parts);
        assert_eq!(fit(parts.clone(), Some(4)), parts);
        let two = fit(parts.clone(), Some(2));
        assert_eq!(two.len(), 2);
        assert_eq!(two[0], t("a"));
        assert_eq!(
            two[1].text_content(),
            Some("[Image] https://cos.example/a.jpg\nb\n[Voice]")
        );
        let none = fit(parts, Some(0));
        assert_eq!(none.len(), 1);
        assert!(none[0].text_content().unwrap().starts_with("a\n[Image]"));
    }

    #[test]
    fn consecutive_texts_go_as_one() {
        let t = |c: &str| KfMessage::text("oU", c);
        let img = KfMessage::media("oU", "image", "M1");
        let got = merged(&[t("a"), t("b"), img.clone(), t("c")]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].text_content(), Some("a\nb"));
        assert_eq!(got[1], img);
        assert_eq!(got[2].text_content(), Some("c"));
        // Not past the length WeChat takes.
        let long = "x".repeat(1500);
        assert_eq!(merged(&[t(&long), t(&long)]).len(), 2);
    }

    #[test]
    fn refusals_no_retry_can_help_are_permanent() {
        let wechat = |errcode| {
            DeliverError::Wechat(ApiError::Wechat {
                errcode,
                errmsg: String::new(),
                body: Value::Null,
            })
        };
        assert!(wechat(45015).is_permanent());
        assert!(wechat(40003).is_permanent());
        assert!(!wechat(-1).is_permanent());
        assert!(!wechat(40001).is_permanent());
        assert!(!DeliverError::Wechat(ApiError::Status(502)).is_permanent());
        assert!(!DeliverError::Wechat(ApiError::Transport("reset".into())).is_permanent());
    }
}
