//! The account's desk (`[apps.desk]`): one struct per desk kind, with its defaults and
//! its checks.

use std::collections::HashMap;

use serde::Deserialize;

use super::checks::check_url;
use super::{ConfigError, Secret, invalid};
use crate::support::ids::is_identifier;
use crate::support::localtime::Timezone;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeskConfig {
    /// Udesk's "simulated WeChat middleware" channel: WeChat XML in, passive reply out.
    UdeskWechat(UdeskWechatConfig),
    /// Udesk's message interface (`im_callback`): signed XML in, a status JSON out; agents
    /// answer through `POST /udesk-im/{appid}/{gateway_key}`.
    UdeskIm(UdeskImConfig),
    /// Tencent Cloud IM: customers become IM accounts (UserID = openid) and talk to agent
    /// accounts; agents' messages come back through the after-send callback
    /// `/tim/{appid}/{gateway_key}`.
    TencentIm(TencentImConfig),
    /// No desk: answers each text with a passive reply (`{prefix}{text}`), for trying
    /// wxdesk out and checking a deployment end to end (`wxdesk-local simulate`).
    Echo(EchoConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    #[serde(default = "default_echo_prefix")]
    pub prefix: String,
}

fn default_echo_prefix() -> String {
    "echo: ".into()
}

impl DeskConfig {
    pub fn udesk_im(&self) -> Option<&UdeskImConfig> {
        match self {
            DeskConfig::UdeskIm(c) => Some(c),
            _ => None,
        }
    }

    pub fn tencent_im(&self) -> Option<&TencentImConfig> {
        match self {
            DeskConfig::TencentIm(c) => Some(c),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdeskWechatConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdeskImConfig {
    pub url: String,
    /// The KEY of the message push server address.
    pub key: Secret,
    /// The zone of Udesk's `YYYYMMDDHHmmss` timestamps: `Asia/Shanghai`, `+08:00`, ...
    #[serde(default = "default_timezone")]
    pub timezone: Timezone,
    /// Pushes to `/udesk-im/{appid}` whose timestamp is further than this from now are
    /// refused; 0 turns the check off (only for replaying recorded events).
    #[serde(default = "default_sign_window")]
    pub sign_window_secs: u64,
    /// How long the media URLs given to agents stay valid.
    #[serde(default = "default_media_url_secs")]
    pub media_url_secs: u64,
    /// Shown to a customer waiting in the queue; `{turn}` is the position.
    #[serde(default = "default_queueing_text")]
    pub queueing_text: String,
    #[serde(default = "default_offline_text")]
    pub offline_text: String,
    /// Events forwarded to Udesk as a text message with this wording; events not
    /// listed are not forwarded.
    #[serde(default = "default_event_texts")]
    pub event_texts: HashMap<String, String>,
    /// What the customer reads when Udesk answers `status: unknown` (its message
    /// interface's "unknown error").
    #[serde(default = "default_unknown_text")]
    pub unknown_text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentImConfig {
    pub sdkappid: u64,
    pub secret_key: Secret,
    /// The App admin identifier used for REST calls.
    pub admin: String,
    /// Agent accounts: customer messages go to the one who last served the customer,
    /// else the first.
    pub agents: Vec<String>,
    #[serde(default = "default_tim_api_base")]
    pub api_base: String,
    /// The console's callback authentication token (required: without it anyone who
    /// knows the public SdkAppid could speak for an agent).
    pub callback_token: Secret,
    /// Passive reply to a new follower.
    #[serde(default)]
    pub welcome: Option<String>,
    /// Passive reply to each customer message (e.g. "Connecting you to an agent...");
    /// without it the customer gets `success`.
    #[serde(default)]
    pub connecting_text: Option<String>,
    /// Delete a customer's IM account when they unfollow. Off by default: on Tencent IM's
    /// paid editions a deleted UserID cannot be imported again for 3 months (70399), so a
    /// customer who follows again could not reach an agent, and the account's
    /// conversations and profile go with it ("删除账号", cloud.tencent.com/document/
    /// product/269/36443).
    #[serde(default)]
    pub delete_on_unsubscribe: bool,
    /// A custom profile field (`Tag_Profile_Custom_…`, created in the IM console) that gets
    /// the customer's appid on import, for desks that filter customers by account.
    #[serde(default)]
    pub profile_field: Option<String>,
    /// Sent to a customer once per period in which none of `agents` is online (it counts
    /// against WeChat's send allowance); none: nothing is sent.
    #[serde(default)]
    pub offline_text: Option<String>,
    /// Agent UserID → WeChat customer-service account (`kf2001@gh_…`): the customer sees
    /// that agent's name and avatar (custom send's `customservice.kf_account`).
    #[serde(default)]
    pub kf_accounts: HashMap<String, String>,
}

fn default_tim_api_base() -> String {
    "https://console.tim.qq.com".into()
}

fn default_timezone() -> Timezone {
    Timezone::try_from("Asia/Shanghai".to_owned()).expect("a zone parse_offset knows")
}
fn default_sign_window() -> u64 {
    300
}
fn default_media_url_secs() -> u64 {
    24 * 3600
}
fn default_queueing_text() -> String {
    "You are number {turn} in the queue. An agent will be with you shortly.".into()
}
fn default_offline_text() -> String {
    "Our agents are offline right now. Leave us a message and we will reply as soon as we can."
        .into()
}
fn default_unknown_text() -> String {
    "Sorry, your message could not reach an agent right now. Please try again in a moment.".into()
}
fn default_event_texts() -> HashMap<String, String> {
    [
        ("subscribe", "[The customer followed the account]"),
        ("unsubscribe", "[The customer unfollowed the account]"),
        ("user_enter_tempsession", "[The customer opened the chat]"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl DeskConfig {
    pub(super) fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        match self {
            DeskConfig::Echo(_) => Ok(()),
            DeskConfig::UdeskWechat(UdeskWechatConfig { url }) => {
                check_url(url).map_err(|p| invalid(key("desk.url"), p))
            }
            DeskConfig::UdeskIm(c) => c.check(key),
            DeskConfig::TencentIm(c) => c.check(key),
        }
    }
}

impl UdeskImConfig {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        check_url(&self.url).map_err(|p| invalid(key("desk.url"), p))?;
        if self.key.expose().is_empty() {
            return Err(invalid(key("desk.key"), "must not be empty"));
        }
        if !(60..=7 * 24 * 3600).contains(&self.media_url_secs) {
            return Err(invalid(
                key("desk.media_url_secs"),
                "must be between 60 and 604800 (S3's limit)",
            ));
        }
        Ok(())
    }
}

impl TencentImConfig {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self
            .profile_field
            .as_deref()
            .is_some_and(|f| !f.starts_with("Tag_Profile_Custom_") || !is_identifier(f, 64))
        {
            return Err(invalid(
                key("desk.profile_field"),
                "must be a custom profile field created in the IM console (Tag_Profile_Custom_...)",
            ));
        }
        if let Some(a) = self.kf_accounts.keys().find(|a| !self.agents.contains(a)) {
            return Err(invalid(
                key(&format!(
                    "desk.kf_accounts.{}",
                    a.chars().take(32).collect::<String>()
                )),
                "is not one of desk.agents",
            ));
        }
        if self
            .kf_accounts
            .values()
            .any(|k| !k.contains('@') || k.len() > 64)
        {
            return Err(invalid(
                key("desk.kf_accounts"),
                "values must be WeChat customer-service accounts (kf2001@gh_...)",
            ));
        }
        if self.callback_token.expose().is_empty() {
            return Err(invalid(
                key("desk.callback_token"),
                "must be the IM console's callback authentication token",
            ));
        }
        if self.sdkappid == 0 {
            return Err(invalid(key("desk.sdkappid"), "must be your IM SDKAppID"));
        }
        if self.secret_key.expose().is_empty() {
            return Err(invalid(key("desk.secret_key"), "must not be empty"));
        }
        if self.admin.is_empty() {
            return Err(invalid(
                key("desk.admin"),
                "must name the App admin account",
            ));
        }
        if self.agents.is_empty() || self.agents.iter().any(|a| a.is_empty() || a.len() > 32) {
            return Err(invalid(
                key("desk.agents"),
                "must list at least one agent UserID (at most 32 bytes each)",
            ));
        }
        check_url(&self.api_base).map_err(|p| invalid(key("desk.api_base"), p))
    }
}
