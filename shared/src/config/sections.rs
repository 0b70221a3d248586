//! The install-wide sections of the config (`[store]`, `[wechat]`, `[media]`, `[fetch]`,
//! `[server]`, `[delivery]`, `[callback]`): each with its defaults and its own check.

use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{check_proxy, check_url, within};
use super::{ConfigError, Secret, invalid};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// A local directory; no server, survives restarts.
    Embedded { path: PathBuf },
    /// DynamoDB and S3; endpoints come from the standard AWS_ENDPOINT_URL* variables.
    Aws {
        dedup_table: String,
        #[serde(default)]
        tokens_table: Option<String>,
        #[serde(default)]
        media_bucket: Option<String>,
        /// The SQS FIFO delivery queue (`WXDESK_QUEUE_URL` in Lambda).
        #[serde(default)]
        queue_url: Option<String>,
        /// The account registry's table (`WXDESK_REGISTRY_TABLE`): a third-party
        /// platform's authorized accounts.
        #[serde(default)]
        registry_table: Option<String>,
        /// The KMS key that wraps the data key sealing secrets in the registry
        /// (`WXDESK_KMS_KEY`: its ARN, id or alias).
        #[serde(default)]
        kms_key: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    pub api_base: String,
    /// Each call to WeChat's API gives up after this.
    pub timeout_ms: u64,
    /// Readers use a stored access_token while it has more than this left.
    pub token_min_valid_secs: u64,
    /// The scheduled refresher renews tokens with less than this left (keep it above the
    /// schedule's period plus `token_min_valid_secs`).
    pub token_refresh_window_secs: u64,
    /// An HTTP forward proxy (`http://[user:password@]host:port`) that WeChat API calls,
    /// and only they, go through (CONNECT for https): for installs whose fixed address,
    /// the one on the accounts' IP allow-lists, is a proxy host. A secret: it may carry
    /// the proxy's password.
    pub proxy: Option<Secret>,
    /// The customer-service send quota, as WeChat enforces it (it changes the figures:
    /// the message allowance was 20 until 2023).
    pub quota: QuotaConfig,
}

/// `[wechat.quota]`: what each customer action earns ("客服消息下发规则",
/// developers.weixin.qq.com/doc/offiaccount/Customer_Service/Customer_Service_Messages.html).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// A customer's message: this many sends...
    pub message_sends: u32,
    /// ...within this long.
    pub message_window_secs: u64,
    /// A menu click, follow or QR scan (Official Accounts).
    pub event_sends: u32,
    pub event_window_secs: u64,
    /// A Mini Program customer entering the chat.
    pub enter_chat_sends: u32,
    pub enter_chat_window_secs: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            message_sends: 5,
            message_window_secs: 48 * 3600,
            event_sends: 3,
            event_window_secs: 60,
            enter_chat_sends: 2,
            enter_chat_window_secs: 60,
        }
    }
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            timeout_ms: 4000,
            token_min_valid_secs: 300,
            token_refresh_window_secs: 1500,
            proxy: None,
            quota: QuotaConfig::default(),
        }
    }
}

/// Media staged on its way between WeChat and a desk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Larger downloads are answered with a redirect to a presigned URL (API Gateway and
    /// Lambda cap a response near 6 MB, and base64 makes bytes a third larger).
    pub max_inline_bytes: u64,
    /// Lifetime of those presigned URLs.
    pub presign_secs: u64,
    /// Embedded store only: the address desks reach this server at, for the signed URLs
    /// of staged media (`{public_base_url}/media/...`).
    pub public_base_url: Option<String>,
    /// Embedded store only: the key that signs those URLs (without it, a random key per
    /// start, so URLs die with a restart).
    pub url_key: Option<Secret>,
    /// Embedded store only: the staged-media directory is kept under this many bytes
    /// (oldest first out) by the sweep, which also deletes media past its 3-day life;
    /// 0 = no cap.
    pub max_staged_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_inline_bytes: 4 * 1024 * 1024,
            presign_secs: 300,
            public_base_url: None,
            url_key: None,
            max_staged_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// URLs that come from outside (media in Tencent IM messages, WeChat's `video_url`) are
