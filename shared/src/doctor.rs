//! `wxdesk-local doctor`: per account, checks that the config is complete, that WeChat
//! hands out an access_token, and that the desk answers (Udesk's signed channel test for
//! `udesk_im`). One line per check; secrets are never printed.

use std::time::Duration;

use crate::config::{AppConfig, DeskConfig};
use crate::desk::tencent_im::TencentIm;
use crate::desk::{http_client, udesk_im::UdeskIm};
use crate::services::Services;
use crate::wechat::api::operator_hint;

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

fn config_check(app: &AppConfig) -> Result<String, String> {
    let mode = if app.encoding_aes_key.is_some() {
        "plain, compatible and safe mode"
    } else {
        "plain mode only (no encoding_aes_key)"
    };
    match &app.desk {
        DeskConfig::UdeskWechat { .. } if app.gateway_key.is_none() => Err(
            "no gateway_key: Udesk cannot reach the simulated domain, so agents cannot answer"
                .into(),
        ),
        DeskConfig::UdeskWechat { .. } => Ok(format!("udesk_wechat desk, {mode}")),
        DeskConfig::UdeskIm { .. } => Ok(format!("udesk_im desk, {mode}")),
        DeskConfig::TencentIm {
            callback_token: None,
            ..
        } => Ok(format!(
            "tencent_im desk, {mode}; no callback_token, so callbacks are checked by SdkAppid only"
        )),
        DeskConfig::TencentIm { .. } => Ok(format!("tencent_im desk, {mode}")),
    }
}

async fn token_check(svc: &Services, app: &AppConfig) -> Result<String, String> {
    match svc.wechat.tokens.get(app).await {
        Ok(_) => Ok("WeChat issued an access_token".into()),
        Err(e) => Err(match operator_hint(e.errcode()) {
            Some(hint) => format!("{e} ({hint})"),
            None => e.to_string(),
        }),
    }
}

async fn desk_check(svc: &Services, app: &AppConfig) -> Result<String, String> {
    match &app.desk {
        DeskConfig::UdeskIm { .. } => {
            let desk = UdeskIm::new(http_client(), app, svc.wechat.clone(), svc.links.clone())
                .ok_or("not a udesk_im desk")?;
            desk.check_channel()
                .await
                .map(|()| "Udesk's channel test answered success".into())
        }
        DeskConfig::TencentIm { agents, .. } => {
            let desk = TencentIm::new(
                http_client(),
                app,
                svc.wechat.clone(),
                svc.links.clone(),
                svc.tim_last_agent.clone(),
            )
            .ok_or("not a tencent_im desk")?;
            // Importing the first agent is idempotent and proves the admin's UserSig works.
            let deadline = std::time::Instant::now() + Duration::from_secs(8);
            desk.rest
                .call(
                    "im_open_login_svc/account_import",
                    &serde_json::json!({ "UserID": agents[0] }),
                    deadline,
                )
                .await
                .map(|_| "the REST API accepted the admin's UserSig".into())
                .map_err(|e| e.to_string())
        }
        DeskConfig::UdeskWechat { url } => {
            let resp = http_client()
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| format!("cannot reach the desk URL: {}", e.without_url()))?;
            match resp.status().as_u16() {
                s if s < 500 => Ok(format!("the desk URL answered HTTP {s}")),
                s => Err(format!("the desk URL answered HTTP {s}")),
            }
        }
    }
}

/// Every check for every account (or just `only`).
pub async fn run(svc: &Services, only: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    for app in svc
        .config
        .apps
        .iter()
        .filter(|a| only.is_none_or(|o| o == a.appid))
    {
        let appid = app.appid.clone();
        out.push(Check {
            appid: appid.clone(),
            name: "config",
            result: config_check(app),
        });
        out.push(Check {
            appid: appid.clone(),
            name: "access_token",
            result: token_check(svc, app).await,
        });
        out.push(Check {
            appid,
            name: "desk",
            result: desk_check(svc, app).await,
        });
    }
    out
}
