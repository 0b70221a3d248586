//! The access_token authority: one token per appid in the tokens store, refreshed by
//! exactly one caller at a time across every process (a conditional-write lease), replaced
//! only by compare-and-set, and never fetched while a valid one is stored. The same
//! authority keeps a third-party platform's component_access_token (`Grant::Component`,
//! fetched with its newest ticket); `fetch` holds the calls that get either.

mod authorizer;
mod fetch;

pub(crate) use fetch::json_answer;

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{AppConfig, ComponentConfig, WechatConfig};
use crate::store::{RegistryStore, StoreError, Ticket, TokenStore, component_token_key};
use crate::support::clock::Clock;

use super::error::{ApiError, operator_hint};
use crate::support::retry::{backoff, retry};

/// Whose token: an account's (its AppSecret), a platform's (its secret and ticket), or an
/// account a shop authorized the platform to serve (the platform's token and the shop's
/// refresh token).
#[derive(Clone, Copy)]
pub(crate) enum Grant<'a> {
    Account(&'a AppConfig),
    Component(&'a ComponentConfig),
    Authorizer {
        component: &'a ComponentConfig,
        appid: &'a str,
    },
}

impl<'a> Grant<'a> {
    /// An account's grant: a shop's account served through the platform gets its token
    /// from `api_authorizer_token`, any other from its AppSecret.
    pub(crate) fn of(app: &'a AppConfig) -> Grant<'a> {
        match &app.platform {
            Some(component) => Grant::Authorizer {
                component,
                appid: app.appid.as_str(),
            },
            None => Grant::Account(app),
        }
    }

    /// The token record's key in the store (an account's appid as it is: every API call
    /// reads its token, so no copy is made for it).
    fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Grant::Account(app) => app.appid.as_str().into(),
            Grant::Component(c) => component_token_key(c.appid.as_str()).into(),
            // An account's token, whoever fetches it: an appid is in the config or in the
            // registry, never both (`authorize` refuses a configured one).
            Grant::Authorizer { appid, .. } => (*appid).into(),
        }
    }

    /// Its appid, for log lines.
    pub(crate) fn appid(&self) -> &str {
        match self {
            Grant::Account(app) => app.appid.as_str(),
            Grant::Component(c) => c.appid.as_str(),
            Grant::Authorizer { appid, .. } => appid,
        }
    }
}

/// How a refresh went, for the scheduled refresher's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// The stored token has more than the refresh window left.
    Fresh { expires_in_secs: i64 },
    /// This caller fetched and stored a new token.
    Refreshed { expires_in_secs: i64 },
    /// Somebody else holds the lease right now.
    Busy,
}

pub struct TokenAuthority {
    store: Arc<dyn TokenStore>,
    /// Authorized accounts' refresh tokens (sealed).
    registry: Arc<dyn RegistryStore>,
    http: reqwest::Client,
    api_base: String,
    clock: Arc<dyn Clock>,
    /// Identifies this process as a lease owner.
    owner: String,
    /// Readers use a stored token while it has more than this left.
    min_valid_ms: i64,
    lease_ms: i64,
    /// How long a caller waits for somebody else's refresh before giving up.
    wait: Duration,
    timeout: Duration,
    /// Accounts whose last fetch WeChat refused: they fail fast for a while.
    refusals: super::refusals::Refusals,
}

