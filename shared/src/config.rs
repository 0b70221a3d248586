//! The one configuration document (TOML), parsed once into typed structs. Errors name the
//! key and the problem; secrets are wrapped so that they never print.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use crate::support::ids::Appid;
use crate::support::ids::is_identifier;
pub use crate::support::secret::Secret;
pub use crate::wechat::AppKind;
use crate::wechat::crypto::MsgCrypt;

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
    apps: Vec<AppConfig>,
}

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
    /// Present: compatible/safe mode is supported.
    #[serde(default)]
    pub encoding_aes_key: Option<Secret>,
    /// The key before a rotation: pushes encrypted with it are still accepted.
    #[serde(default)]
    pub previous_encoding_aes_key: Option<Secret>,
    /// The keys above, decoded when the config is parsed.
    #[serde(skip)]
    pub ciphers: Option<AppCiphers>,
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
}

/// An account's decoded EncodingAESKeys: the current one and, during a rotation, the one
/// before it.
#[derive(Debug, Clone)]
pub struct AppCiphers {
    pub current: MsgCrypt,
    pub previous: Option<MsgCrypt>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatbotConfig {
    /// The platform APPID (the receive-id of its crypto).
    pub appid: String,
    /// The platform TOKEN (also the last path segment of sendmsg).
    pub token: Secret,
    pub encoding_aes_key: Secret,
    /// The secret path segment of the hand-off route (`/chatbot/{appid}/{key}`), the one
    /// URL the Dialogue Platform holds: a key of its own, so that the platform's URL opens
    /// none of the routes the desk calls. Without it the hand-off takes the account's key
    /// (configs from before the keys were split; doctor fails it).
    #[serde(default)]
    pub gateway_key: Option<Secret>,
    /// The hand-off key before a rotation (while moving off the account's key, that key).
    #[serde(default)]
    pub previous_gateway_key: Option<Secret>,
    /// `encoding_aes_key`, decoded when the config is parsed.
    #[serde(skip)]
    pub cipher: Option<MsgCrypt>,
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
    pub timezone: String,
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
    /// `timezone` as seconds east of UTC, worked out when the config is parsed.
    #[serde(skip)]
    pub offset_secs: i32,
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

fn default_timezone() -> String {
    "Asia/Shanghai".into()
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    pub wechat: WechatConfig,
    pub callback: CallbackConfig,
    pub delivery: DeliveryConfig,
    pub media: MediaConfig,
    pub fetch: FetchConfig,
    pub server: ServerConfig,
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
    pub(crate) fn parse_with_store(
        text: &str,
        store: Option<StoreConfig>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut by_appid = HashMap::new();
        for (i, app) in raw.apps.iter_mut().enumerate() {
            let key = |k: &str| format!("apps[{i}].{k}");
            if app.name.as_deref().is_some_and(|n| {
                n.trim().is_empty() || n.chars().count() > 32 || n.chars().any(char::is_control)
            }) {
                return Err(invalid(
                    key("name"),
                    "must be 1-32 characters, without control characters",
                ));
            }
            if by_appid.insert(app.appid.clone(), i).is_some() {
                return Err(invalid(
                    key("appid"),
                    format!("{} is configured twice", app.appid),
                ));
            }
            if app.token.expose().is_empty() {
                return Err(invalid(key("token"), "must not be empty"));
            }
            // Keys become ready ciphers here, once: nothing after parsing decodes them again.
            let cipher = |name: &str, k: &Option<Secret>| {
                k.as_ref()
                    .map(|k| {
                        MsgCrypt::new(k.expose()).map_err(|e| invalid(key(name), e.to_string()))
                    })
                    .transpose()
            };
            let current = cipher("encoding_aes_key", &app.encoding_aes_key)?;
            let previous = cipher("previous_encoding_aes_key", &app.previous_encoding_aes_key)?;
            app.ciphers = match (current, previous) {
                (Some(current), previous) => Some(AppCiphers { current, previous }),
                (None, Some(_)) => {
                    return Err(invalid(
                        key("previous_encoding_aes_key"),
                        "needs encoding_aes_key as well",
                    ));
                }
                (None, None) => None,
            };
            check_gateway_keys(app, &key)?;
            if app.secret.expose().is_empty() {
                return Err(invalid(key("secret"), "must not be empty"));
            }
            if let Some(cb) = &mut app.chatbot {
                if cb.appid.is_empty() {
                    return Err(invalid(key("chatbot.appid"), "must be the platform APPID"));
                }
                if cb.token.expose().is_empty()
                    || !cb
                        .token
                        .expose()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid(
                        key("chatbot.token"),
                        "must be the platform TOKEN (letters, digits, '-', '_')",
                    ));
                }
                cb.cipher = Some(
                    MsgCrypt::new(cb.encoding_aes_key.expose())
                        .map_err(|e| invalid(key("chatbot.encoding_aes_key"), e.to_string()))?,
                );
                check_url(&cb.api_base).map_err(|p| invalid(key("chatbot.api_base"), p))?;
            }
            match &mut app.desk {
                DeskConfig::Echo(_) => {}
                DeskConfig::UdeskWechat(UdeskWechatConfig { url }) => {
                    check_url(url).map_err(|p| invalid(key("desk.url"), p))?
                }
                DeskConfig::UdeskIm(c) => {
                    check_url(&c.url).map_err(|p| invalid(key("desk.url"), p))?;
                    if c.key.expose().is_empty() {
                        return Err(invalid(key("desk.key"), "must not be empty"));
                    }
                    c.offset_secs = crate::support::localtime::parse_offset(&c.timezone)
                        .ok_or_else(|| {
                            invalid(
                                key("desk.timezone"),
                                "use a fixed offset like \"+08:00\" or Asia/Shanghai",
                            )
                        })?;
                    if !(60..=7 * 24 * 3600).contains(&c.media_url_secs) {
                        return Err(invalid(
                            key("desk.media_url_secs"),
                            "must be between 60 and 604800 (S3's limit)",
                        ));
                    }
                }
                DeskConfig::TencentIm(TencentImConfig {
                    sdkappid,
                    secret_key,
                    admin,
                    agents,
                    api_base,
                    callback_token,
                    profile_field,
                    kf_accounts,
                    ..
                }) => {
                    if profile_field.as_deref().is_some_and(|f| {
                        !f.starts_with("Tag_Profile_Custom_") || !is_identifier(f, 64)
                    }) {
                        return Err(invalid(
                            key("desk.profile_field"),
                            "must be a custom profile field created in the IM console (Tag_Profile_Custom_...)",
                        ));
                    }
                    if let Some(a) = kf_accounts.keys().find(|a| !agents.contains(a)) {
                        return Err(invalid(
                            key(&format!(
                                "desk.kf_accounts.{}",
                                a.chars().take(32).collect::<String>()
                            )),
                            "is not one of desk.agents",
                        ));
                    }
                    if kf_accounts
                        .values()
                        .any(|k| !k.contains('@') || k.len() > 64)
                    {
                        return Err(invalid(
                            key("desk.kf_accounts"),
                            "values must be WeChat customer-service accounts (kf2001@gh_...)",
                        ));
                    }
                    if callback_token.expose().is_empty() {
                        return Err(invalid(
                            key("desk.callback_token"),
                            "must be the IM console's callback authentication token",
                        ));
                    }
                    if *sdkappid == 0 {
                        return Err(invalid(key("desk.sdkappid"), "must be your IM SDKAppID"));
                    }
                    if secret_key.expose().is_empty() {
                        return Err(invalid(key("desk.secret_key"), "must not be empty"));
                    }
                    if admin.is_empty() {
                        return Err(invalid(
                            key("desk.admin"),
                            "must name the App admin account",
                        ));
                    }
                    if agents.is_empty() || agents.iter().any(|a| a.is_empty() || a.len() > 32) {
                        return Err(invalid(
                            key("desk.agents"),
                            "must list at least one agent UserID (at most 32 bytes each)",
                        ));
                    }
                    check_url(api_base).map_err(|p| invalid(key("desk.api_base"), p))?;
                }
            }
        }
        check_url(&raw.wechat.api_base).map_err(|p| invalid("wechat.api_base", p))?;
        if !(500..=30_000).contains(&raw.wechat.timeout_ms) {
            return Err(invalid(
                "wechat.timeout_ms",
                "must be between 500 and 30000",
            ));
        }
        if raw.wechat.token_min_valid_secs < 30 || raw.wechat.token_min_valid_secs > 3600 {
            return Err(invalid(
                "wechat.token_min_valid_secs",
                "must be between 30 and 3600 (tokens live 7200 s)",
            ));
        }
        if raw.wechat.token_refresh_window_secs <= raw.wechat.token_min_valid_secs
            || raw.wechat.token_refresh_window_secs > 6000
        {
            return Err(invalid(
                "wechat.token_refresh_window_secs",
                "must be above token_min_valid_secs and at most 6000",
            ));
        }
        if let Some(proxy) = &raw.wechat.proxy {
            check_proxy(proxy.expose()).map_err(|p| invalid("wechat.proxy", p))?;
        }
        if let Some(u) = &raw.media.public_base_url {
            check_url(u).map_err(|p| invalid("media.public_base_url", p))?;
        }
        if raw.media.presign_secs < 10 || raw.media.presign_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "media.presign_secs",
                "must be between 10 and 604800",
            ));
        }
        let store = store
            .or(raw.store)
            .ok_or_else(|| invalid("store", "missing: add a [store] section"))?;
        match &store {
            StoreConfig::Embedded { path } if path.as_os_str().is_empty() => {
                return Err(invalid("store.path", "must not be empty"));
            }
            StoreConfig::Aws { dedup_table, .. } if dedup_table.is_empty() => {
                return Err(invalid("store.dedup_table", "must not be empty"));
            }
            _ => {}
        }
        for (name, hosts) in [
            ("fetch.im_hosts", &raw.fetch.im_hosts),
            ("fetch.wechat_hosts", &raw.fetch.wechat_hosts),
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
        if !(500..=60_000).contains(&raw.fetch.timeout_ms) {
            return Err(invalid("fetch.timeout_ms", "must be between 500 and 60000"));
        }
        let srv = &raw.server;
        if srv.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                "must be an address and port, like 127.0.0.1:8080 or [::1]:8080",
            ));
        }
        if !(100..=10_000).contains(&srv.header_timeout_ms) {
            return Err(invalid(
                "server.header_timeout_ms",
                "must be between 100 and 10000",
            ));
        }
        if !(100..=300_000).contains(&srv.body_timeout_ms) {
            return Err(invalid(
                "server.body_timeout_ms",
                "must be between 100 and 300000",
            ));
        }
        if !(100..=10_000).contains(&srv.first_line_timeout_ms) {
            return Err(invalid(
                "server.first_line_timeout_ms",
                "must be between 100 and 10000",
            ));
        }
        if !(1..=100_000).contains(&srv.max_connections) {
            return Err(invalid(
                "server.max_connections",
                "must be between 1 and 100000",
            ));
        }
        let cb = &raw.callback;
        if !(100..=4900).contains(&cb.reply_deadline_ms) {
            return Err(invalid(
                "callback.reply_deadline_ms",
                "must be between 100 and 4900 (WeChat gives up after 5000)",
            ));
        }
        if cb.max_body_bytes < 1024 {
            return Err(invalid("callback.max_body_bytes", "must be at least 1024"));
        }
        if cb.inbox_ttl_secs < 60 {
            return Err(invalid(
                "callback.inbox_ttl_secs",
                "must be at least 60 (WeChat retries for about 15 s)",
            ));
        }
        check_windows(&raw.callback, &raw.apps)?;
        if raw
            .server
            .admin_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            return Err(invalid(
                "server.admin_key",
                "must be at least 16 characters (a long random key)",
            ));
        }
        let d = &raw.delivery;
        if d.first_retry_secs == 0 || d.max_retry_secs < d.first_retry_secs {
            return Err(invalid(
                "delivery.first_retry_secs",
                "must be at least 1 and at most delivery.max_retry_secs",
            ));
        }
        if d.max_retry_secs > 43_200 {
            return Err(invalid(
                "delivery.max_retry_secs",
                "must be at most 43200 (SQS holds a message back 12 hours at most)",
            ));
        }
        if d.max_age_secs < d.max_retry_secs || d.concurrency == 0 || d.desk_timeout_ms < 1000 {
            return Err(invalid(
                "delivery",
                "max_age_secs must be at least max_retry_secs, concurrency at least 1, \
                 desk_timeout_ms at least 1000",
            ));
        }
        Ok(Config {
            store,
            wechat: raw.wechat,
            callback: raw.callback,
            delivery: raw.delivery,
            media: raw.media,
            fetch: raw.fetch,
            server: raw.server,
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
    /// `WXDESK_QUEUE_URL`): it replaces the document's.
    pub(crate) fn store_from_env() -> Option<StoreConfig> {
        let var = |k: &str| std::env::var(k).ok().filter(|t| !t.is_empty());
        var("WXDESK_DEDUP_TABLE").map(|dedup_table| StoreConfig::Aws {
            dedup_table,
            tokens_table: var("WXDESK_TOKENS_TABLE"),
            media_bucket: var("WXDESK_MEDIA_BUCKET"),
            queue_url: var("WXDESK_QUEUE_URL"),
        })
    }

    pub fn app(&self, appid: &str) -> Option<&AppConfig> {
        self.by_appid.get(appid).map(|&i| &self.apps[i])
    }
}

impl AppConfig {
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
    pub fn handoff_shares_the_desk_key(&self) -> bool {
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

/// Tencent IM's RequestTime window (the callback handler's).
const TENCENT_SIGN_WINDOW_SECS: u64 = 60;
/// WeChat's Token is 3-32 characters; a shorter token or key is a test's.
const MIN_SECRET_LEN: usize = 3;

/// A request is refused once its timestamp leaves its window, and its dedup entry must
/// outlive the window, or a captured request replays once the entry is gone: so every
/// window is at most half of `inbox_ttl_secs`. A window of 0 (no freshness check at all)
/// and very short secrets are for tests only.
fn check_windows(cb: &CallbackConfig, apps: &[AppConfig]) -> Result<(), ConfigError> {
    let test_only = |key: String, what: &str| {
        Err(invalid(
            key,
            format!(
                "{what} is for tests only: set [callback] insecure_test_settings = true to allow it"
            ),
        ))
    };
    if cb.max_timestamp_skew_secs == 0 && !cb.insecure_test_settings {
        return test_only(
            "callback.max_timestamp_skew_secs".into(),
            "0 (no freshness check)",
        );
    }
    let mut windows = vec![(
        "callback.max_timestamp_skew_secs".to_owned(),
        cb.max_timestamp_skew_secs,
    )];
    for (i, app) in apps.iter().enumerate() {
        let key = |k: &str| format!("apps[{i}].{k}");
        let secrets = [
            ("token", Some(&app.token)),
            ("chatbot.token", app.chatbot.as_ref().map(|c| &c.token)),
            ("desk.key", app.desk.udesk_im().map(|c| &c.key)),
            (
                "desk.callback_token",
                app.desk.tencent_im().map(|c| &c.callback_token),
            ),
        ];
        for (name, secret) in secrets {
            if secret.is_some_and(|s| s.expose().len() < MIN_SECRET_LEN)
                && !cb.insecure_test_settings
            {
                return test_only(key(name), "a token or key shorter than 3 characters");
            }
        }
        match &app.desk {
            DeskConfig::UdeskIm(c) if c.sign_window_secs == 0 && !cb.insecure_test_settings => {
                return test_only(key("desk.sign_window_secs"), "0 (no freshness check)");
            }
            DeskConfig::UdeskIm(c) => {
                windows.push((key("desk.sign_window_secs"), c.sign_window_secs))
            }
            DeskConfig::TencentIm(_) => windows.push((key("desk"), TENCENT_SIGN_WINDOW_SECS)),
            _ => {}
        }
    }
    if let Some((name, w)) = windows.iter().find(|(_, w)| cb.inbox_ttl_secs < 2 * w) {
        return Err(invalid(
            "callback.inbox_ttl_secs",
            format!(
                "must be at least twice {name} ({w} s): a request must not outlive its dedup entry"
            ),
        ));
    }
    Ok(())
}

fn is_gateway_key(k: &str) -> bool {
    k.len() >= 16
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A forward proxy is `http://[user:password@]host:port`: reqwest speaks plain HTTP to it
/// and tunnels https through CONNECT. The value is never quoted (it may hold a password).
fn check_proxy(proxy: &str) -> Result<(), String> {
    let Some(rest) = proxy.strip_prefix("http://") else {
        return Err(
            "must be http://host:port (the proxy itself is spoken to in plain HTTP)".into(),
        );
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ if authority.contains('/') => Err("must be http://host:port, without a path".into()),
        _ => Err("must name a host and a port (http://host:port)".into()),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
        // The URL itself may carry a token (Udesk's channel path): it is not repeated.
        _ => Err("is not an http(s) URL".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_http_host_and_port() {
        assert!(check_proxy("http://10.0.0.5:3128").is_ok());
        assert!(check_proxy("http://user:pa55@proxy.internal:8080/").is_ok());
        assert!(check_proxy("https://proxy:443").is_err());
        assert!(check_proxy("http://proxy").is_err());
        assert!(check_proxy("http://proxy:8080/path").is_err());
        assert!(check_proxy("socks5://proxy:1080").is_err());
        let err = Config::parse(&GOOD.replace(
            "[[apps]]",
            "[wechat]\nproxy = \"http://user:hunter2@proxy\"\n[[apps]]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("wechat.proxy") && !err.contains("hunter2"),
            "{err}"
        );
    }

    const GOOD: &str = r#"
[store]
backend = "embedded"
path = ".wxdesk-data"

[[apps]]
appid = "wx1234"
kind = "official_account"
token = "tok"
encoding_aes_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
secret = "s3cr3t-value"
[apps.desk]
kind = "udesk_wechat"
url = "https://demo.udesk.cn/weixin/abc"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Embedded {
                path: ".wxdesk-data".into()
            }
        );
        assert_eq!(c.wechat.api_base, "https://api.weixin.qq.com");
        let app = c.app("wx1234").unwrap();
        assert_eq!(app.kind, AppKind::OfficialAccount);
        assert!(app.skips_event("LOCATION", &c.callback));
        assert!(!app.skips_event("subscribe", &c.callback));
        assert!(c.app("wx9999").is_none());
        // Secrets never show in Debug output.
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        assert!(!format!("{c:?}").contains("AAAAAAAAAAAA"));
    }

    #[test]
    fn deployments_supply_the_store() {
        let no_store = GOOD.replace(
            "[store]\nbackend = \"embedded\"\npath = \".wxdesk-data\"\n",
            "",
        );
        assert!(
            Config::parse(&no_store)
                .unwrap_err()
                .to_string()
                .contains("[store]")
        );
        let aws = StoreConfig::Aws {
            dedup_table: "t".into(),
            tokens_table: None,
            media_bucket: None,
            queue_url: None,
        };
        assert_eq!(
            Config::parse_with_store(&no_store, Some(aws.clone()))
                .unwrap()
                .store,
            aws
        );
        assert_eq!(
            Config::parse_with_store(GOOD, Some(aws.clone()))
                .unwrap()
                .store,
            aws
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                GOOD.replace("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short"),
                "apps[0].encoding_aes_key",
            ),
            (
                GOOD.replace("https://demo.udesk.cn/weixin/abc", "ftp://x"),
                "apps[0].desk.url",
            ),
            (
                GOOD.replace("token = \"tok\"", "token = \"\""),
                "apps[0].token",
            ),
            (
                GOOD.replace("appid = \"wx1234\"", "appid = \"wx/12\""),
                "line 7: appid: an appid must be 1-64",
            ),
            (
                GOOD.replace("kind = \"official_account\"", "kind = \"shop\""),
                "unknown variant",
            ),
            (GOOD.replace("secret = ", "secrett = "), "secrett"),
            (
                GOOD.replace("backend = \"embedded\"", "backend = \"redis\""),
                "redis",
            ),
            (
                format!("{GOOD}\n[callback]\nreply_deadline_ms = 6000\n"),
                "callback.reply_deadline_ms",
            ),
            (
                format!(
                    "{GOOD}{}",
                    GOOD.split("[[apps]]")
                        .nth(1)
                        .map(|a| format!("[[apps]]{a}"))
                        .unwrap()
                ),
                "configured twice",
            ),
        ];
        // Review 2, §4: the windows and the test-only settings.
        for (extra, needle) in [
            (
                "[callback]\nmax_timestamp_skew_secs = 0\n",
                "insecure_test_settings",
            ),
            (
                "[callback]\ninbox_ttl_secs = 500\n",
                "at least twice callback.max_timestamp_skew_secs",
            ),
        ] {
            let err = Config::parse(&format!("{GOOD}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("callback.") && err.contains(needle), "{err}");
        }
        let short = GOOD.replace("token = \"tok\"", "token = \"t\"");
        let err = Config::parse(&short).unwrap_err().to_string();
        assert!(err.contains("apps[0].token"), "{err}");
        let allowed = format!(
            "{}\n[callback]\ninsecure_test_settings = true\nmax_timestamp_skew_secs = 0\n",
            short
        );
        assert!(Config::parse(&allowed).is_ok());
        let numeric = GOOD.replace("secret = \"s3cr3t-value\"", "secret = 20240501123");
        let err = Config::parse(&numeric).unwrap_err().to_string();
        assert!(
            err.contains("secret") && !err.contains("20240501123"),
            "{err}"
        );
        let url = GOOD.replace(
            "https://demo.udesk.cn/weixin/abc",
            "ftp://demo.udesk.cn/weixin/channel-token-9876",
        );
        let err = Config::parse(&url).unwrap_err().to_string();
        assert!(
            err.contains("apps[0].desk.url") && !err.contains("channel-token-9876"),
            "{err}"
        );
        for (text, needle) in cases {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
            assert!(!err.contains("s3cr3t-value"));
        }
    }
}
