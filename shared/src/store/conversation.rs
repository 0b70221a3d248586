//! Conversation state that every function shares through the inbox store (on AWS the
//! tim-callback function writes it and wechat-callback reads it): the agent who last
//! served each customer, with the inbox's TTL.

use super::{InboxStore, StoreError};

fn last_agent_key(appid: &str, openid: &str) -> String {
    format!("{appid}#tim-agent#{openid}")
}

/// The agent who last served `openid`, if the store remembers one.
pub async fn last_agent(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    Ok(inbox
        .get(&last_agent_key(appid, openid), now_ms)
        .await?
        .and_then(|e| e.answer)
        .filter(|a| !a.is_empty()))
}

/// Records `agent` as the one serving `openid`; returns the agent remembered before.
pub async fn set_last_agent(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    agent: &str,
    now_ms: i64,
    ttl_secs: u64,
) -> Result<Option<String>, StoreError> {
    let previous = last_agent(inbox, appid, openid, now_ms).await?;
    if previous.as_deref() != Some(agent) {
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
    format!("{appid}#backlog#{openid}")
}

/// Whether an earlier message from `openid` is still queued (pending in the outbox). One
/// read when there is none, the common case.
pub async fn has_backlog(
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
pub async fn set_backlog(
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
pub async fn clear_backlog(
    inbox: &dyn InboxStore,
    appid: &str,
    openid: &str,
    key: &str,
) -> Result<(), StoreError> {
    inbox.remove_if(&backlog_key(appid, openid), key).await
}
