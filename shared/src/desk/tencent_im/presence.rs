//! Which agents are online ("查询账号在线状态", `v4/openim/query_online_status`,
//! cloud.tencent.com/document/product/269/2566): one query for every agent of the account,
//! kept for `FRESH` so that a busy conversation adds no query per message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ImError, Rest};

/// How long an answer is trusted. Long enough that a burst of messages costs one query,
/// short enough that an agent who logs in is found within seconds.
pub(crate) const FRESH: Duration = Duration::from_secs(15);
/// The most UserIDs one query takes.
const MAX_PER_QUERY: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Logged in with the app in front.
    Online,
    /// A mobile app in the background: reachable through offline push.
    PushOnline,
    Offline,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "Online" => Status::Online,
            "PushOnline" => Status::PushOnline,
            _ => Status::Offline,
        }
    }
}

/// Who gets a customer's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick {
    pub agent: String,
    /// Nobody of `agents` is online: the message waits for `agent`.
    pub offline: bool,
}

/// The agent for a customer last served by `last`: the last agent if `Online`, else the
/// next `Online` one of `agents` (in order, after the last one), then the same for
/// `PushOnline`; with nobody reachable, the last (or first) agent, marked offline.
pub(crate) fn pick(last: Option<&str>, agents: &[String], status: impl Fn(&str) -> Status) -> Pick {
    let start = last
        .and_then(|l| agents.iter().position(|a| a == l))
        .unwrap_or(0);
    // The last agent first, then the others in order after them.
    let order = || (0..agents.len()).map(|i| &agents[(start + i) % agents.len()]);
    for wanted in [Status::Online, Status::PushOnline] {
        if let Some(a) = order().find(|a| status(a) == wanted) {
            return Pick {
                agent: a.clone(),
                offline: false,
            };
        }
    }
    Pick {
        agent: agents[start].clone(),
        offline: true,
    }
}

/// The last answer for an account's agents.
#[derive(Default)]
pub(crate) struct Presence {
    known: Mutex<Option<(Instant, HashMap<String, Status>)>>,
}

impl Presence {
    /// Every agent's state: the cached answer while fresh, else one query. A failed query
    /// counts everyone as online (the message goes where it would have gone without this
    /// check, and nobody is told the agents are away when we do not know).
    pub(crate) async fn states(
        &self,
        rest: &Rest,
        agents: &[String],
        deadline: Instant,
    ) -> Result<HashMap<String, Status>, ImError> {
        if let Some((at, states)) = &*self.known.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < FRESH
        {
            return Ok(states.clone());
        }
        let ids: Vec<&String> = agents.iter().take(MAX_PER_QUERY).collect();
        let answer = rest
            .call(
                "openim/query_online_status",
                &json!({ "To_Account": ids }),
                deadline,
            )
            .await?;
        let mut states: HashMap<String, Status> = agents
            .iter()
            .map(|a| (a.clone(), Status::Offline))
            .collect();
        for r in answer
            .get("QueryResult")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (Some(id), Some(s)) = (
                r.get("To_Account").and_then(Value::as_str),
                r.get("Status").and_then(Value::as_str),
            ) else {
                continue;
            };
            if let Some(slot) = states.get_mut(id) {
                *slot = Status::parse(s);
            }
        }
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), states.clone()));
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents() -> Vec<String> {
        ["a1", "a2", "a3"].map(String::from).to_vec()
    }

    fn states(online: &[&str], push: &[&str]) -> impl Fn(&str) -> Status {
        let (online, push): (Vec<String>, Vec<String>) = (
            online.iter().map(|s| s.to_string()).collect(),
            push.iter().map(|s| s.to_string()).collect(),
        );
        move |a| {
            if online.iter().any(|o| o == a) {
                Status::Online
            } else if push.iter().any(|p| p == a) {
                Status::PushOnline
            } else {
                Status::Offline
            }
        }
    }

    #[test]
    fn the_last_agent_keeps_the_customer_while_online() {
        let p = pick(Some("a2"), &agents(), states(&["a1", "a2"], &[]));
        assert_eq!((p.agent.as_str(), p.offline), ("a2", false));
    }

    #[test]
    fn an_offline_last_agent_hands_over_to_the_next_online_one() {
        let p = pick(Some("a2"), &agents(), states(&["a1", "a3"], &[]));
        assert_eq!(p.agent, "a3");
        let p = pick(Some("a3"), &agents(), states(&["a2"], &[]));
        assert_eq!(p.agent, "a2", "the search wraps around");
    }

    #[test]
    fn online_beats_a_backgrounded_app_then_push_online_serves() {
        let p = pick(Some("a1"), &agents(), states(&["a3"], &["a1"]));
        assert_eq!(p.agent, "a3");
        let p = pick(Some("a3"), &agents(), states(&[], &["a1"]));
        assert_eq!((p.agent.as_str(), p.offline), ("a1", false));
    }

    #[test]
    fn nobody_online_waits_for_the_last_or_first_agent() {
        let p = pick(Some("a2"), &agents(), states(&[], &[]));
        assert_eq!((p.agent.as_str(), p.offline), ("a2", true));
        let p = pick(None, &agents(), states(&[], &[]));
        assert_eq!((p.agent.as_str(), p.offline), ("a1", true));
        let p = pick(Some("gone"), &agents(), states(&["a2"], &[]));
        assert_eq!(
            p.agent, "a2",
            "a last agent no longer configured counts as none"
        );
    }
}
