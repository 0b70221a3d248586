//! `wxdesk-local accounts add|list|disable|enable|rotate-key`: an operator's changes to the
//! accounts the registry holds, without a redeploy or a restart. The CLI runs them on the
//! store itself (the aws store with the operator's own AWS credentials: no admin route is
//! exposed through API Gateway), or asks the local server holding the embedded store
//! through its admin routes. Every process sees a change within `[registry] cache_secs`.
//!
//! An account the config lists stays the config's: these commands refuse it and say so.

use serde::Deserialize;

use crate::app::Services;
use crate::config::{AppKind, Appid};
use crate::store::{AccountSettings, Authorizer, Standing};
use crate::support::secret::new_gateway_key;

/// The most accounts `list` prints (the registry is paged through, 1,000 at a time).
const LIST_MAX: usize = 100_000;

/// `accounts add`'s file: an account with its own credentials (an `[[apps]]` entry: it has
/// `token` and `secret`), or a shop's settings (its `appid` and any of `name`, `kind`,
/// `[desk]`: the shop must have authorized the platform).
#[derive(Deserialize)]
struct ShopFile {
    appid: Appid,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<AppKind>,
    #[serde(default)]
    desk: Option<toml::Value>,
}

/// Adds (or updates) the account the TOML `text` describes; what was done, in words.
pub async fn add(svc: &Services, text: &str) -> Result<String, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("the account file: {}", e.message()))?;
    if table.contains_key("secret") || table.contains_key("token") {
        add_own(svc, text).await
    } else {
        add_shop(svc, text).await
    }
}

/// An account with its own credentials, stored whole (sealed).
async fn add_own(svc: &Services, text: &str) -> Result<String, String> {
    let app = crate::config::account_from_toml(text, None, &svc.config.callback)
        .map_err(|e| e.to_string())?;
    let appid = app.appid.as_str();
    refuse_configured(svc, appid)?;
    if let Some(rec) = svc
        .registry
        .authorizer(appid)
        .await
        .map_err(|e| e.to_string())?
        && !rec.component.is_empty()
    {
        return Err(format!(
            "{appid} authorized the platform {}: its credentials are the platform's",
            rec.component
        ));
    }
    let sealer = svc.registry.sealer().await.map_err(|e| e.to_string())?;
    let settings = AccountSettings {
        name: app.name.clone(),
        gateway_key: app.gateway_key.as_ref().map(|k| k.expose().to_owned()),
        previous_gateway_key: app
            .previous_gateway_key
            .as_ref()
            .map(|k| k.expose().to_owned()),
        app: Some(text.to_owned()),
        ..Default::default()
    };
    let now = svc.clock.unix_ms();
    let record = Authorizer {
        appid: appid.to_owned(),
        component: String::new(),
        sealed_refresh_token: String::new(),
        permissions: Vec::new(),
        standing: Standing::Authorized,
        changed_at_ms: now,
        sealed_settings: None,
    };
    // Stored with its settings in two rule-kept writes: the record (kept if newer), then
    // its settings (replacing any earlier ones).
    svc.registry
        .put_authorizer(&record)
        .await
        .map_err(|e| e.to_string())?;
    let stored = svc
        .registry
        .set_settings(appid, &settings.seal(&sealer, appid), now)
        .await
        .map_err(|e| e.to_string())?;
    svc.ctx.registry_changed();
    if !stored {
        return Err(format!(
            "{appid}: a later change is stored; run the command again"
        ));
    }
    Ok(format!("{appid}: added with its own credentials"))
}

/// A shop's name, kind or desk, kept with its gateway key.
async fn add_shop(svc: &Services, text: &str) -> Result<String, String> {
    let file: ShopFile =
        toml::from_str(text).map_err(|e| format!("the account file: {}", e.message()))?;
    let appid = file.appid.as_str();
    refuse_configured(svc, appid)?;
    let rec = stored(svc, appid).await?;
    if rec.component.is_empty() {
        return Err(format!(
            "{appid} has its own credentials: give its whole [[apps]] entry (with token and secret)"
        ));
    }
    let mut settings = svc.settings_of(&rec).await?;
    if let Some(desk) = &file.desk {
        let desk_text = toml::to_string(desk).map_err(|e| format!("desk: {e}"))?;
        crate::config::desk_from_toml(&desk_text).map_err(|e| e.to_string())?;
        settings.desk = Some(desk_text);
    }
    settings.name = file.name.or(settings.name);
    settings.kind = file.kind.or(settings.kind);
    save(svc, &rec, &settings).await?;
    Ok(format!("{appid}: the shop's settings are stored"))
}