impl TokenAuthority {
    pub fn new(
        store: Arc<dyn TokenStore>,
        registry: Arc<dyn RegistryStore>,
        http: reqwest::Client,
        cfg: &WechatConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            registry,
            http,
            api_base: cfg.api_base.trim_end_matches('/').to_owned(),
            clock,
            owner: crate::store::new_claim_id(),
            min_valid_ms: cfg.token_min_valid_secs as i64 * 1000,
            lease_ms: cfg.timeout_ms as i64 * 2 + 2000,
            wait: Duration::from_millis(cfg.timeout_ms * 2 + 3000),
            timeout: Duration::from_millis(cfg.timeout_ms),
            refusals: Default::default(),
        }
    }

    /// A usable token: the stored one while it has more than the safety margin left, else
    /// a new one fetched by exactly one caller while the others wait for it.
    pub async fn get(&self, app: &AppConfig) -> Result<String, ApiError> {
        self.get_or_fetch(Grant::of(app), false).await
    }

    /// A usable component_access_token for the platform `c`, by the same rules.
    pub(crate) async fn component(&self, c: &ComponentConfig) -> Result<String, ApiError> {
        // Boxed: an authorizer's fetch asks for the platform's token from inside a fetch.
        Box::pin(self.get_or_fetch(Grant::Component(c), false)).await
    }

    /// A usable authorizer_access_token for `appid`, a shop that authorized `c`.
    pub(crate) async fn authorizer(
        &self,
        c: &ComponentConfig,
        appid: &str,
    ) -> Result<String, ApiError> {
        self.get_or_fetch(
            Grant::Authorizer {
                component: c,
                appid,
            },
            false,
        )
        .await
    }

    /// Marks the token stored for `appid` expired, whatever it is: a shop's new
    /// authorization (or its withdrawal) ends the token it had (WeixinCloud/
    /// wxcloudrun-wxcomponent#10: a re-authorized account's old token is refused).
    pub(crate) async fn forget(&self, appid: &str) -> Result<(), StoreError> {
        self.refusals.clear(appid);
        if let Some(r) = self.store.get(appid).await?
            && !r.token.is_empty()
        {
            self.store.invalidate(appid, &r.token).await?;
        }
        Ok(())
    }

    /// Stores a platform's ticket unless a newer one is stored (rule `ticket_put`). A
    /// fetch that failed for want of a ticket is not remembered past a new one.
    pub(crate) async fn put_ticket(
        &self,
        component: &str,
        ticket: &Ticket,
    ) -> Result<bool, StoreError> {
        let stored = self.store.put_ticket(component, ticket).await?;
        if stored {
            self.refusals.clear(&component_token_key(component));
        }
        Ok(stored)
    }

    /// `force`: the fetch (if this caller makes it) asks stable_token for a new token.
    async fn get_or_fetch(&self, grant: Grant<'_>, force: bool) -> Result<String, ApiError> {
        let key = grant.key();
        let appid: &str = &key;
        let started = tokio::time::Instant::now();
        let mut round = 0u32;
        loop {
            let now = self.clock.unix_ms();
            let rec = self.store.get(appid).await.map_err(store_err)?;
            if let Some(r) = &rec
                && !r.token.is_empty()
                && r.expires_at_ms - now > self.min_valid_ms
            {
                return Ok(r.token.clone());
            }
            let seen = rec.as_ref().map_or(0, |r| r.version);
            if self.lease(appid, seen, now).await? {
                return self
                    .fetch_and_store(grant, seen, force)
                    .await
                    .map(|(t, _)| t);
            }
            // Somebody else is refreshing. A token that has not yet expired still works
            // (WeChat keeps the old one valid for 5 minutes after a refresh): use it.
            if let Some(r) = &rec
                && !r.token.is_empty()
                && r.expires_at_ms > now + 1000
            {
                return Ok(r.token.clone());
            }
            if started.elapsed() > self.wait {
                return Err(ApiError::Token(
                    "another caller holds the refresh lease and no token arrived in time".into(),
                ));
            }
            round += 1;
            tokio::time::sleep(backoff(round.min(4), Duration::from_millis(25))).await;
        }
    }

    /// WeChat refused `failed` as invalid or expired: mark it expired (only if it is still
    /// the stored one, so a newer token is never thrown away) and get a fresh one.
    pub(crate) async fn renew_after_rejection(
        &self,
        app: &AppConfig,
        failed: &str,
    ) -> Result<String, ApiError> {
        self.renew(Grant::of(app), failed).await
    }

    /// As `renew_after_rejection`, for a platform's component_access_token.
    pub(crate) async fn renew_component(
        &self,
        c: &ComponentConfig,
        failed: &str,
    ) -> Result<String, ApiError> {
        // Boxed, as `component`: it runs inside an authorizer's fetch.
        Box::pin(self.renew(Grant::Component(c), failed)).await
    }

    async fn renew(&self, grant: Grant<'_>, failed: &str) -> Result<String, ApiError> {
        let invalidated = self
            .store
            .invalidate(&grant.key(), failed)
            .await
            .map_err(store_err)?;
        info!(
            appid = grant.appid(),
            invalidated, "WeChat rejected the access_token; getting a fresh one"
        );
        // stable_token hands back the same token until told to force a new one.
        self.get_or_fetch(grant, true).await
    }

    /// For the scheduled refresher: refresh when less than `window` is left.
    pub(crate) async fn refresh_if_due(
        &self,
        grant: Grant<'_>,
        window: Duration,
    ) -> Result<Refresh, ApiError> {
        let now = self.clock.unix_ms();
        let key = grant.key();
        let rec = self.store.get(&key).await.map_err(store_err)?;
        if let Some(r) = &rec
            && !r.token.is_empty()
            && r.expires_at_ms - now > window.as_millis() as i64
        {
            return Ok(Refresh::Fresh {
                expires_in_secs: (r.expires_at_ms - now) / 1000,
            });
        }
        let seen = rec.as_ref().map_or(0, |r| r.version);
        if self.lease(&key, seen, now).await? {
            let (_, expires_in) = self.fetch_and_store(grant, seen, false).await?;
            Ok(Refresh::Refreshed {
                expires_in_secs: expires_in,
            })
        } else {
            Ok(Refresh::Busy)
        }
    }

    async fn lease(&self, appid: &str, seen: u64, now: i64) -> Result<bool, ApiError> {
        // WeChat refused this account lately: answer that at once instead of asking again.
        if let Some(e) = self.refusals.current(appid, now) {
            return Err(e);
        }
        self.store
            .try_lease(appid, &self.owner, seen, now, now + self.lease_ms)
            .await
            .map_err(store_err)
    }

    /// Holding the lease at `version`: fetch, then compare-and-set. Returns the token and
    /// its lifetime in seconds.
    async fn fetch_and_store(
        &self,
        grant: Grant<'_>,
        version: u64,
        force: bool,
    ) -> Result<(String, i64), ApiError> {
        let (key, appid) = (grant.key(), grant.appid());
        let fetched = self.fetch(grant, force).await;
        let (token, expires_in) = match fetched {
            Ok(t) => {
                self.refusals.clear(&key);
                t
            }
            Err(e) => {
                // A refused refresh token is the registry's to remember (for good), not
                // the few seconds' fail-fast's.
                if e.errcode() != authorizer::REFRESH_REFUSED {
                    self.refusals.record(&key, &e, self.clock.unix_ms());
                }
                if let Err(se) = self.store.release(&key, &self.owner).await {
                    warn!(appid, error = %se, "could not release the token lease; it lapses by itself");
                }
                return Err(e);
            }
        };
        let expires_at = self.clock.unix_ms() + expires_in * 1000;
        let stored = self
            .store
            .replace(&key, &self.owner, version, &token, expires_at)
            .await
            .map_err(store_err)?;
        if stored {
            info!(appid, expires_in, "stored a new access_token");
            Ok((token, expires_in))
        } else {
            // Our lease lapsed and somebody else stored a newer token: theirs wins.
            warn!(appid, "a newer access_token was stored meanwhile; using it");
            let rec = self.store.get(&key).await.map_err(store_err)?;
            match rec {
                Some(r) if !r.token.is_empty() => {
                    Ok((r.token, (r.expires_at_ms - self.clock.unix_ms()) / 1000))
                }
                _ => Ok((token, expires_in)),
            }
        }
    }

    /// One call to `cgi-bin/token` (or `cgi-bin/stable_token`), with bounded retries for
    /// -1 and 5xx. Configuration errors are reported for the operator, never retried.
    async fn fetch(&self, grant: Grant<'_>, force: bool) -> Result<(String, i64), ApiError> {
        let appid = grant.appid();
        let result = retry(
            3,
            Duration::from_millis(200),
            |_| self.fetch_once(grant, force),
            ApiError::is_transient,
            |attempt, e| warn!(appid, attempt, error = %e, "token fetch failed; retrying"),
        )
        .await;
        if let Err(e) = &result {
            if let Some(hint) = operator_hint(e) {
                error!(
                    appid,
                    errcode = e.errcode(),
                    "cannot get an access_token: {hint}"
                );
            } else {
                error!(appid, error = %e, "cannot get an access_token");
            }
        }
        result
    }

    /// Whether WeChat accepts `app`'s AppSecret, asked of `cgi-bin/stable_token` in its
    /// normal mode (`force_refresh` false), which hands back the token in force: the check
    /// invalidates no token a running server uses, as a `cgi-bin/token` call would. Nothing
    /// is stored.
    pub(crate) async fn check_secret(&self, app: &AppConfig) -> Result<(), ApiError> {
        let mut probe = app.clone();
        probe.stable_token = true;
        self.fetch_once(Grant::Account(&probe), false)
            .await
            .map(|_| ())
    }
}

fn store_err(e: StoreError) -> ApiError {
    ApiError::Store(e.to_string())
}
