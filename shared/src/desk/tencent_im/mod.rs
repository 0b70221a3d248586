//! Tencent Cloud IM as the agents' desk (Tencent's WeChat sample, "公众号接入 IM 客服",
//! made production-grade): each customer is an IM account (UserID = openid, named for the
//! agent, kept across unfollows) that messages an online agent through the REST API;
//! agents' replies come back through the after-send callback (`app::handlers::tim`).

pub(crate) mod agent;
pub(crate) mod choice;
mod customer;
pub(crate) mod presence;
mod rest;
pub(crate) mod tuikit;
pub(crate) mod usersig;

pub(crate) use rest::{ImError, Rest};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Desk, DeskError, DeskReply};
use crate::config::{AppConfig, TencentImConfig};
use crate::context::Context;
use crate::store::InboxStore;
use crate::store::conversation::{self, Served};
use crate::wechat::AppKind;
use crate::wechat::api::{Body, WechatApi};
use crate::wechat::media::MediaLinks;
use crate::wechat::message::{Event, Message};

/// Errors that mean "this customer has no IM account yet".
const NOT_IMPORTED: [i64; 3] = [20003, 90012, 70107];
/// A slow store must not cost the customer's message: past this the first agent serves.
const STATE_WITHIN: Duration = Duration::from_millis(500);

pub(crate) struct TencentIm {
    pub rest: Rest,
    cfg: TencentImConfig,
    app: AppConfig,
    api: Arc<WechatApi>,
    links: Arc<MediaLinks>,
    /// Where the agent who last served each customer is kept (shared by every function).
    inbox: Arc<dyn InboxStore>,
    presence: presence::Presence,
    ttl_secs: u64,
}

/// Where a customer's message goes, and whether to tell them nobody is online.
struct Route {
    agent: String,
    tell_offline: bool,
}

