//! Every account a request or a job can name, wherever it is kept: the config's `[[apps]]`
//! (built once, at start-up: a few hundred at most, the config secret's size) and the
//! registry's (shops that authorized the platform, accounts `wxdesk-local accounts add`
//! added), read on first use through a cache of bounded age and size. So 10,000 stored
//! accounts cost a Lambda nothing at init, a push costs one registry read per account per
//! `[registry] cache_secs`, and a change made anywhere is in force everywhere within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

use crate::config::{AppConfig, Appid, Secret};
use crate::context::Context;
use crate::desk::Desk;
use crate::store::{AccountSettings, Authorizer, Standing};
use crate::support::throttle::log_refusal;

/// How long a registry read may take on a request's path (a push has 5 s in all).
const READ_WITHIN: Duration = Duration::from_millis(1500);

/// An account and its desk.
pub struct Account {
    pub app: AppConfig,
    pub desk: Arc<dyn Desk>,
    /// None: the config's. Some: a stored account's standing.
    pub standing: Option<Standing>,
}

impl Account {
    /// Whether its routes are open and its outbox delivers: a config account always; a
    /// stored one while authorized (withdrawn, refused or disabled ones are closed).
    pub fn serves(&self) -> bool {
        self.why_closed().is_none()
    }

    /// Why it is closed, in words an agent reads (None: it is served).
    pub fn why_closed(&self) -> Option<&'static str> {
        self.standing.and_then(Standing::why_closed)
    }
}

/// The registry could not be read in time (logged where it happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// One cache slot: the account (None: none is stored under that appid) and when it was
/// read.
struct Cached {
    account: Option<Arc<Account>>,
    read_at_ms: i64,
    /// The process's registry epoch when it was read (`Context::registry_changed`).
    epoch: u64,
}

pub(crate) struct Accounts {
    configured: HashMap<Appid, Arc<Account>>,
    cache: Mutex<HashMap<String, Cached>>,
    max_age_ms: i64,
    capacity: usize,
}

impl Accounts {
    pub(crate) fn new(ctx: &Context, desk_for: impl Fn(&AppConfig) -> Arc<dyn Desk>) -> Self {
        let configured = ctx
            .config
            .apps
            .iter()
            .map(|app| {
                let account = Account {
                    app: app.clone(),
                    desk: desk_for(app),
                    standing: None,
                };
                (app.appid.clone(), Arc::new(account))
            })
            .collect();
        Self {
            configured,
            cache: Mutex::new(HashMap::new()),
            max_age_ms: ctx.config.registry.cache_secs as i64 * 1000,
            capacity: ctx.config.registry.cache_entries,
        }
    }

