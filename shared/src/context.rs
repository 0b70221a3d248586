//! What handlers, sources and transports need, built once at start-up (Lambda init or
//! local server start): the config, the outbound HTTP client, the stores, the WeChat API,
//! staged-media links, the clock and the accounts' decoded keys. No desks and no handlers:
//! those sit above it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::store::{InboxStore, LastAgents, MediaStore, Stores};
use crate::support::clock::Clock;
use crate::support::outbound::{Fetcher, GuardedFetch, http_client};
use crate::wechat::api::WechatApi;
use crate::wechat::crypto::MsgCrypt;
use crate::wechat::media::{Media, MediaLinks};
use crate::wechat::token::TokenAuthority;

/// An account's decoded EncodingAESKeys: the current one and, during a rotation, the one
/// before it.
pub struct AppCrypto {
    pub current: MsgCrypt,
    pub previous: Option<MsgCrypt>,
}

pub struct Context {
    pub config: Config,
    /// The one pooled HTTP client for outbound calls to configured endpoints.
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
    crypto: HashMap<String, AppCrypto>,
    chatbot_crypto: HashMap<String, MsgCrypt>,
}

impl Context {
    pub fn new(config: Config, stores: Stores, clock: Arc<dyn Clock>) -> Context {
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
        let links = Arc::new(MediaLinks::new(
            stores.media.clone(),
            config.media.public_base_url.clone(),
            config.media.url_key.as_ref(),
            clock.clone(),
        ));
        let mut crypto = HashMap::new();
        let mut chatbot_crypto = HashMap::new();
        for app in &config.apps {
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
            if let Some(c) = app
                .chatbot
                .as_ref()
                .and_then(|cb| MsgCrypt::new(cb.encoding_aes_key.expose()).ok())
            {
                chatbot_crypto.insert(app.appid.clone(), c);
            }
        }
        Context {
            im_media: GuardedFetch::new(fetcher, &config.fetch.im_hosts),
            config,
            http: client,
            inbox: stores.inbox,
            media_store: stores.media,
            links,
            tim_last_agent: Arc::default(),
            wechat,
            clock,
            crypto,
            chatbot_crypto,
        }
    }

    pub fn crypto(&self, appid: &str) -> Option<&AppCrypto> {
        self.crypto.get(appid)
    }

    /// The account's Dialogue Platform key, decoded once.
    pub(crate) fn chatbot_crypt(&self, appid: &str) -> Option<&MsgCrypt> {
        self.chatbot_crypto.get(appid)
    }

    pub fn media(&self) -> Media<'_> {
        self.links.media(&self.wechat)
    }
}
