//! One account (`[[apps]]`): its WeChat credentials, gateway keys and the Dialogue
//! Platform in front of it; the desk is `desk.rs`'s.

use serde::Deserialize;

use super::checks::{check_url, is_gateway_key};
use super::{AppKind, Appid, CallbackConfig, ConfigError, DeskConfig, Secret, invalid};
use crate::wechat::crypto::MsgCrypt;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub appid: Appid,
    /// The account's display name (a shop's name): what agents see beside a customer whose
    /// WeChat name is unknown (Tencent IM's `Nick`), and which account a message came to.
    #[serde(default)]
    pub name: Option<String>,
    pub kind: AppKind,
    pub token: Secret,
    /// Present: compatible/safe mode is supported. Decoded as the document is read.
    #[serde(default)]
    pub encoding_aes_key: Option<MsgCrypt>,
    /// The key before a rotation: pushes encrypted with it are still accepted.
    #[serde(default)]
    pub previous_encoding_aes_key: Option<MsgCrypt>,
    /// With `encoding_aes_key`, WeChat sends only encrypted pushes, and a plaintext push
    /// (whose signature does not cover its body) is refused. `true` accepts plaintext too,
    /// for the minutes of switching modes in the console.
    #[serde(default)]
    pub allow_plaintext: bool,
    pub secret: Secret,
    /// Get tokens from `cgi-bin/stable_token` instead of `cgi-bin/token`.
    #[serde(default)]
    pub stable_token: bool,
    /// The secret path segment of the routes this account's desk calls (the Udesk
    /// simulated domain, `/udesk-im`, `/tim`, `/chatbot/{appid}/{key}/event`); without it
    /// they are closed for this account.
    #[serde(default)]
    pub gateway_key: Option<Secret>,
    /// The key before a rotation: still accepted wherever `gateway_key` is.
    #[serde(default)]
    pub previous_gateway_key: Option<Secret>,
    /// Overrides `[callback] skip_events` for this account.
    #[serde(default)]
    pub skip_events: Option<Vec<String>>,
    pub desk: DeskConfig,
    /// The WeChat Dialogue Open Platform in front of this account's customers: agents'
    /// messages then go through its sendmsg API instead of custom send.
    #[serde(default)]
    pub chatbot: Option<ChatbotConfig>,
    /// Set only for a shop's account served through the install's third-party platform
    /// (built from the registry, never read from a document): its token and key are the
    /// platform's, its receive-id the platform's appid, its access token
    /// `api_authorizer_token`'s.
    #[serde(skip)]
    pub(crate) platform: Option<std::sync::Arc<super::ComponentConfig>>,
}

/// An account's decoded EncodingAESKeys: the current one and, during a rotation, the one
/// before it.
#[derive(Debug, Clone, Copy)]
pub struct AppCiphers<'a> {
    pub current: &'a MsgCrypt,
    pub previous: Option<&'a MsgCrypt>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatbotConfig {
    /// The platform APPID (the receive-id of its crypto).
    pub appid: String,
    /// The platform TOKEN (also the last path segment of sendmsg).
    pub token: Secret,
    /// Decoded as the document is read.
    pub encoding_aes_key: MsgCrypt,
    /// The secret path segment of the hand-off route (`/chatbot/{appid}/{key}`), the one
    /// URL the Dialogue Platform holds: a key of its own, so that the platform's URL opens
    /// none of the routes the desk calls. Without it the hand-off takes the account's key
    /// (configs from before the keys were split; doctor fails it).
    #[serde(default)]
    pub gateway_key: Option<Secret>,
    /// The hand-off key before a rotation (while moving off the account's key, that key).
    #[serde(default)]
    pub previous_gateway_key: Option<Secret>,
    /// 0 OA/MP template, 5 OA menu H5, 6 MP plugin, 7 web H5, ...
    #[serde(default)]
    pub channel: u32,
    #[serde(default = "default_chatbot_api_base")]
    pub api_base: String,
    #[serde(default)]
    pub kefuname: Option<String>,
    #[serde(default)]
    pub kefuavatar: Option<String>,
    /// The category or skill shown with agents' messages (sendmsg's `ans_node_name`) when
    /// the desk names none.
    #[serde(default)]
    pub ans_node_name: Option<String>,
    /// An agent message with exactly this text is sent as `waiterQualityEvaluate`, with
    /// `satisfaction_prompt` as what the customer reads.
    #[serde(default = "default_satisfaction_text")]
    pub satisfaction_text: String,
    #[serde(default = "default_satisfaction_prompt")]
    pub satisfaction_prompt: String,
    /// A conversation with no agent message for this long starts again (the next agent
    /// message carries `waiterEnter`).
    #[serde(default = "default_conversation_secs")]
    pub conversation_secs: u64,
}

fn default_chatbot_api_base() -> String {
    "https://chatbot.weixin.qq.com".into()
}
fn default_satisfaction_text() -> String {
    "#rate".into()
}
fn default_satisfaction_prompt() -> String {
    "How satisfied are you with this conversation?".into()
}
fn default_conversation_secs() -> u64 {
    2 * 3600
}

impl ChatbotConfig {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.appid.is_empty() {
            return Err(invalid(key("chatbot.appid"), "must be the platform APPID"));
        }
        let token = self.token.expose();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                key("chatbot.token"),
                "must be the platform TOKEN (letters, digits, '-', '_')",
            ));
        }
        check_url(&self.api_base).map_err(|p| invalid(key("chatbot.api_base"), p))
    }
}

