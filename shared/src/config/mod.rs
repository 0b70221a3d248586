//! The one configuration document (TOML), parsed once into typed values: each section a
//! struct that checks itself, identifiers and keys in validated types (an `Appid`, a
//! decoded `MsgCrypt`, a `Timezone` with its offset), so nothing after parsing re-checks a
//! string. Errors name the key and the problem; secrets are wrapped so that they never
//! print. Every default is written once, in its section's `Default` (or `default_*`) here;
//! `wxdesk.example.toml` and docs/configuration.md are held to them by a test.

mod app;
mod checks;
mod component;
mod desk;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Deserialize;

pub use self::app::{AppCiphers, AppConfig, ChatbotConfig};
pub use self::component::ComponentConfig;
pub use self::desk::{DeskConfig, EchoConfig, TencentImConfig, UdeskImConfig, UdeskWechatConfig};
pub use self::sections::{
    CallbackConfig, DeliveryConfig, FetchConfig, MediaConfig, QuotaConfig, RegistryConfig,
    ServerConfig, StoreConfig, WechatConfig,
};
pub use crate::support::ids::Appid;
pub use crate::support::secret::Secret;
pub use crate::wechat::AppKind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("config: {0}")]
    Syntax(String),
    #[error("config: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "config: set WXDESK_CONFIG_SECRET (a Secrets Manager secret holding the TOML document), WXDESK_CONFIG (the document) or WXDESK_CONFIG_FILE (its path)"
    )]
    NotSet,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: Option<StoreConfig>,
    #[serde(default)]
    wechat: WechatConfig,
    #[serde(default)]
    callback: CallbackConfig,
    #[serde(default)]
    delivery: DeliveryConfig,
    #[serde(default)]
    media: MediaConfig,
    #[serde(default)]
    fetch: FetchConfig,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    registry: RegistryConfig,
    #[serde(default)]
    component: Option<ComponentConfig>,
    #[serde(default)]
    apps: Vec<AppConfig>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    pub wechat: WechatConfig,
    pub callback: CallbackConfig,
    pub delivery: DeliveryConfig,
    pub media: MediaConfig,
    pub fetch: FetchConfig,
    pub server: ServerConfig,
    pub registry: RegistryConfig,
    /// Present: the install is also a third-party platform (`config::component`). Shared:
    /// every shop's account served through it holds this one.
    pub component: Option<std::sync::Arc<ComponentConfig>>,
    pub apps: Vec<AppConfig>,
    /// The document's version: the SHA-256 of its text (what a reload compares, and what
    /// `doctor` compares with a running server's).
    pub version: String,
    by_appid: HashMap<Appid, usize>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_store(text, None)
    }

    /// Parses with `[store]` supplied from outside (deployments name their own tables).
    /// Each section checks itself (its `check`); what spans sections is checked here.
    pub(crate) fn parse_with_store(
        text: &str,
        store: Option<StoreConfig>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut by_appid = HashMap::new();
        for (i, app) in raw.apps.iter().enumerate() {
            let key = |k: &str| format!("apps[{i}].{k}");
            if by_appid.insert(app.appid.clone(), i).is_some() {
                return Err(invalid(
                    key("appid"),
                    format!("{} is configured twice", app.appid),
                ));
            }
            app.check(&key)?;
        }
        raw.wechat.check()?;
        raw.media.check()?;
        raw.fetch.check()?;
        raw.server.check()?;
        raw.callback.check()?;
        raw.delivery.check()?;
        raw.registry.check()?;
        checks::check_windows(&raw.callback, &raw.apps)?;
        if let Some(c) = &raw.component {
            c.check(&raw.apps)?;
        }
        let store = store
            .or(raw.store)
            .ok_or_else(|| invalid("store", "missing: add a [store] section"))?;
        store.check()?;
        Ok(Config {
            store,
            wechat: raw.wechat,
            callback: raw.callback,
            delivery: raw.delivery,
            media: raw.media,
            fetch: raw.fetch,
            server: raw.server,
            registry: raw.registry,
            component: raw.component.map(std::sync::Arc::new),
            apps: raw.apps,
            version: crate::support::hex::sha256_hex(text.as_bytes()),
            by_appid,
        })
    }

    /// Also returns the document as read, so that what runs and what a reload compares
    /// against come from the same read.
    pub fn load_file(path: &str) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok((Self::parse(&text)?, text))
    }

    /// The `[store]` template.yaml gives a function through its environment
    /// (`WXDESK_DEDUP_TABLE`, `WXDESK_TOKENS_TABLE`, `WXDESK_MEDIA_BUCKET`,
    /// `WXDESK_QUEUE_URL`, `WXDESK_REGISTRY_TABLE`, `WXDESK_KMS_KEY`): it replaces the
    /// document's.
    pub(crate) fn store_from_env() -> Option<StoreConfig> {
        let var = |k: &str| std::env::var(k).ok().filter(|t| !t.is_empty());
        var("WXDESK_DEDUP_TABLE").map(|dedup_table| StoreConfig::Aws {
            dedup_table,
            tokens_table: var("WXDESK_TOKENS_TABLE"),
            media_bucket: var("WXDESK_MEDIA_BUCKET"),
            queue_url: var("WXDESK_QUEUE_URL"),
            registry_table: var("WXDESK_REGISTRY_TABLE"),
            kms_key: var("WXDESK_KMS_KEY"),
        })
    }

    pub fn app(&self, appid: &str) -> Option<&AppConfig> {
        self.by_appid.get(appid).map(|&i| &self.apps[i])
    }
}

