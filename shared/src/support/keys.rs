//! The inbox key grammar, built and taken apart here and nowhere else. A key is
//! `{appid}#{kind}#{part}#…`: the appid first (every key is an account's; the outbox index
//! partitions by it), then what the entry is, then the parts that make it unique. A queue
//! group is `{appid}#{in|out}#{openid}`: one customer, one direction.
//!
//! Parts are identifiers (checked by `support::ids`), digests or numbers, none of which
//! holds a `#`; only a key's last part (an event's EventKey) may, and nothing reads past
//! the kind.

use std::fmt::Display;

/// What an inbox entry is: its key's second segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A customer's message, by MsgId + FromUserName + CreateTime.
    Msg,
    /// A customer's event, by FromUserName + CreateTime + Event (+ EventKey).
    Evt,
    /// A message type without MsgId, by FromUserName + CreateTime + MsgType.
    Typ,
    /// A Dialogue Platform hand-off callback.
    Chatbot,
    /// An agent's message from Tencent IM, by MsgKey.
    Tim,
    /// A plain-mode signature bound to the push it came with (replay defence).
    Sig,
    /// State: the agent who served a customer last.
    TimAgent,
    /// State: the oldest customer message still owed to the desk.
    Backlog,
    /// State: the menu a customer may answer.
    TimChoice,
    /// State: a customer's send allowance.
    Quota,
    /// State: the Dialogue Platform conversation of a customer.
    ChatbotConversation,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Msg => "msg",
            Kind::Evt => "evt",
            Kind::Typ => "typ",
            Kind::Chatbot => "chatbot",
            Kind::Tim => "tim",
            Kind::Sig => "sig",
            Kind::TimAgent => "tim-agent",
            Kind::Backlog => "backlog",
            Kind::TimChoice => "tim-choice",
            Kind::Quota => "quota",
            Kind::ChatbotConversation => "chatbot-conversation",
        }
    }
}

/// The key of an entry of `kind` for the account `appid`, made unique by `parts`.
pub(crate) fn key(appid: &str, kind: Kind, parts: &[&dyn Display]) -> String {
    use std::fmt::Write;
    let mut k = format!("{appid}#{}", kind.tag());
    for p in parts {
        let _ = write!(k, "#{p}");
    }
    k
}

/// The account a key (or a queue group) belongs to.
pub(crate) fn appid_of(key: &str) -> &str {
    key.split_once('#').map_or(key, |(appid, _)| appid)
}

/// A queue group's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A customer's messages to the desk.
    In,
    /// The agents' messages to a customer.
    Out,
}

impl Direction {
    fn tag(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The queue group of one customer's messages in one direction.
pub(crate) fn group(appid: &str, direction: Direction, openid: &str) -> String {
    format!("{appid}#{}#{openid}", direction.tag())
}

/// A group's direction and customer.
pub(crate) fn group_parts(group: &str) -> Option<(Direction, &str)> {
    let mut parts = group.splitn(3, '#');
    let (_, tag, openid) = (parts.next()?, parts.next()?, parts.next()?);
    let direction = [Direction::In, Direction::Out]
        .into_iter()
        .find(|d| d.tag() == tag)?;
    Some((direction, openid))
}

/// The record of which account a Tencent IM UserID belongs to: keyed by the IM app, not an
/// account (several accounts can share one IM app).
pub(crate) fn im_owner(sdkappid: u64, user_id: &str) -> String {
    format!("tim#{sdkappid}#owner#{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_and_taken_apart_by_one_grammar() {
        let k = key("wxA", Kind::Msg, &[&42u64, &"oUser", &1_700_000_000i64]);
        assert_eq!(k, "wxA#msg#42#oUser#1700000000");
        assert_eq!(appid_of(&k), "wxA");
        assert_eq!(key("wxA", Kind::TimAgent, &[&"oU"]), "wxA#tim-agent#oU");
        let g = group("wxA", Direction::Out, "oU");
        assert_eq!(group_parts(&g), Some((Direction::Out, "oU")));
        assert_eq!(appid_of(&g), "wxA");
        assert_eq!(group_parts("wxA#sideways#oU"), None);
        assert_eq!(appid_of("no-hash"), "no-hash");
    }
}
