//! Everything a handler needs, built once at start-up (Lambda init or local server start)
//! and shared by every request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, DeskConfig, StoreConfig};
use crate::desk::tencent_im::{LastAgents, TencentIm};
use crate::desk::{Desk, udesk_im::UdeskIm, udesk_wechat::UdeskWechat};
use crate::outbound::{Fetcher, GuardedFetch, http_client};
use crate::store::aws::{AwsStore, AwsTokens, S3Media};
use crate::store::embedded::{EmbeddedMedia, EmbeddedStore};
use crate::store::{InboxStore, MediaStore, NotConfigured, StoreError, TokenStore};
use crate::support::clock::{Clock, SystemClock};
use crate::wechat::api::WechatApi;
use crate::wechat::crypto::MsgCrypt;
use crate::wechat::media::{Media, MediaLinks};
use crate::wechat::token::TokenAuthority;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// An account's decoded EncodingAESKeys: the current one and, during a rotation, the one
/// before it.
pub struct AppCrypto {
    pub current: MsgCrypt,
    pub previous: Option<MsgCrypt>,
}

/// The three stores, from one backend.
#[derive(Clone)]
pub struct Stores {
    pub inbox: Arc<dyn InboxStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub media: Arc<dyn MediaStore>,
}

impl Stores {
    pub async fn open(config: &StoreConfig) -> Result<Stores, StoreError> {
        Ok(match config {
            StoreConfig::Embedded { path } => {
                let db = Arc::new(EmbeddedStore::open(path)?);
                Stores {
                    inbox: db.clone(),
                    tokens: db,
                    media: Arc::new(EmbeddedMedia::open(&path.join("media"))?),
                }
            }
            StoreConfig::Aws {
                dedup_table,
                tokens_table,
                media_bucket,
            } => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                Stores {
                    inbox: Arc::new(AwsStore::new(ddb.clone(), dedup_table)),
                    tokens: match tokens_table {
                        Some(t) => Arc::new(AwsTokens::new(ddb, t)),
                        None => Arc::new(NotConfigured("store.tokens_table (WXDESK_TOKENS_TABLE)")),
                    },
                    media: match media_bucket {
                        Some(b) => {
                            // Custom endpoints (moto, MinIO, LocalStack) want path-style
                            // URLs; AWS itself takes virtual-hosted ones.
                            let custom = std::env::var_os("AWS_ENDPOINT_URL_S3")
                                .or_else(|| std::env::var_os("AWS_ENDPOINT_URL"))
                                .is_some();
                            let s3 = aws_sdk_s3::Client::from_conf(
                                aws_sdk_s3::config::Builder::from(&sdk)
                                    .force_path_style(custom)
                                    .build(),
                            );
                            Arc::new(S3Media::new(s3, b))
                        }
                        None => Arc::new(NotConfigured("store.media_bucket (WXDESK_MEDIA_BUCKET)")),
                    },
                }
            }
        })
    }
}

pub struct Services {
    pub config: Config,
    /// The one pooled HTTP client for outbound calls.
    pub http: reqwest::Client,
    pub inbox: Arc<dyn InboxStore>,
    pub media_store: Arc<dyn MediaStore>,
    /// URLs desks can open for staged media.
    pub links: Arc<MediaLinks>,
    /// Tencent IM: the agent who last served each customer, as this process saw it.
    pub tim_last_agent: Arc<LastAgents>,
    /// Agents' media URLs from Tencent IM messages, fetched under `[fetch] im_hosts`.
    pub im_media: GuardedFetch,
    pub wechat: Arc<WechatApi>,
    pub clock: Arc<dyn Clock>,
    desks: HashMap<String, Arc<dyn Desk>>,
    crypto: HashMap<String, AppCrypto>,
    chatbot_crypto: HashMap<String, MsgCrypt>,
}