/// An account's `[[apps]]` entry kept in the registry (TOML, as `wxdesk-local accounts
/// add` took it), checked as the config's are; `desk` replaces its desk.
pub(crate) fn account_from_toml(
    text: &str,
    desk: Option<DeskConfig>,
    callback: &CallbackConfig,
) -> Result<AppConfig, ConfigError> {
    let mut app: AppConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    if let Some(d) = desk {
        app.desk = d;
    }
    app.check(&|k| format!("account.{k}"))?;
    // What spans sections holds for a stored account as for a configured one: no token
    // or window that only tests may use, no request window past its dedup entry.
    checks::check_windows_named(callback, std::slice::from_ref(&app), &|_, k| {
        format!("account.{k}")
    })?;
    Ok(app)
}

/// A desk kept in the registry (`[apps.desk]`'s TOML), checked.
pub(crate) fn desk_from_toml(text: &str) -> Result<DeskConfig, ConfigError> {
    let desk: DeskConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    desk.check(&|k| format!("desk.{k}"))?;
    Ok(desk)
}

/// A shop's account served through the platform `c`: the platform's token and key (WeChat
/// encrypts every authorized account's pushes with them), tokens from
/// `api_authorizer_token`, no AppSecret.
pub(crate) fn authorized_account(
    c: &std::sync::Arc<ComponentConfig>,
    appid: &str,
    name: Option<String>,
    kind: Option<AppKind>,
    desk: DeskConfig,
) -> Result<AppConfig, ConfigError> {
    let appid = Appid::parse(appid).map_err(|e| invalid("appid", e.to_string()))?;
    Ok(AppConfig {
        appid,
        name,
        kind: kind.unwrap_or(AppKind::OfficialAccount),
        token: c.token.clone(),
        encoding_aes_key: Some(c.encoding_aes_key.clone()),
        previous_encoding_aes_key: None,
        allow_plaintext: false,
        secret: Secret::new(String::new()),
        stable_token: false,
        gateway_key: None,
        previous_gateway_key: None,
        skip_events: None,
        desk,
        chatbot: None,
        platform: Some(c.clone()),
    })
}

/// toml's own Display quotes the offending source line, which may hold a secret, and its
/// message may quote the value itself ("invalid type: integer `20240501`, expected a
/// string" for a numeric token): report the line, the key on it and the problem, never a
/// value.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let problem = without_values(e.message());
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else {
        return ConfigError::Syntax(problem);
    };
    let line = text[..at].matches('\n').count() + 1;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..at]
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && k.len() <= 64);
    ConfigError::Syntax(match key {
        Some(k) => format!("line {line}: {k}: {problem}"),
        None => format!("line {line}: {problem}"),
    })
}

/// A parser's message with the values it quotes (in backticks or double quotes) left out;
/// the names it quotes (an unknown field or variant, the variants expected) stay.
fn without_values(message: &str) -> String {
    let quotes_a_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| message.starts_with(p));
    if !quotes_a_value {
        return message.to_owned();
    }
    // The first quoted item is the value; an "expected …" list after it is ours.
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['`', '"']) {
        let q = rest.as_bytes()[i] as char;
        let Some(len) = rest[i + 1..].find(q) else {
            break;
        };
        out.push_str(&rest[..i]);
        out.push_str("(value not shown)");
        rest = &rest[i + 1 + len + 1..];
        if let Some(tail) = rest.find("expected") {
            out.push_str(&rest[..tail]);
            rest = &rest[tail..];
            break;
        }
    }
    out.push_str(rest);
    out
}