/// fetched only over https, from these hosts (or their subdomains), never from an internal
/// address, and only up to WeChat's size limit for the media type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Where Tencent IM stores agents' images, voice, video and files.
    pub im_hosts: Vec<String>,
    /// Where WeChat's `media/get` points videos (`video_url`).
    pub wechat_hosts: Vec<String>,
    /// Tests only: also fetch over http and from loopback/private addresses (stand-ins on
    /// 127.0.0.1). Never set this in production.
    pub allow_local_http: bool,
    /// Each fetch gives up after this.
    pub timeout_ms: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            im_hosts: vec!["myqcloud.com".into(), "tim.qq.com".into()],
            wechat_hosts: vec!["qq.com".into(), "qpic.cn".into(), "weixin.qq.com".into()],
            allow_local_http: false,
            timeout_ms: 8000,
        }
    }
}

/// The accounts the store holds rather than the config (authorized shops, and those
/// `wxdesk-local accounts add` adds): each process reads them through a cache, so that a
/// push costs no store read per message and 10,000 accounts cost no start-up time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// A stored account is read again after this: a change (added, disabled, withdrawn, a
    /// new key) is in force in every process within it.
    pub cache_secs: u64,
    /// At most this many accounts (and unknown appids) are cached per process.
    pub cache_entries: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            cache_secs: 30,
            cache_entries: 4096,
        }
    }
}

impl RegistryConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        within("registry.cache_secs", self.cache_secs, 1..=3600)?;
        within(
            "registry.cache_entries",
            self.cache_entries as u64,
            16..=1_000_000,
        )
    }
}

/// The local server's connection limits (Lambda sits behind API Gateway, which has its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the local server listens on (`--listen` overrides it); `wxdesk-local
    /// urls` builds its URLs on it when not given `--base`.
    pub listen: String,
    /// A client must send a request's headers within this, and a kept-alive connection
    /// that sends nothing for this long is closed.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this.
    pub body_timeout_ms: u64,
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold open (0 = no cap); more are closed.
    pub max_connections_per_peer: usize,
    /// Media downloads and uploads one client address may have in flight (0 = no cap);
    /// more are answered 429.
    pub max_media_per_peer: usize,
    /// A request line must arrive within this (the whole head within `header_timeout_ms`,
    /// which also bounds this).
    pub first_line_timeout_ms: u64,
    /// Proxies in front of the server (a TLS proxy on the same host): their connections
    /// are not capped per peer, and their `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Opens `/admin/...` to loopback callers presenting it as a bearer token: how
    /// `doctor` and `outbox` reach the store of a server running on the same config.
    pub admin_key: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_media_per_peer: 8,
            first_line_timeout_ms: 2000,
            trusted_proxies: Vec::new(),
            admin_key: None,
        }
    }
}

/// The outbox: how a delivery that could not finish in its caller's deadline is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The first retry after a failed delivery; each later one waits twice as long...
    pub first_retry_secs: u64,
    /// ...up to this.
    pub max_retry_secs: u64,
    /// After this long since the message arrived, it is `dead` with its last error.
    pub max_age_secs: u64,
    /// A worker's desk call gives up after this (no WeChat deadline applies there).
    pub desk_timeout_ms: u64,
    /// Jobs one local worker runs at once (the Lambda worker: the batch size).
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            first_retry_secs: 5,
            max_retry_secs: 60,
            max_age_secs: 86_400,
            desk_timeout_ms: 20_000,
            concurrency: 16,
        }
    }
}

/// How the push callback behaves; every field has a production default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// Pushes whose `timestamp` is further than this from now are refused; 0 turns the
    /// check off (only for replaying recorded events).
    pub max_timestamp_skew_secs: u64,
    /// The whole handler answers within this, whatever the desk does (WeChat waits 5 s).
    pub reply_deadline_ms: u64,
    pub max_body_bytes: usize,
    /// How long an inbox (dedup) record lives.
    pub inbox_ttl_secs: u64,
    /// Events answered `success` without being forwarded to the desk.
    pub skip_events: Vec<String>,
    /// Allows what only tests and recorded samples need: `max_timestamp_skew_secs = 0`,
    /// a Udesk `sign_window_secs = 0`, tokens and keys shorter than 3 characters.
    pub insecure_test_settings: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            max_timestamp_skew_secs: 300,
            reply_deadline_ms: 4500,
            max_body_bytes: 64 * 1024,
            inbox_ttl_secs: 3 * 24 * 3600,
            skip_events: [
                "LOCATION",
                "VIEW",
                "TEMPLATESENDJOBFINISH",
                "MASSSENDJOBFINISH",
                "kf_create_session",
                "kf_close_session",
                "kf_switch_session",
                "view_miniprogram",
                "subscribe_msg_popup_event",
                "subscribe_msg_change_event",
                "subscribe_msg_sent_event",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            insecure_test_settings: false,
        }
    }
}
impl StoreConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        match self {
            StoreConfig::Embedded { path } if path.as_os_str().is_empty() => {
                Err(invalid("store.path", "must not be empty"))
            }
            StoreConfig::Aws { dedup_table, .. } if dedup_table.is_empty() => {
                Err(invalid("store.dedup_table", "must not be empty"))
            }
            _ => Ok(()),
        }
    }
}

