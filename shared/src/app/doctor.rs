//! `wxdesk-local doctor`: per account, checks that the config is complete, that WeChat
//! hands out an access_token, and that the desk answers (Udesk's signed channel test for
//! `udesk_im`); for a third-party platform, that it gets a component_access_token. One line per check; secrets are never printed.

use crate::app::Services;
use crate::config::{AppConfig, DeskConfig};
use crate::wechat::error::operator_hint;

pub struct Check {
    pub appid: String,
    pub name: &'static str,
    /// What was found: Ok(detail) passes, Err(reason) fails.
    pub result: Result<String, String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(d) => write!(f, "PASS {} {}: {d}", self.appid, self.name),
            Err(r) => write!(f, "FAIL {} {}: {r}", self.appid, self.name),
        }
    }
}

fn config_check(app: &AppConfig, all: &[AppConfig]) -> Result<String, String> {
    let mode = match (&app.encoding_aes_key, app.allow_plaintext) {
        (None, _) => {
            "WARNING plain mode (no encoding_aes_key): WeChat's signature does not cover the body, so each is bound to its first body for the timestamp window; set encoding_aes_key (safe mode) in the console and here"
        }
        (Some(_), false) => "compatible/safe mode (plaintext pushes refused)",
        (Some(_), true) => {
            "compatible/safe mode, plaintext pushes accepted (allow_plaintext: turn it off once the console is switched)"
        }
    };
    desk_routes_check(app)?;
    gateway_keys_check(app, all)?;
    let kind = match &app.desk {
        DeskConfig::UdeskWechat(_) => "udesk_wechat",
        DeskConfig::UdeskIm(_) => "udesk_im",
        DeskConfig::TencentIm(_) => "tencent_im",
        DeskConfig::Echo(_) => "echo (no real desk: every text is answered with itself)",
    };
    Ok(format!("{kind} desk, {mode}"))
}

