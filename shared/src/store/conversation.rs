//! Conversation state that every function shares through the inbox store (on AWS the
//! tim-callback function writes it and wechat-callback reads it): the agent who last
//! served each customer (and whether they were told that no agent is online), the menu
//! a customer was last offered, and which account each Tencent IM customer belongs to.

use super::{InboxStore, StoreError};
use crate::support::keys;

/// A state record's value, when it holds one.
async fn value(
    inbox: &dyn InboxStore,
    key: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    Ok(inbox
        .get(key, now_ms)
        .await?
        .and_then(|e| e.answer)
        .filter(|v| !v.is_empty()))
}

fn last_agent_key(appid: &str, openid: &str) -> String {
    keys::key(appid, keys::Kind::TimAgent, &[&openid])
}

/// Marks a served record whose customer was told no agent is online (agent UserIDs
/// cannot hold a tab).
const TOLD_OFFLINE: &str = "\toffline";

/// Who serves a customer, as remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Served {
    pub agent: Option<String>,
    /// The customer has been told that no agent is online, since an agent last was.
    pub told_offline: bool,
}

/// Who last served `openid`, if the store remembers.
pub(crate) async fn served(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<Served, StoreError> {
    let value = value(inbox, &last_agent_key(appid, openid), now_ms)
        .await?
        .unwrap_or_default();
    let (agent, told_offline) = match value.strip_suffix(TOLD_OFFLINE) {
        Some(agent) => (agent, true),
        None => (value.as_str(), false),
    };
    Ok(Served {
        agent: (!agent.is_empty()).then(|| agent.to_owned()),
        told_offline,
    })
}

/// Records who serves `openid` and whether they have been told no agent is online.
pub(crate) async fn set_served(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    served: &Served,
    now_ms: i64,
    ttl_secs: u64,
) -> Result<(), StoreError> {
    let agent = served.agent.as_deref().unwrap_or("");
    let flag = if served.told_offline {
        TOLD_OFFLINE
    } else {
        ""
    };
    inbox
        .put_state(
            &last_agent_key(appid, openid),
            appid,
            &format!("{agent}{flag}"),
            now_ms / 1000 + ttl_secs as i64,
        )
        .await
}

/// Records `agent` as the one serving `openid`; returns the agent remembered before.
pub(crate) async fn set_last_agent(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    agent: &str,
    now_ms: i64,
    ttl_secs: u64,
) -> Result<Option<String>, StoreError> {
    let before = served(inbox, appid, openid, now_ms).await?;
    let previous = before.agent.clone();
    // An agent who answers ends an offline period too.
    if previous.as_deref() != Some(agent) || before.told_offline {
        inbox
            .put_state(
                &last_agent_key(appid, openid),
                appid,
                agent,
                now_ms / 1000 + ttl_secs as i64,
            )
            .await?;
    }
    Ok(previous)
}

/// Where a customer's newest queued message is named, while one is queued: a new message
/// from them then queues behind it instead of overtaking it.
fn backlog_key(appid: &str, openid: &str) -> String {
    keys::key(appid, keys::Kind::Backlog, &[&openid])
}

/// Whether an earlier message from `openid` is still queued (pending in the outbox). One
/// read when there is none, the common case.
pub(crate) async fn has_backlog(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let Some(newest) = inbox
        .get(&backlog_key(appid, openid), now_ms)
        .await?
        .and_then(|e| e.answer)
    else {
        return Ok(false);
    };
    // The mark may outlive its message (cleared only by the worker): trust the entry.
    Ok(inbox
        .get(&newest, now_ms)
        .await?
        .is_some_and(|e| e.state == super::EntryState::Pending))
}

/// Names `key` as `openid`'s newest queued message.
pub(crate) async fn set_backlog(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    key: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    inbox
        .put_state(&backlog_key(appid, openid), appid, key, expires_at)
        .await
}

/// Forgets the mark if `key` is still the newest queued message (it has been delivered).
pub(crate) async fn clear_backlog(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    key: &str,
) -> Result<(), StoreError> {
    inbox.remove_if(&backlog_key(appid, openid), key).await
}

fn choice_key(appid: &str, openid: &str) -> String {
    keys::key(appid, keys::Kind::TimChoice, &[&openid])
}

/// The menu `openid` was last offered (the desk's own encoding), while it is open.
pub(crate) async fn open_choice(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    value(inbox, &choice_key(appid, openid), now_ms).await
}

/// Opens a menu for `openid` (replacing any other) until `expires_at` (Unix seconds).
pub(crate) async fn offer_choice(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    menu: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    inbox
        .put_state(&choice_key(appid, openid), appid, menu, expires_at)
        .await
}

/// Closes `menu` once it has been answered (a newer one stays open).
pub(crate) async fn close_choice(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    menu: &str,
) -> Result<(), StoreError> {
    inbox.remove_if(&choice_key(appid, openid), menu).await
}

/// Ends a conversation: the next message goes to whichever agent is online, and no menu
/// stays open.
pub(crate) async fn end(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
) -> Result<(), StoreError> {
    inbox.remove(&last_agent_key(appid, openid)).await?;
    inbox.remove(&choice_key(appid, openid)).await
}

/// Which account a Tencent IM customer (UserID = openid) belongs to: several WeChat
/// accounts can share one IM app, whose one callback URL serves them all.
fn im_owner_key(sdkappid: u64, user_id: &str) -> String {
    keys::im_owner(sdkappid, user_id)
}

/// How long an owner record lasts: IM accounts are kept (`delete_on_unsubscribe` off).
const IM_OWNER_SECS: i64 = 400 * 24 * 3600;

pub(crate) async fn im_owner(
    inbox: &dyn InboxStore,
    sdkappid: u64,
    user_id: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    value(inbox, &im_owner_key(sdkappid, user_id), now_ms).await
}

pub(crate) async fn set_im_owner(
    inbox: &dyn InboxStore,
    sdkappid: u64,
    user_id: &str,
    appid: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    inbox
        .put_state(
            &im_owner_key(sdkappid, user_id),
            appid,
            appid,
            now_ms / 1000 + IM_OWNER_SECS,
        )
        .await
}