impl Services {
    /// Builds services on the store the config names.
    pub async fn build(config: Config) -> Result<Services, InitError> {
        let stores = Stores::open(&config.store).await?;
        Ok(Self::with_parts(config, stores, Arc::new(SystemClock)))
    }

    /// Lambda init: config from WXDESK_CONFIG / WXDESK_CONFIG_FILE.
    pub async fn from_env() -> Result<Services, InitError> {
        Self::build(Config::from_env()?).await
    }

    pub fn with_parts(config: Config, stores: Stores, clock: Arc<dyn Clock>) -> Services {
        let client = http_client();
        let fetcher = Arc::new(Fetcher::new(
            config.fetch.allow_local_http,
            std::time::Duration::from_millis(config.fetch.timeout_ms),
        ));
        let tokens = Arc::new(TokenAuthority::new(
            stores.tokens,
            client.clone(),
            &config.wechat,
            clock.clone(),
        ));
        let wechat = Arc::new(WechatApi::new(
            client.clone(),
            &config.wechat,
            tokens,
            GuardedFetch::new(fetcher.clone(), &config.fetch.wechat_hosts),
        ));
        let tim_last_agent: Arc<LastAgents> = Arc::default();
        let im_media = GuardedFetch::new(fetcher, &config.fetch.im_hosts);
        let links = Arc::new(MediaLinks::new(
            stores.media.clone(),
            config.media.public_base_url.clone(),
            config.media.url_key.as_ref(),
        ));
        let mut desks: HashMap<String, Arc<dyn Desk>> = HashMap::new();
        let mut crypto = HashMap::new();
        let mut chatbot_crypto = HashMap::new();
        for app in &config.apps {
            let desk: Arc<dyn Desk> = match &app.desk {
                DeskConfig::UdeskWechat { url } => {
                    Arc::new(UdeskWechat::new(client.clone(), url.clone()))
                }
                DeskConfig::TencentIm { .. } => {
                    match TencentIm::new(
                        client.clone(),
                        app,
                        wechat.clone(),
                        links.clone(),
                        tim_last_agent.clone(),
                    ) {
                        Some(d) => Arc::new(d),
                        None => continue,
                    }
                }
                DeskConfig::UdeskIm { .. } => {
                    match UdeskIm::new(client.clone(), app, wechat.clone(), links.clone()) {
                        Some(d) => Arc::new(d),
                        None => continue,
                    }
                }
            };
            desks.insert(app.appid.clone(), desk);
            if let Some(c) = app
                .chatbot
                .as_ref()
                .and_then(|cb| MsgCrypt::new(cb.encoding_aes_key.expose()).ok())
            {
                chatbot_crypto.insert(app.appid.clone(), c);
            }
            // Keys were validated when the config was parsed.
            if let Some(current) = app
                .encoding_aes_key
                .as_ref()
                .and_then(|k| MsgCrypt::new(k.expose()).ok())
            {
                let previous = app
                    .previous_encoding_aes_key
                    .as_ref()
                    .and_then(|k| MsgCrypt::new(k.expose()).ok());
                crypto.insert(app.appid.clone(), AppCrypto { current, previous });
            }
        }
        Services {
            config,
            http: client,
            inbox: stores.inbox,
            media_store: stores.media,
            links,
            tim_last_agent,
            im_media,
            wechat,
            clock,
            desks,
            crypto,
            chatbot_crypto,
        }
    }

    pub fn desk(&self, appid: &str) -> Option<&Arc<dyn Desk>> {
        self.desks.get(appid)
    }

    pub fn crypto(&self, appid: &str) -> Option<&AppCrypto> {
        self.crypto.get(appid)
    }

    /// The account's Dialogue Platform key, decoded once.
    pub fn chatbot_crypt(&self, appid: &str) -> Option<&MsgCrypt> {
        self.chatbot_crypto.get(appid)
    }

    pub fn media(&self) -> Media<'_> {
        Media {
            api: &self.wechat,
            store: self.media_store.as_ref(),
        }
    }
}
