//! WeChat's customer-service send quota, counted per customer in the inbox store.
//!
//! "客服消息下发规则" (developers.weixin.qq.com/doc/offiaccount/Customer_Service/
//! Customer_Service_Messages.html; for Mini Programs the "发送客服消息" page): a customer's
//! action earns sends — a message 5 within 48 h; a menu click (click, scancode events), a
//! follow or a QR scan 3 within a minute; a Mini Program customer entering the chat 2
//! within a minute. Allowances do not add up: each action resets the count to its own.
//! Past the count WeChat answers 45047, past the window 45015.
//!
//! WeChat stays the judge (it knows of actions we never see: a payment grants 48 h
//! without limit), so a send the count thinks is over budget is still tried once and
//! WeChat's answer is the verdict. The count decides how to spend what is left: an agent
//! message folds what cannot go separately into one text, and a desk's notice never takes
//! the last send from the agent.

use crate::config::{AppKind, QuotaConfig};
use crate::store::{InboxStore, StateSwap, StoreError};
use crate::wechat::message::{Event, Message};

/// A customer action that earns sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Message,
    /// A menu click: the CLICK and scancode push events.
    Click,
    Follow,
    Scan,
    /// A Mini Program customer entering the customer-service chat.
    EnterChat,
}

impl Action {
    /// The action a push is, if it earns sends for this kind of account.
    pub(crate) fn of(msg: &Message, kind: AppKind) -> Option<Action> {
        let Some(event) = msg.event() else {
            return Some(Action::Message);
        };
        match (kind, event) {
            (AppKind::OfficialAccount, Event::Subscribe { .. }) => Some(Action::Follow),
            (AppKind::OfficialAccount, Event::Scan { .. }) => Some(Action::Scan),
            (AppKind::OfficialAccount, Event::Click { .. }) => Some(Action::Click),
            (AppKind::OfficialAccount, Event::Other { event })
                if matches!(event.as_str(), "scancode_push" | "scancode_waitmsg") =>
            {
                Some(Action::Click)
            }
            (AppKind::MiniProgram, Event::UserEnterTempSession { .. }) => Some(Action::EnterChat),
            _ => None,
        }
    }

    /// (sends, window in seconds) under `cfg`.
    fn grant(self, cfg: &QuotaConfig) -> (u32, u64) {
        match self {
            Action::Message => (cfg.message_sends, cfg.message_window_secs),
            Action::Click | Action::Follow | Action::Scan => {
                (cfg.event_sends, cfg.event_window_secs)
            }
            Action::EnterChat => (cfg.enter_chat_sends, cfg.enter_chat_window_secs),
        }
    }
}

/// What a customer may still be sent, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub left: u32,
    pub until_ms: i64,
}

impl Allowance {
    fn encode(self) -> String {
        format!("q1:{}:{}", self.left, self.until_ms)
    }

    fn decode(s: &str) -> Option<Allowance> {
        let mut it = s.strip_prefix("q1:")?.split(':');
        let left = it.next()?.parse().ok()?;
        let until_ms = it.next()?.parse().ok()?;
        Some(Allowance { left, until_ms })
    }

    /// Sends left at `now_ms`: none once the window has closed.
    pub fn at(self, now_ms: i64) -> u32 {
        if now_ms >= self.until_ms {
            0
        } else {
            self.left
        }
    }
}

fn key(appid: &str, openid: &str) -> String {
    crate::support::keys::key(appid, crate::support::keys::Kind::Quota, &[&openid])
}

/// The record outlives its window by this, so that "window closed" is known a while.
const KEEP_AFTER_SECS: i64 = 24 * 3600;

/// The customer acted: their allowance is reset to what the action earns. One
/// unconditional write (the push path's only addition).
pub async fn grant(
    inbox: &dyn InboxStore,
    cfg: &QuotaConfig,
    appid: &str,
    openid: &str,
    action: Action,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (left, window) = action.grant(cfg);
    let a = Allowance {
        left,
        until_ms: now_ms + window as i64 * 1000,
    };
    let expires_at = a.until_ms / 1000 + KEEP_AFTER_SECS;
    inbox
        .put_state(&key(appid, openid), appid, &a.encode(), expires_at)
        .await
}

/// The customer's allowance, or None when wxdesk has seen no action of theirs (WeChat
/// alone knows then).
pub async fn current(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<Option<Allowance>, StoreError> {
    Ok(inbox
        .get(&key(appid, openid), now_ms)
        .await?
        .and_then(|e| e.answer)
        .and_then(|v| Allowance::decode(&v)))
}

/// What a spend found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// One send spent; this many are left.
    Spent { left: u32 },
    /// The count says none is left (the send is still tried: WeChat is the judge).
    Over,
    /// No record: nothing to count.
    Unknown,
}

/// Spends one send: a conditional write of the count less one, read again and retried
/// when another sender (another Lambda instance, the worker) spent meanwhile.
pub async fn spend(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<Spent, StoreError> {
    let key = key(appid, openid);
    for _ in 0..16 {
        let Some(held) = inbox.get(&key, now_ms).await?.and_then(|e| e.answer) else {
            return Ok(Spent::Unknown);
        };
        let Some(a) = Allowance::decode(&held) else {
            return Ok(Spent::Unknown);
        };
        if a.at(now_ms) == 0 {
            return Ok(Spent::Over);
        }
        let after = Allowance {
            left: a.left - 1,
            ..a
        };
        let swap = StateSwap {
            key: &key,
            appid,
            expected: Some(&held),
            value: &after.encode(),
            expires_at: a.until_ms / 1000 + KEEP_AFTER_SECS,
            now_ms,
        };
        if inbox.swap_state(&swap).await? {
            return Ok(Spent::Spent { left: after.left });
        }
    }
    // Sixteen lost races in a row: let WeChat count.
    Ok(Spent::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_round_trip_and_close() {
        let a = Allowance {
            left: 5,
            until_ms: 1_000,
        };
        assert_eq!(Allowance::decode(&a.encode()), Some(a));
        assert_eq!(a.at(999), 5);
        assert_eq!(a.at(1_000), 0);
        assert_eq!(Allowance::decode("q1:x:1"), None);
        assert_eq!(Allowance::decode("open"), None);
    }

    #[test]
    fn actions_from_pushes() {
        let push = |body: &str| {
            Message::parse(&format!("<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>{body}</xml>")).unwrap()
        };
        let oa = AppKind::OfficialAccount;
        let text = push("<MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId>");
        assert_eq!(Action::of(&text, oa), Some(Action::Message));
        let click = push("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>k</EventKey>");
        assert_eq!(Action::of(&click, oa), Some(Action::Click));
        let follow = push("<MsgType>event</MsgType><Event>subscribe</Event>");
        assert_eq!(Action::of(&follow, oa), Some(Action::Follow));
        let view = push("<MsgType>event</MsgType><Event>VIEW</Event><EventKey>u</EventKey>");
        assert_eq!(Action::of(&view, oa), None);
        let enter = push(
            "<MsgType>event</MsgType><Event>user_enter_tempsession</Event><SessionFrom>x</SessionFrom>",
        );
        assert_eq!(
            Action::of(&enter, AppKind::MiniProgram),
            Some(Action::EnterChat)
        );
        let cfg = QuotaConfig::default();
        assert_eq!(Action::Message.grant(&cfg), (5, 48 * 3600));
        assert_eq!(Action::Follow.grant(&cfg), (3, 60));
        assert_eq!(Action::EnterChat.grant(&cfg), (2, 60));
    }
}
