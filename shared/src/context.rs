//! What handlers, sources and transports need, built once at start-up (Lambda init or
//! local server start): the config, the outbound HTTP client, the stores, the WeChat API,
//! staged-media links, the clock and the accounts' decoded keys. No desks and no handlers:
//! those sit above it.

use std::sync::Arc;

use crate::config::Config;
use crate::store::queue::JobQueue;
use crate::store::{InboxStore, MediaStore, RegistryStore, Stores};
use crate::support::clock::Clock;
use crate::support::outbound::{Fetcher, GuardedFetch, http_client};
use crate::wechat::api::WechatApi;
use crate::wechat::media::{Media, MediaLinks};
use crate::wechat::platform::PlatformApi;
use crate::wechat::token::TokenAuthority;

pub struct Context {
    pub config: Config,
    /// The one pooled HTTP client for outbound calls to configured endpoints.
    pub http: reqwest::Client,
    pub inbox: Arc<dyn InboxStore>,
    pub media_store: Arc<dyn MediaStore>,
    /// Where deliveries that could not finish in their caller's deadline wait.
    pub queue: Arc<dyn JobQueue>,
    /// URLs desks can open for staged media.
    pub links: Arc<MediaLinks>,
    /// Agents' media URLs from Tencent IM messages, fetched under `[fetch] im_hosts`.
    pub im_media: GuardedFetch,
    pub wechat: Arc<WechatApi>,
    /// The third-party platform's own calls (`[component]`), on the same token authority.
    pub platform: Arc<PlatformApi>,
    /// The account registry (a platform's authorized accounts).
    pub registry: Arc<dyn RegistryStore>,
    /// Counts this process's own registry changes: a cached account read before the
    /// latest one is read again (other processes see a change within `[registry]
    /// cache_secs`).
    registry_epoch: std::sync::atomic::AtomicU64,
    pub clock: Arc<dyn Clock>,
}

impl Context {
    pub fn new(config: Config, stores: Stores, clock: Arc<dyn Clock>) -> Context {
        let client = http_client();
        let fetcher = Arc::new(Fetcher::new(
            config.fetch.allow_local_http,
            std::time::Duration::from_millis(config.fetch.timeout_ms),
        ));
        // WeChat's calls alone go through `[wechat] proxy` (validated when the config was
        // read; a client that still cannot be built goes direct, loudly).
        let wechat_client = crate::support::outbound::wechat_client(config.wechat.proxy.as_ref())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "WeChat calls go direct, not through the proxy");
                client.clone()
            });
        let tokens = Arc::new(TokenAuthority::new(
            stores.tokens,
            stores.registry.clone(),
            wechat_client.clone(),
            &config.wechat,
            clock.clone(),
        ));
        let platform = Arc::new(PlatformApi::new(
            wechat_client.clone(),
            &config.wechat,
            tokens.clone(),
        ));
        let wechat = Arc::new(WechatApi::new(
            wechat_client,
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
        Context {
            im_media: GuardedFetch::new(fetcher, &config.fetch.im_hosts),
            config,
            http: client,
            inbox: stores.inbox,
            media_store: stores.media,
            queue: stores.queue,
            links,
            wechat,
            platform,
            registry: stores.registry,
            registry_epoch: Default::default(),
            clock,
        }
    }

    /// This process changed the registry (an authorization, a withdrawal, an operator's
    /// change): its cached accounts are read again.
    pub(crate) fn registry_changed(&self) {
        self.registry_epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// How many registry changes this process has made.
    pub(crate) fn registry_epoch(&self) -> u64 {
        self.registry_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn media(&self) -> Media<'_> {
        self.links.media(&self.wechat)
    }
}