/// Moves a stored account to `standing` (disable, enable).
pub async fn set_standing(
    svc: &Services,
    appid: &str,
    standing: Standing,
) -> Result<String, String> {
    refuse_configured(svc, appid)?;
    let rec = stored(svc, appid).await?;
    if standing == Standing::Authorized && rec.standing != Standing::Disabled {
        return Err(format!(
            "{appid} is {}: only a disabled account is enabled (a shop comes back by authorizing again)",
            rec.standing.as_str()
        ));
    }
    let at = svc.clock.unix_ms().max(rec.changed_at_ms + 1);
    let moved = svc
        .registry
        .set_standing(appid, standing, at)
        .await
        .map_err(|e| e.to_string())?;
    svc.ctx.registry_changed();
    if !moved {
        return Err(format!(
            "{appid}: a later change is stored; run the command again"
        ));
    }
    Ok(format!("{appid}: {}", standing.as_str()))
}

/// A new gateway key for a stored account; the one before stays accepted (as
/// `previous_gateway_key`) until the next rotation. Returns its URLs under `base`.
pub async fn rotate_key(svc: &Services, appid: &str, base: &str) -> Result<Vec<String>, String> {
    refuse_configured(svc, appid)?;
    let rec = stored(svc, appid).await?;
    let mut settings = svc.settings_of(&rec).await?;
    settings.previous_gateway_key = settings.gateway_key.take();
    settings.gateway_key = Some(new_gateway_key().expose().to_owned());
    save(svc, &rec, &settings).await?;
    let account = svc.account(appid).await.ok_or_else(|| {
        format!(
            "{appid}: rotated, but the account cannot be served (doctor --app {appid} says why)"
        )
    })?;
    Ok(crate::app::urls::account_urls(&account.app, base)
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// A stored account's URLs under `base`, keys filled in (`wxdesk-local urls --app`).
pub async fn urls(svc: &Services, appid: &str, base: &str) -> Result<Vec<String>, String> {
    let account = svc.account(appid).await.ok_or_else(|| {
        format!("no account {appid} in the config or the registry (doctor --app {appid} says more)")
    })?;
    Ok(
        crate::app::urls::account_urls(&account.app, base.trim_end_matches('/'))
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

/// One line per stored account: appid, standing, whose credentials, whose desk.
pub async fn list(svc: &Services) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < LIST_MAX {
        let page = svc
            .registry
            .authorizers(after.as_deref(), 1000)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.appid.clone());
        for rec in &page {
            let credentials = if rec.component.is_empty() {
                "own credentials".to_owned()
            } else {
                format!("authorized {}", rec.component)
            };
            let desk = match svc.settings_of(rec).await {
                Ok(s) if s.desk.is_some() || s.app.is_some() => "its own desk",
                Ok(_) => "[component.desk]",
                Err(_) => "settings unreadable",
            };
            out.push(format!(
                "{} {} ({credentials}, {desk})",
                rec.appid,
                rec.standing.as_str()
            ));
        }
    }
    Ok(out)
}

fn refuse_configured(svc: &Services, appid: &str) -> Result<(), String> {
    match svc.config.app(appid) {
        Some(_) => Err(format!(
            "{appid} is an [[apps]] account of the config: change it in the config (these commands change only the registry's)"
        )),
        None => Ok(()),
    }
}

async fn stored(svc: &Services, appid: &str) -> Result<Authorizer, String> {
    svc.registry
        .authorizer(appid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{appid} is not in the registry (a shop authorizes the platform first; an account with its own credentials is added with its [[apps]] entry)"))
}

async fn save(svc: &Services, rec: &Authorizer, settings: &AccountSettings) -> Result<(), String> {
    let sealer = svc.registry.sealer().await.map_err(|e| e.to_string())?;
    let at = svc.clock.unix_ms().max(rec.changed_at_ms + 1);
    let saved = svc
        .registry
        .set_settings(&rec.appid, &settings.seal(&sealer, &rec.appid), at)
        .await
        .map_err(|e| e.to_string())?;
    svc.ctx.registry_changed();
    if saved {
        Ok(())
    } else {
        Err(format!(
            "{}: a later change is stored; run the command again",
            rec.appid
        ))
    }
}