impl AppConfig {
    /// The appid its encrypted messages carry (WeChat's receive-id): the platform's for a
    /// shop's account served through it, its own otherwise ("消息加解密接入指引",
    /// developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/Message_encryption_and_decryption.html).
    pub(crate) fn receive_id(&self) -> &Appid {
        self.platform.as_ref().map_or(&self.appid, |c| &c.appid)
    }

    /// The account's ciphers; none in plain mode.
    pub(crate) fn ciphers(&self) -> Option<AppCiphers<'_>> {
        self.encoding_aes_key.as_ref().map(|current| AppCiphers {
            current,
            previous: self.previous_encoding_aes_key.as_ref(),
        })
    }

    /// The account's own checks, its chatbot's and its desk's; `key` names a key of it.
    pub(super) fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.name.as_deref().is_some_and(|n| {
            n.trim().is_empty() || n.chars().count() > 32 || n.chars().any(char::is_control)
        }) {
            return Err(invalid(
                key("name"),
                "must be 1-32 characters, without control characters",
            ));
        }
        if self.token.expose().is_empty() {
            return Err(invalid(key("token"), "must not be empty"));
        }
        if self.encoding_aes_key.is_none() && self.previous_encoding_aes_key.is_some() {
            return Err(invalid(
                key("previous_encoding_aes_key"),
                "needs encoding_aes_key as well",
            ));
        }
        check_gateway_keys(self, key)?;
        if self.secret.expose().is_empty() {
            return Err(invalid(key("secret"), "must not be empty"));
        }
        if let Some(cb) = &self.chatbot {
            cb.check(key)?;
        }
        self.desk.check(key)
    }
    /// Whether a path carries the key of the routes this account's desk calls (its
    /// `gateway_key` or `previous_gateway_key`, compared in constant time). An account
    /// without one has those routes closed.
    pub(crate) fn desk_key_matches(&self, presented: Option<&Secret>) -> bool {
        key_matches(
            [
                self.gateway_key.as_ref(),
                self.previous_gateway_key.as_ref(),
            ],
            presented,
        )
    }

    /// Whether a path carries the key of the Dialogue Platform's hand-off route: the
    /// chatbot's own keys, or (a config from before they were split) the account's.
    pub(crate) fn handoff_key_matches(&self, presented: Option<&Secret>) -> bool {
        match &self.chatbot {
            Some(cb) if cb.gateway_key.is_some() => key_matches(
                [cb.gateway_key.as_ref(), cb.previous_gateway_key.as_ref()],
                presented,
            ),
            Some(_) => self.desk_key_matches(presented),
            None => false,
        }
    }

    /// Every gateway key the account has, by config key.
    pub(crate) fn gateway_keys(&self) -> Vec<(&'static str, &Secret)> {
        let cb = self.chatbot.as_ref();
        [
            ("gateway_key", self.gateway_key.as_ref()),
            ("previous_gateway_key", self.previous_gateway_key.as_ref()),
            (
                "chatbot.gateway_key",
                cb.and_then(|c| c.gateway_key.as_ref()),
            ),
            (
                "chatbot.previous_gateway_key",
                cb.and_then(|c| c.previous_gateway_key.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(name, k)| Some((name, k?)))
        .collect()
    }

    /// A chatbot account whose hand-off route still takes the account's key.
    pub(crate) fn handoff_shares_the_desk_key(&self) -> bool {
        self.chatbot
            .as_ref()
            .is_some_and(|c| c.gateway_key.is_none())
    }

    pub(crate) fn skips_event(&self, event: &str, global: &CallbackConfig) -> bool {
        self.skip_events
            .as_ref()
            .unwrap_or(&global.skip_events)
            .iter()
            .any(|e| e == event)
    }
}

/// Whether `presented` is one of `keys`; every key is compared (in constant time), so the
/// answer's timing does not tell which one matched.
fn key_matches(keys: [Option<&Secret>; 2], presented: Option<&Secret>) -> bool {
    let Some(given) = presented else {
        return false;
    };
    keys.iter()
        .flatten()
        .fold(false, |hit, k| k.matches(given.expose()) | hit)
}

/// A gateway key is a URL path segment and a password: 16+ URL-safe characters. The
/// hand-off key (the Dialogue Platform's) must differ from the account's (its desk's),
/// else one party's URL opens the other's routes; its previous key may be the account's,
/// while the platform is moved to the new hand-off URL.
fn check_gateway_keys(app: &AppConfig, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let chatbot = app.chatbot.as_ref();
    for (name, k) in app.gateway_keys() {
        if !is_gateway_key(k.expose()) {
            return Err(invalid(
                key(name),
                "must be at least 16 letters, digits, '-' or '_' (it is a URL path segment and a password)",
            ));
        }
    }
    let handoff = chatbot.and_then(|c| c.gateway_key.as_ref());
    let desk_keys = [app.gateway_key.as_ref(), app.previous_gateway_key.as_ref()];
    if handoff.is_some_and(|h| desk_keys.contains(&Some(h))) {
        return Err(invalid(
            key("chatbot.gateway_key"),
            "must differ from the account's gateway_key and previous_gateway_key (the platform's URL must not open the desk's routes)",
        ));
    }
    Ok(())
}
