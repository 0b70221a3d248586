//! The application: wiring (the context and the desk registry), the route table and its
//! handlers, and the ways to run them (Lambda, the local server, the doctor, the token
//! refresher). Nothing below this module imports it.

pub mod accounts;
pub mod admin;
pub mod beside;
#[cfg(feature = "local")]
mod conn;
pub mod doctor;
pub mod functions;
pub(crate) mod handlers;
pub mod lambda;
pub mod live;
#[cfg(feature = "local")]
pub mod local;
pub mod outbox_admin;
#[cfg(feature = "local")]
mod outgoing;
pub mod refresher;
pub mod registry_admin;
pub mod routes;
pub mod simulate;
pub mod urls;
pub mod worker;

use std::sync::Arc;

use crate::config::{Config, ConfigError, DeskConfig};
use crate::context::Context;
use crate::desk::Desk;
use crate::desk::echo::Echo;
use crate::desk::tencent_im::TencentIm;
use crate::desk::udesk_im::UdeskIm;
use crate::desk::udesk_wechat::UdeskWechat;
use crate::store::{StoreError, Stores};
use crate::support::clock::{Clock, SystemClock};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("config secret: {0}")]
    Secret(String),
}

/// The context and the accounts with their desks (the config's built once at start-up, the
/// registry's on first use), shared by every request. Reads as its context (`svc.config`,
/// `svc.inbox`, ...).
pub struct Services {
    pub ctx: Context,
    accounts: accounts::Accounts,
    /// The platform's own desk route's account (`[component] gateway_key` with a
    /// `[component.desk]`): takes a shared Tencent IM app's callbacks for every shop.
    platform: Option<Arc<accounts::Account>>,
    /// Kept to build the next services on the same connections (a config reload).
    stores: Stores,
}

impl std::ops::Deref for Services {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl Services {
    /// Builds services on the store the config names.
    pub async fn build(config: Config) -> Result<Services, InitError> {
        Self::build_with(config, None).await
    }

    /// As `build`, on an AWS SDK config already loaded.
    pub(crate) async fn build_with(
        config: Config,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Services, InitError> {
        let stores = Stores::open_with(&config.store, sdk).await?;
        Ok(Self::with_parts(config, stores, Arc::new(SystemClock)))
    }

    pub fn with_parts(config: Config, stores: Stores, clock: Arc<dyn Clock>) -> Services {
        for app in config
            .apps
            .iter()
            .filter(|a| a.handoff_shares_the_desk_key())
        {
            tracing::warn!(
                appid = %app.appid,
                "[apps.chatbot] has no gateway_key: the hand-off route takes the account's gateway_key, which also opens the desk's routes; set one (docs/chatbot.md: Splitting the hand-off key)"
            );
        }
        let ctx = Context::new(config, stores.clone(), clock);
        let accounts = accounts::Accounts::new(&ctx, |app| desk_for(&ctx, app));
        let platform = platform_account(&ctx);
        Services {
            ctx,
            accounts,
            platform,
            stores,
        }
    }

    /// Services for a new config on this one's stores and clock.
    pub(crate) fn rebuild(&self, config: Config) -> Services {
        Self::with_parts(config, self.stores.clone(), self.ctx.clock.clone())
    }

    /// The account `appid` names, in whatever standing: the config's, or the registry's
    /// through the cache; an error while the registry cannot be read (then nothing may be
    /// concluded about the account: try again later).
    pub async fn lookup(
        &self,
        appid: &str,
    ) -> Result<Option<Arc<accounts::Account>>, accounts::Unreadable> {
        let desk = |app: &crate::config::AppConfig| desk_for(&self.ctx, app);
        self.accounts.find(&self.ctx, appid, &desk).await
    }

    /// The account `appid` names, in whatever standing, when it can be read now (for what
    /// may answer "unknown" during a registry outage: doctor, urls, the commands).
    pub async fn account(&self, appid: &str) -> Option<Arc<accounts::Account>> {
        self.lookup(appid).await.ok().flatten()
    }

    /// The account `appid` names while it is served (its routes open).
    pub async fn serving(
        &self,
        appid: &str,
    ) -> Result<Option<Arc<accounts::Account>>, accounts::Unreadable> {
        Ok(self.lookup(appid).await?.filter(|a| a.serves()))
    }

    /// One of WeChat's release-test accounts (`handlers::release`) that the registry does
    /// not hold, served through `platform` while its `release_test` is on: its pushes are
    /// answered by the test's rules and reach no desk (an echo desk stands in the account).
    pub(crate) fn release_test_account(
        &self,
        platform: &str,
        appid: &str,
    ) -> Option<Arc<accounts::Account>> {
        let c = self
            .config
            .component
            .as_ref()
            .filter(|c| c.release_test && c.appid.as_str() == platform)?;
        if !handlers::release::TEST_ACCOUNTS.contains(&appid) {
            return None;
        }
        let desk = DeskConfig::Echo(crate::config::EchoConfig {
            prefix: String::new(),
        });
        // WeChat's test Mini Program is one.
        let kind = (appid == handlers::release::TEST_ACCOUNTS[1])
            .then_some(crate::config::AppKind::MiniProgram);
        let app = crate::config::authorized_account(c, appid, None, kind, desk).ok()?;
        Some(Arc::new(accounts::Account {
            desk: desk_for(&self.ctx, &app),
            app,
            standing: None,
        }))
    }

    /// The platform's own desk route's account, for a request to `/tim/{appid}/...` with
    /// the platform's appid.
    pub(crate) fn platform_account(&self, appid: &str) -> Option<Arc<accounts::Account>> {
        self.platform
            .clone()
            .filter(|a| a.app.appid.as_str() == appid)
    }

    /// A stored account's settings, opened with the data key (cached per process).
    pub(crate) async fn settings_of(
        &self,
        rec: &crate::store::Authorizer,
    ) -> Result<crate::store::AccountSettings, String> {
        self.accounts.settings(&self.ctx, rec).await
    }

    /// How many registry reads this process holds (the cache's bound is
    /// `[registry] cache_entries`).
    pub fn cached_accounts(&self) -> usize {
        self.accounts.cached_len()
    }
}

/// The platform's own desk route's account: its desk `[component.desk]`, its key
/// `[component] gateway_key`. It stands for no WeChat account: what comes through it is
/// sent for the account each customer wrote to.
fn platform_account(ctx: &Context) -> Option<Arc<accounts::Account>> {
    let c = ctx.config.component.as_ref()?;
    let (desk, key) = (c.desk.clone()?, c.gateway_key.clone()?);
    let mut app = crate::config::authorized_account(c, c.appid.as_str(), None, None, desk).ok()?;
    app.gateway_key = Some(key);
    Some(Arc::new(accounts::Account {
        desk: desk_for(ctx, &app),
        app,
        standing: None,
    }))
}

/// The desk registry: the one place a desk kind becomes a connector.
fn desk_for(ctx: &Context, app: &crate::config::AppConfig) -> Arc<dyn Desk> {
    match &app.desk {
        DeskConfig::UdeskWechat(c) => Arc::new(UdeskWechat::new(ctx.http.clone(), c.url.clone())),
        DeskConfig::UdeskIm(c) => Arc::new(UdeskIm::new(ctx, app, c)),
        DeskConfig::TencentIm(c) => Arc::new(TencentIm::new(ctx, app, c)),
        DeskConfig::Echo(c) => Arc::new(Echo::new(c.prefix.clone(), ctx.clock.clone())),
    }
}