impl WechatConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        check_url(&self.api_base).map_err(|p| invalid("wechat.api_base", p))?;
        within("wechat.timeout_ms", self.timeout_ms, 500..=30_000)?;
        within(
            "wechat.token_min_valid_secs",
            self.token_min_valid_secs,
            30..=3600,
        )
        .map_err(|_| {
            invalid(
                "wechat.token_min_valid_secs",
                "must be between 30 and 3600 (tokens live 7200 s)",
            )
        })?;
        if self.token_refresh_window_secs <= self.token_min_valid_secs
            || self.token_refresh_window_secs > 6000
        {
            return Err(invalid(
                "wechat.token_refresh_window_secs",
                "must be above token_min_valid_secs and at most 6000",
            ));
        }
        if let Some(proxy) = &self.proxy {
            check_proxy(proxy.expose()).map_err(|p| invalid("wechat.proxy", p))?;
        }
        Ok(())
    }
}

impl MediaConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.public_base_url {
            check_url(u).map_err(|p| invalid("media.public_base_url", p))?;
        }
        within("media.presign_secs", self.presign_secs, 10..=7 * 24 * 3600)
    }
}

impl FetchConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (name, hosts) in [
            ("fetch.im_hosts", &self.im_hosts),
            ("fetch.wechat_hosts", &self.wechat_hosts),
        ] {
            if hosts.iter().any(|h| {
                h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            }) {
                return Err(invalid(
                    name,
                    "must list host names (letters, digits, '.', '-')",
                ));
            }
        }
        within("fetch.timeout_ms", self.timeout_ms, 500..=60_000)
    }
}

impl ServerConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                "must be an address and port, like 127.0.0.1:8080 or [::1]:8080",
            ));
        }
        within(
            "server.header_timeout_ms",
            self.header_timeout_ms,
            100..=10_000,
        )?;
        within(
            "server.body_timeout_ms",
            self.body_timeout_ms,
            100..=300_000,
        )?;
        within(
            "server.first_line_timeout_ms",
            self.first_line_timeout_ms,
            100..=10_000,
        )?;
        within("server.max_connections", self.max_connections, 1..=100_000)?;
        if self
            .admin_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            return Err(invalid(
                "server.admin_key",
                "must be at least 16 characters (a long random key)",
            ));
        }
        Ok(())
    }
}

impl CallbackConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        within(
            "callback.reply_deadline_ms",
            self.reply_deadline_ms,
            100..=4900,
        )
        .map_err(|_| {
            invalid(
                "callback.reply_deadline_ms",
                "must be between 100 and 4900 (WeChat gives up after 5000)",
            )
        })?;
        if self.max_body_bytes < 1024 {
            return Err(invalid("callback.max_body_bytes", "must be at least 1024"));
        }
        if self.inbox_ttl_secs < 60 {
            return Err(invalid(
                "callback.inbox_ttl_secs",
                "must be at least 60 (WeChat retries for about 15 s)",
            ));
        }
        Ok(())
    }
}

impl DeliveryConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.first_retry_secs == 0 || self.max_retry_secs < self.first_retry_secs {
            return Err(invalid(
                "delivery.first_retry_secs",
                "must be at least 1 and at most delivery.max_retry_secs",
            ));
        }
        if self.max_retry_secs > 43_200 {
            return Err(invalid(
                "delivery.max_retry_secs",
                "must be at most 43200 (SQS holds a message back 12 hours at most)",
            ));
        }
        if self.max_age_secs < self.max_retry_secs
            || self.concurrency == 0
            || self.desk_timeout_ms < 1000
        {
            return Err(invalid(
                "delivery",
                "max_age_secs must be at least max_retry_secs, concurrency at least 1, \
                 desk_timeout_ms at least 1000",
            ));
        }
        Ok(())
    }
}