impl TencentIm {
    pub(crate) fn new(ctx: &Context, app: &AppConfig, cfg: &TencentImConfig) -> Self {
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
            cfg: cfg.clone(),
            app: app.clone(),
            api: ctx.wechat.clone(),
            links: ctx.links.clone(),
            inbox: ctx.inbox.clone(),
            presence: presence::Presence::default(),
            ttl_secs: ctx.config.callback.inbox_ttl_secs,
        }
    }

    /// Who was serving `openid`; a store that fails or is slow counts as nobody.
    async fn served(&self, openid: &str) -> Served {
        let read = conversation::served(
            self.inbox.as_ref(),
            &self.app.appid,
            openid,
            self.rest.clock.unix_ms(),
        );
        match tokio::time::timeout(STATE_WITHIN, read).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(appid = %self.app.appid, error = %e, "conversation state unavailable; the first online agent serves");
                Served::default()
            }
            Err(_) => {
                warn!(appid = %self.app.appid, "conversation state too slow; the first online agent serves");
                Served::default()
            }
        }
    }

    /// The agent for `openid`'s message: the last one if online, else another online one,
    /// else the last (or first) one, telling the customer once per offline period.
    async fn route(&self, openid: &str, deadline: Instant) -> Route {
        let served = self.served(openid).await;
        let last = served
            .agent
            .as_deref()
            .filter(|a| self.cfg.agents.iter().any(|x| x == a));
        let budget = deadline.min(Instant::now() + Duration::from_millis(1500));
        let pick = match self
            .presence
            .states(&self.rest, &self.cfg.agents, budget)
            .await
        {
            Ok(states) => presence::pick(last, &self.cfg.agents, |a| {
                states.get(a).copied().unwrap_or(presence::Status::Offline)
            }),
            Err(e) => {
                // Not knowing is not "offline": nobody is told the agents are away.
                warn!(appid = %self.app.appid, code = e.code(), error = %e, "agents' online state unknown; the last agent serves");
                presence::Pick {
                    agent: last.unwrap_or(&self.cfg.agents[0]).to_owned(),
                    offline: false,
                }
            }
        };
        let tell_offline = pick.offline && self.cfg.offline_text.is_some() && !served.told_offline;
        // Written only when something changes: a handover, or an offline period's start or end.
        let now_told = pick.offline && (served.told_offline || tell_offline);
        if last != Some(pick.agent.as_str()) || now_told != served.told_offline {
            let next = Served {
                agent: Some(pick.agent.clone()),
                told_offline: now_told,
            };
            let write = conversation::set_served(
                self.inbox.as_ref(),
                &self.app.appid,
                openid,
                &next,
                self.rest.clock.unix_ms(),
                self.ttl_secs,
            );
            if let Err(e) = write.await {
                warn!(appid = %self.app.appid, error = %e, "could not record who serves the customer");
            }
        }
        if pick.offline {
            info!(appid = %self.app.appid, agent = %pick.agent, "no agent online; the message waits for the last agent");
        }
        Route {
            agent: pick.agent,
            tell_offline,
        }
    }

    /// What the agent sees as the customer's name: the account's remark for them where
    /// WeChat has one (it sends no nicknames since 2021-12-27), else a short label with the
    /// account's name and the openid's end.
    async fn nick(&self, openid: &str) -> String {
        let tail: String = openid
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let label = format!(
            "{} customer {tail}",
            self.app.name.as_deref().unwrap_or(&self.app.appid)
        );
        if self.app.kind == AppKind::MiniProgram {
            return label;
        }
        let info = self
            .api
            .call(
                &self.app,
                http::Method::GET,
                "/cgi-bin/user/info",
                &[("openid", openid), ("lang", "zh_CN")],
                Body::None,
            )
            .await;
        match info {
            Ok(v) => v
                .get("remark")
                .and_then(Value::as_str)
                .map(|r| r.trim().chars().take(48).collect::<String>())
                .filter(|r| !r.is_empty())
                .unwrap_or(label),
            Err(e) => {
                warn!(appid = %self.app.appid, error = %e, "no remark for the customer; the IM account gets a label");
                label
            }
        }
    }

    /// Imports the customer with a readable `Nick`, the appid in `profile_field`, and the
    /// record that tells the shared callback which account they belong to.
    async fn import(&self, openid: &str, deadline: Instant) -> Result<(), ImError> {
        let nick = self.nick(openid).await;
        self.rest
            .call(
                "im_open_login_svc/account_import",
                &json!({ "UserID": openid, "Nick": nick }),
                deadline,
            )
            .await?;
        info!(appid = %self.app.appid, "customer imported into Tencent IM");
        let owner = conversation::set_im_owner(
            self.inbox.as_ref(),
            self.rest.sdkappid,
            openid,
            &self.app.appid,
            self.rest.clock.unix_ms(),
        );
        if let Err(e) = owner.await {
            warn!(appid = %self.app.appid, error = %e, "could not record the customer's account; agents' replies use the callback's account");
        }
        if let Some(field) = &self.cfg.profile_field {
            // The account is there: a profile that fails to save costs no message.
            if let Err(e) = self.set_profile(openid, field, deadline).await {
                warn!(appid = %self.app.appid, field = %field, error = %e, "could not set the customer's profile field (does it exist in the IM console?)");
            }
        }
        Ok(())
    }

    async fn set_profile(&self, user: &str, field: &str, deadline: Instant) -> Result<(), ImError> {
        self.rest
            .call(
                "profile/portrait_set",
                &json!({ "From_Account": user, "ProfileItem": [{ "Tag": field, "Value": self.app.appid }] }),
                deadline,
            )
            .await
            .map(|_| ())
    }

    /// Sends the customer's message to its agent (importing the customer first if IM does
    /// not know them); answers whether the customer should be told nobody is online.
    async fn send_to_agent(&self, msg: &Message, deadline: Instant) -> Result<bool, ImError> {
        let openid = msg.from_user.as_str();
        let route = self.route(openid, deadline).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let body = json!({
            "SyncOtherMachine": 2,
            "From_Account": openid,
            "To_Account": route.agent,
            "MsgRandom": rand::random::<u32>(),
            "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
            "CloudCustomData": tuikit::customer_data(&self.app.appid, self.app.name.as_deref()),
            "MsgBody": self.msg_body(msg, left / 2).await,
        });
        match self.rest.call("openim/sendmsg", &body, deadline).await {
            Err(e) if NOT_IMPORTED.contains(&e.code()) => {
                info!(appid = %self.app.appid, code = e.code(), "customer not in Tencent IM yet: importing, then sending again");
                self.import(openid, deadline).await?;
                let mut retry = body;
                retry["MsgRandom"] = json!(rand::random::<u32>());
                self.rest.call("openim/sendmsg", &retry, deadline).await?;
            }
            other => {
                other?;
            }
        }
        Ok(route.tell_offline)
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
                &json!({ "UserID": self.cfg.agents[0] }),
                deadline,
            )
            .await
            .map_err(|e| {
                account_refusal(e.code())
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string())
            })?;
        let Some(field) = &self.cfg.profile_field else {
            return Ok("the REST API accepted the admin's UserSig".into());
        };
        // Reading the field proves it exists without writing anyone's profile.
        self.rest
            .call(
                "profile/portrait_get",
                &json!({ "To_Account": [self.cfg.agents[0]], "TagList": [field] }),
                deadline,
            )
            .await
            .map(|_| format!("the REST API accepted the admin's UserSig; profile field {field} exists"))
            .map_err(|e| format!("profile_field {field} was refused ({e}): create it in the IM console (用户自定义字段) or remove profile_field"))
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
                    &self.cfg.welcome,
                    self.rest.clock.unix_secs(),
                ))
            }
            Some(Event::Unsubscribe) if self.cfg.delete_on_unsubscribe => {
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
            // The agent sees where a Mini Program customer came from (`SessionFrom`).
            Some(Event::UserEnterTempSession { .. }) => {
                self.send_to_agent(msg, deadline).await.map_err(im)?;
                Ok(DeskReply::Empty)
            }
            // Other events say nothing to an agent.
            Some(_) => Ok(DeskReply::Empty),
            None => {
                let offline = self.send_to_agent(msg, deadline).await.map_err(im)?;
                let text = if offline {
                    &self.cfg.offline_text
                } else {
                    &self.cfg.connecting_text
                };
                Ok(passive_or_empty(msg, text, self.rest.clock.unix_secs()))
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
