//! The access_token authority: one token per appid in the tokens store, refreshed by
//! exactly one caller at a time across every process (a conditional-write lease), replaced
//! only by compare-and-set, and never fetched while a valid one is stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::{error, info, warn};

use crate::config::{AppConfig, WechatConfig};
use crate::store::{StoreError, TokenStore};
use crate::support::clock::Clock;

use super::error::{ApiError, errcode_of, operator_hint};
use crate::support::outbound;
use crate::support::retry::{backoff, retry};
use crate::support::url::with_query;

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
        http: reqwest::Client,
        cfg: &WechatConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
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
        self.get_or_fetch(app, false).await
    }

    /// `force`: the fetch (if this caller makes it) asks stable_token for a new token.
    async fn get_or_fetch(&self, app: &AppConfig, force: bool) -> Result<String, ApiError> {
        let appid = app.appid.as_str();
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
                return self.fetch_and_store(app, seen, force).await.map(|(t, _)| t);
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
        let invalidated = self
            .store
            .invalidate(&app.appid, failed)
            .await
            .map_err(store_err)?;
        info!(
            appid = %app.appid,
            invalidated,
            "WeChat rejected the access_token; getting a fresh one"
        );
        // stable_token hands back the same token until told to force a new one.
        self.get_or_fetch(app, true).await
    }

    /// For the scheduled refresher: refresh when less than `window` is left.
    pub(crate) async fn refresh_if_due(
        &self,
        app: &AppConfig,
        window: Duration,
    ) -> Result<Refresh, ApiError> {
        let now = self.clock.unix_ms();
        let rec = self.store.get(&app.appid).await.map_err(store_err)?;
        if let Some(r) = &rec
            && !r.token.is_empty()
            && r.expires_at_ms - now > window.as_millis() as i64
        {
            return Ok(Refresh::Fresh {
                expires_in_secs: (r.expires_at_ms - now) / 1000,
            });
        }
        let seen = rec.as_ref().map_or(0, |r| r.version);
        if self.lease(&app.appid, seen, now).await? {
            let (_, expires_in) = self.fetch_and_store(app, seen, false).await?;
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
        app: &AppConfig,
        version: u64,
        force: bool,
    ) -> Result<(String, i64), ApiError> {
        let fetched = self.fetch(app, force).await;
        let (token, expires_in) = match fetched {
            Ok(t) => {
                self.refusals.clear(&app.appid);
                t
            }
            Err(e) => {
                self.refusals.record(&app.appid, &e, self.clock.unix_ms());
                if let Err(se) = self.store.release(&app.appid, &self.owner).await {
                    warn!(appid = %app.appid, error = %se, "could not release the token lease; it lapses by itself");
                }
                return Err(e);
            }
        };
        let expires_at = self.clock.unix_ms() + expires_in * 1000;
        let stored = self
            .store
            .replace(&app.appid, &self.owner, version, &token, expires_at)
            .await
            .map_err(store_err)?;
        if stored {
            info!(appid = %app.appid, expires_in, "stored a new access_token");
            Ok((token, expires_in))
        } else {
            // Our lease lapsed and somebody else stored a newer token: theirs wins.
            warn!(appid = %app.appid, "a newer access_token was stored meanwhile; using it");
            let rec = self.store.get(&app.appid).await.map_err(store_err)?;
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
    async fn fetch(&self, app: &AppConfig, force: bool) -> Result<(String, i64), ApiError> {
        let result = retry(
            3,
            Duration::from_millis(200),
            |_| self.fetch_once(app, force),
            ApiError::is_transient,
            |attempt, e| warn!(appid = %app.appid, attempt, error = %e, "token fetch failed; retrying"),
        )
        .await;
        if let Err(e) = &result {
            if let Some(hint) = operator_hint(e) {
                error!(appid = %app.appid, errcode = e.errcode(), "cannot get an access_token: {hint}");
            } else {
                error!(appid = %app.appid, error = %e, "cannot get an access_token");
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
        self.fetch_once(&probe, false).await.map(|_| ())
    }

    async fn fetch_once(&self, app: &AppConfig, force: bool) -> Result<(String, i64), ApiError> {
        let req = if app.stable_token {
            let body = serde_json::json!({
                "grant_type": "client_credential",
                "appid": app.appid,
                "secret": app.secret.expose(),
                "force_refresh": force,
            });
            self.http
                .post(format!("{}/cgi-bin/stable_token", self.api_base))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        } else {
            let url = with_query(
                &format!("{}/cgi-bin/token", self.api_base),
                &[
                    ("grant_type", "client_credential"),
                    ("appid", app.appid.as_str()),
                    ("secret", app.secret.expose()),
                ],
            );
            self.http.get(url)
        };
        // The URL carries the secret: `outbound::send` reports errors without it.
        let answer = outbound::send(req, self.timeout, outbound::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = answer.status;
        let v = answer.json().ok_or_else(|| {
            if status >= 500 {
                ApiError::Status(status)
            } else {
                ApiError::Garbled(format!("token endpoint answered HTTP {status}, not JSON"))
            }
        })?;
        if let Some(code) = errcode_of(&v) {
            return Err(ApiError::from_body(code, v));
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Garbled("token answer without access_token".into()))?;
        let expires_in = v.get("expires_in").and_then(Value::as_i64).unwrap_or(7200);
        Ok((token.to_owned(), expires_in))
    }
}

fn store_err(e: StoreError) -> ApiError {
    ApiError::Store(e.to_string())
}