    /// The account `appid` names, in whatever standing (the outbox tells a closed
    /// account's desk what it could not deliver); None when there is none. An error when
    /// the registry cannot be read now: not the same as no account (the caller tries
    /// again later, and must not treat the account as gone).
    pub(crate) async fn find(
        &self,
        ctx: &Context,
        appid: &str,
        desk_for: &(dyn Fn(&AppConfig) -> Arc<dyn Desk> + Sync),
    ) -> Result<Option<Arc<Account>>, Unreadable> {
        if let Some(a) = self.configured.get(appid) {
            return Ok(Some(a.clone()));
        }
        let now = ctx.clock.unix_ms();
        let epoch = ctx.registry_epoch();
        if let Some(hit) = self.cached(appid, now, epoch) {
            return Ok(hit);
        }
        let read = tokio::time::timeout(READ_WITHIN, ctx.registry.authorizer(appid)).await;
        let record = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if let Some(suppressed) = log_refusal("registry", "unreadable") {
                    warn!(appid, error = %e, suppressed, "registry unreadable: the account is not served now");
                }
                return Err(Unreadable);
            }
            Err(_) => {
                warn!(
                    appid,
                    "registry read timed out: the account is not served now"
                );
                return Err(Unreadable);
            }
        };
        let account = match record {
            Some(rec) => self.build(ctx, &rec, desk_for).await.map(Arc::new),
            None => None,
        };
        self.remember(appid, account.clone(), now, epoch);
        Ok(account)
    }

    fn cached(&self, appid: &str, now_ms: i64, epoch: u64) -> Option<Option<Arc<Account>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(appid)
            .filter(|c| now_ms - c.read_at_ms < self.max_age_ms && c.epoch == epoch)
            .map(|c| c.account.clone())
    }

    /// Caches a read; a full cache drops what is stale, and if that frees nothing, starts
    /// over (memory stays bounded whatever appids callers make up).
    fn remember(&self, appid: &str, account: Option<Arc<Account>>, now_ms: i64, epoch: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(appid) {
            cache.retain(|_, c| now_ms - c.read_at_ms < self.max_age_ms);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(
            appid.to_owned(),
            Cached {
                account,
                read_at_ms: now_ms,
                epoch,
            },
        );
    }

    /// How many reads are cached (tests hold the cache to its bound with it).
    pub(crate) fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A stored account as this install serves it, or None (logged) when it cannot be.
    async fn build(
        &self,
        ctx: &Context,
        rec: &Authorizer,
        desk_for: &(dyn Fn(&AppConfig) -> Arc<dyn Desk> + Sync),
    ) -> Option<Account> {
        let built = match self.settings(ctx, rec).await {
            Ok(settings) => stored_app(&ctx.config, rec, &settings),
            Err(why) => Err(why),
        };
        match built {
            Ok(app) => Some(Account {
                desk: desk_for(&app),
                app,
                standing: Some(rec.standing),
            }),
            Err(why) => {
                if let Some(suppressed) = log_refusal("registry", "unservable") {
                    warn!(appid = %rec.appid, why, suppressed, "stored account not served");
                }
                None
            }
        }
    }

    /// A stored account's settings, opened (none stored: the defaults). The store opens
    /// the data key once per process (one KMS call on AWS, one file read locally).
    pub(crate) async fn settings(
        &self,
        ctx: &Context,
        rec: &Authorizer,
    ) -> Result<AccountSettings, String> {
        let Some(sealed) = &rec.sealed_settings else {
            return Ok(AccountSettings::default());
        };
        let sealer = ctx
            .registry
            .sealer()
            .await
            .map_err(|e| format!("data key: {e}"))?;
        AccountSettings::open(&sealer, &rec.appid, sealed)
    }
}

/// The `AppConfig` a stored account is served as: a shop's through the platform (its
/// token, key and receive-id; its desk its own or `[component.desk]`), or one added with
/// its own credentials (its `[[apps]]` entry, checked as the config's are).
fn stored_app(
    config: &crate::config::Config,
    rec: &Authorizer,
    settings: &AccountSettings,
) -> Result<AppConfig, String> {
    let component = config.component.as_ref();
    let own_desk = settings
        .desk
        .as_deref()
        .map(crate::config::desk_from_toml)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut app = if rec.component.is_empty() {
        let entry = settings
            .app
            .as_deref()
            .ok_or("an account without a platform has no [[apps]] entry")?;
        crate::config::account_from_toml(entry, own_desk, &config.callback)
            .map_err(|e| e.to_string())?
    } else {
        let c = component
            .filter(|c| rec.is_authorized_by(c.appid.as_str()))
            .ok_or("it authorized a platform this install is not")?;
        let desk = own_desk.or_else(|| c.desk.clone()).ok_or(
            "it has no desk: set [component.desk], or give it one with `wxdesk-local accounts add`",
        )?;
        crate::config::authorized_account(c, &rec.appid, settings.name.clone(), settings.kind, desk)
            .map_err(|e| e.to_string())?
    };
    if settings.gateway_key.is_some() {
        app.gateway_key = settings.gateway_key.clone().map(Secret::new);
        app.previous_gateway_key = settings.previous_gateway_key.clone().map(Secret::new);
    }
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::seal::Sealer;

    #[test]
    fn settings_open_only_on_their_own_record() {
        let sealer = Sealer::new(&[7u8; 32]);
        let s = AccountSettings {
            gateway_key: Some("k".repeat(20)),
            ..Default::default()
        };
        let sealed = s.seal(&sealer, "wxshop1");
        assert_eq!(
            AccountSettings::open(&sealer, "wxshop1", &sealed).unwrap(),
            s
        );
        assert!(AccountSettings::open(&sealer, "wxshop2", &sealed).is_err());
        assert!(!sealed.contains("kkkk"));
    }
}