/// Every desk-facing route (the Udesk simulated domain and message-interface push, the
/// Tencent IM callback, the Dialogue Platform routes) is guarded by the account's
/// gateway key in its path, on top of the protocol's own check.
fn desk_routes_check(app: &AppConfig) -> Result<(), String> {
    if app.gateway_key.is_none() {
        return Err("no gateway_key: the desk-facing routes are closed, so agents cannot answer (set a random gateway_key of 16+ characters)".into());
    }
    match &app.desk {
        DeskConfig::UdeskIm(c) if c.key.expose().len() < 8 => {
            Err("desk.key is shorter than 8 characters: use the KEY Udesk shows".into())
        }
        DeskConfig::TencentIm(c) if c.callback_token.expose().len() < 8 => Err(
            "desk.callback_token is shorter than 8 characters: set a long token in the IM console"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Keys shorter than this are flagged (the config takes 16 for older installs): 20
/// random URL-safe characters are about 119 bits.
const SHORT_KEY: usize = 20;

/// Each party's URL carries a key of its own: the Dialogue Platform's hand-off key is not
/// the desk's, no other account uses either, and none is short.
fn gateway_keys_check(app: &AppConfig, all: &[AppConfig]) -> Result<(), String> {
    if app.handoff_shares_the_desk_key() {
        return Err("[apps.chatbot] has no gateway_key: the Dialogue Platform's hand-off URL carries the account's gateway_key, which also opens the routes the desk calls (docs/chatbot.md: \"Splitting the hand-off key\")".into());
    }
    let keys = app.gateway_keys();
    if let Some((name, _)) = keys.iter().find(|(_, k)| k.expose().len() < SHORT_KEY) {
        return Err(format!(
            "{name} is shorter than {SHORT_KEY} characters: use a long random key (wxdesk-local urls prints the URLs to update)"
        ));
    }
    let desk = [app.gateway_key.as_ref(), app.previous_gateway_key.as_ref()];
    if let Some(cb) = &app.chatbot
        && desk.contains(&cb.previous_gateway_key.as_ref())
    {
        return Err("chatbot.previous_gateway_key is the account's gateway key: remove it once the platform has the new hand-off URL".into());
    }
    for other in all.iter().filter(|o| o.appid != app.appid) {
        let theirs = other.gateway_keys();
        if let Some((name, _)) = keys
            .iter()
            .find(|(_, k)| theirs.iter().any(|(_, t)| t == k))
        {
            return Err(format!(
                "{name} is also a key of {}: give each account keys of its own",
                other.appid
            ));
        }
    }
    Ok(())
}

async fn token_check(svc: &Services, app: &AppConfig) -> Result<String, String> {
    match svc.wechat.tokens.get(app).await {
        Ok(_) => Ok("WeChat issued an access_token".into()),
        Err(e) => Err(with_hint(&e)),
    }
}

fn with_hint(e: &crate::wechat::error::ApiError) -> String {
    match operator_hint(e) {
        Some(hint) => format!("{e} ({hint})"),
        None => e.to_string(),
    }
}

async fn desk_check(svc: &Services, app: &AppConfig) -> Result<String, String> {
    match svc.account(app.appid.as_str()).await {
        Some(account) => account.desk.check().await,
        None => Err("no desk is configured".into()),
    }
}

/// Every check for every account (or just `only`).
pub async fn run(svc: &Services, only: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    for app in accounts(svc, only) {
        out.push(config(svc, app));
        out.push(access_token(svc, app).await);
        out.push(desk(svc, app).await);
    }
    match only {
        None => out.extend(component(svc).await),
        // Not a configured account: a stored one (a shop that authorized the platform,
        // or one `accounts add` added).
        Some(appid) if out.is_empty() => out.extend(stored(svc, appid).await),
        Some(_) => {}
    }
    out
}

/// Whether WeChat issues the third-party platform a component_access_token (with the
/// newest ticket it pushed), when the install is one.
pub async fn component(svc: &Services) -> Option<Check> {
    let c = svc.config.component.as_ref()?;
    let result = match svc.wechat.tokens.component(c).await {
        Ok(_) => Ok("WeChat issued a component_access_token".into()),
        Err(e) => Err(with_hint(&e)),
    };
    Some(Check {
        appid: c.appid.to_string(),
        name: "component_access_token",
        result,
    })
}

/// Whether WeChat issues `appid`, a shop that authorized the platform, its token (with the
/// refresh token the registry holds): a refused refresh token closes the account, and
/// this check says so.
pub async fn authorizer(svc: &Services, appid: &str) -> Option<Check> {
    let c = svc.config.component.as_ref()?;
    let result = match svc.wechat.tokens.authorizer(c, appid).await {
        Ok(_) => Ok("WeChat issued an authorizer_access_token".into()),
        Err(e) => Err(with_hint(&e)),
    };
    Some(Check {
        appid: appid.to_owned(),
        name: "authorizer_access_token",
        result,
    })
}

/// A stored account's checks: its standing, then (while it is served) its token and desk.
/// A shop whose refresh token WeChat refused is closed, and the standing check says so.
pub async fn stored(svc: &Services, appid: &str) -> Vec<Check> {
    let Some(account) = svc.account(appid).await else {
        // Not servable: a shop may still have a record, whose token is checked as before.
        return authorizer(svc, appid).await.into_iter().collect();
    };
    let standing = account.standing.map_or("configured", |s| s.as_str());
    let mut out = vec![Check {
        appid: appid.to_owned(),
        name: "standing",
        result: if account.serves() {
            Ok(format!("{standing}: its routes are open"))
        } else {
            Err(format!(
                "{standing}: its routes answer 404 and its queued messages are told back to its desk"
            ))
        },
    }];
    if account.serves() {
        out.push(access_token(svc, &account.app).await);
        out.push(desk(svc, &account.app).await);
    }
    out
}

/// The accounts a run covers: all, or just `only`.
pub fn accounts<'a>(
    svc: &'a Services,
    only: Option<&'a str>,
) -> impl Iterator<Item = &'a AppConfig> {
    svc.config
        .apps
        .iter()
        .filter(move |a| only.is_none_or(|o| o == a.appid))
}

/// The config check of one account (needs no store).
pub fn config(svc: &Services, app: &AppConfig) -> Check {
    Check {
        appid: app.appid.to_string(),
        name: "config",
        result: config_check(app, &svc.config.apps),
    }
}

/// Whether WeChat issues the account a token, through the token authority (its store).
pub async fn access_token(svc: &Services, app: &AppConfig) -> Check {
    Check {
        appid: app.appid.to_string(),
        name: "access_token",
        result: token_check(svc, app).await,
    }
}

/// The access_token check without the store, for a secret the running server does not
/// have yet: `stable_token` in its normal mode, which invalidates no token.
pub async fn secret(svc: &Services, app: &AppConfig) -> Check {
    let result = match svc.wechat.tokens.check_secret(app).await {
        Ok(()) => Ok("WeChat accepts the AppSecret in the file (checked with stable_token, which invalidates no token)".into()),
        Err(e) => Err(with_hint(&e)),
    };
    Check {
        appid: app.appid.to_string(),
        name: "access_token",
        result,
    }
}

/// Whether the desk answers (needs no store).
pub async fn desk(svc: &Services, app: &AppConfig) -> Check {
    Check {
        appid: app.appid.to_string(),
        name: "desk",
        result: desk_check(svc, app).await,
    }
}

/// Tells two configs' AppSecrets apart without showing either: the start of a SHA-256
/// over the account and its secret, for the admin route's key holders only.
pub(crate) fn secret_fingerprint(app: &AppConfig) -> String {
    let text = format!(
        "wxdesk secret fingerprint\0{}\0{}",
        app.appid,
        app.secret.expose()
    );
    crate::support::hex::sha256_hex(text.as_bytes())[..16].to_owned()
}
