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
