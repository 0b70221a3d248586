//! The scheduled token refresher: renews every account's access_token (and a third-party
//! platform's component_access_token) before it gets
//! close to expiry, so request paths normally find a valid token and never wait for WeChat.
//! In AWS an EventBridge schedule invokes the `token-refresher` function; the local server
//! runs the same pass on a timer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{error, info};

use crate::app::Services;
use crate::config::{AppConfig, DeskConfig};
use crate::wechat::token::{Grant, Refresh};

/// The example config's placeholders begin with this (`wxdesk.example.toml`).
const PLACEHOLDER: &str = "replace-with-";

/// Why the schedule leaves an account's token alone, if it does: an AppSecret still the
/// example's placeholder can only fail (the example config logged three errors a minute),
/// and the echo desk answers passively, so a token is fetched when a send needs one.
fn not_scheduled(app: &AppConfig) -> Option<&'static str> {
    if app.secret.expose().starts_with(PLACEHOLDER) {
        Some("the AppSecret is still the example's placeholder")
    } else if matches!(app.desk, DeskConfig::Echo(_)) {
        Some("the echo desk needs no token ahead of time")
    } else {
        None
    }
}

/// One pass over every account (and the platform's component_access_token, when the
/// install is a third-party platform): a JSON report, and whether every one is fine.
pub async fn refresh_all(svc: &Services) -> (Value, bool) {
    let window = Duration::from_secs(svc.config.wechat.token_refresh_window_secs);
    let mut report = serde_json::Map::new();
    let mut ok = true;
    for app in &svc.config.apps {
        if let Some(why) = not_scheduled(app) {
            report.insert(
                app.appid.to_string(),
                json!({ "state": "not scheduled", "why": why }),
            );
            continue;
        }
        let (entry, fine) = refresh_one(svc, Grant::Account(app), window).await;
        ok &= fine;
        report.insert(app.appid.to_string(), entry);
    }
    if let Some(c) = &svc.config.component {
        let (entry, fine) = refresh_one(svc, Grant::Component(c), window).await;
        ok &= fine;
        report.insert(format!("component {}", c.appid), entry);
    }
    (Value::Object(report), ok)
}

/// One token's refresh, as a report entry and whether it went well.
async fn refresh_one(svc: &Services, grant: Grant<'_>, window: Duration) -> (Value, bool) {
    let appid = grant.appid().to_owned();
    match svc.wechat.tokens.refresh_if_due(grant, window).await {
        Ok(Refresh::Fresh { expires_in_secs }) => (
            json!({ "state": "fresh", "expires_in": expires_in_secs }),
            true,
        ),
        Ok(Refresh::Refreshed { expires_in_secs }) => {
            info!(appid, expires_in_secs, "token refreshed by the schedule");
            (
                json!({ "state": "refreshed", "expires_in": expires_in_secs }),
                true,
            )
        }
        Ok(Refresh::Busy) => (json!({ "state": "another caller is refreshing" }), true),
        Err(e) => {
            error!(appid, error = %e, "scheduled token refresh failed");
            (
                json!({ "state": "failed", "errcode": e.errcode(), "error": e.to_string() }),
                false,
            )
        }
    }
}

/// The local server's schedule: a pass now and then every `period`.
pub async fn every(live: Arc<crate::app::live::Live>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        refresh_all(&live.current()).await;
    }
}

/// The `token-refresher` function's main: any event (the schedule's) runs one pass. A
/// pass with a failed account fails the invocation, so CloudWatch counts it as an error.
pub(crate) async fn run_lambda() -> Result<(), lambda_http::Error> {
    crate::app::lambda::run_events(|svc, _event| async move {
        let (report, ok) = refresh_all(&svc).await;
        if ok {
            Ok(report)
        } else {
            Err(lambda_http::Error::from(format!(
                "token refresh failed: {report}"
            )))
        }
    })
    .await
}
