//! `[component]`: the install as a WeChat Open Platform third-party platform (第三方平台,
//! "component"). One appid, secret, token and EncodingAESKey serve every account a shop
//! authorizes: WeChat signs and encrypts the platform's authorization events and every
//! authorized account's pushes with this token and key ("授权变更通知推送",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/authorize_event.html).

use serde::Deserialize;

use super::{Appid, ConfigError, DeskConfig, Secret, invalid};
use crate::wechat::crypto::MsgCrypt;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The platform's own appid (the receive-id of everything encrypted for it).
    pub appid: Appid,
    /// The platform's AppSecret, for `api_component_token`.
    pub secret: Secret,
    /// The message-check token of the platform's console.
    pub token: Secret,
    /// The platform's EncodingAESKey: every authorization event and every authorized
    /// account's push is encrypted with it.
    pub encoding_aes_key: MsgCrypt,
    /// `https://` and the platform's entry domain (授权发起页域名), as shops reach this
    /// install: the authorization page and WeChat's redirect back are served under it.
    /// Unset: those routes are closed (WeChat refuses any other domain).
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// The desk of every authorized shop that `wxdesk-local accounts add` gave none (the
    /// same shape as `[apps.desk]`: for example one Udesk tenant or one Tencent IM app for
    /// all shops, each shop's conversations labelled by its appid). Unset: a shop without
    /// a desk of its own is not served (its pushes answer 404, and doctor says so).
    #[serde(default)]
    pub desk: Option<DeskConfig>,
    /// Answers WeChat's release test (全网发布接入检测) for its test accounts: off except
    /// while the platform is being released (docs/platform.md: The release test).
    #[serde(default)]
    pub release_test: bool,
    /// The key of the platform's own desk route: with a Tencent IM `[component.desk]` (one
    /// IM app, whose console takes one callback URL, for every shop),
    /// `/tim/{platform appid}/{gateway_key}` takes every shop's agent messages, each sent
    /// for the account its customer wrote to. Unset: that route is closed.
    #[serde(default)]
    pub gateway_key: Option<Secret>,
}

impl ComponentConfig {
    pub(super) fn check(&self, apps: &[super::AppConfig]) -> Result<(), ConfigError> {
        if self.token.expose().is_empty() {
            return Err(invalid("component.token", "must not be empty"));
        }
        if self.secret.expose().is_empty() {
            return Err(invalid("component.secret", "must not be empty"));
        }
        if let Some(url) = &self.public_base_url {
            let host = url.strip_prefix("https://").unwrap_or("");
            if host.is_empty()
                || url.ends_with('/')
                || url.chars().any(|c| c.is_whitespace() || c == '"')
            {
                return Err(invalid(
                    "component.public_base_url",
                    "must be https://<the entry domain>, without a trailing /",
                ));
            }
        }
        if self
            .gateway_key
            .as_ref()
            .is_some_and(|k| !super::checks::is_gateway_key(k.expose()))
        {
            return Err(invalid(
                "component.gateway_key",
                "must be at least 16 letters, digits, '-' or '_' (it is a URL path segment and a password)",
            ));
        }
        if let Some(desk) = &self.desk {
            desk.check(&|k| format!("component.desk.{k}"))?;
        }
        // The platform's token record and an account's share one key space.
        if apps.iter().any(|a| a.appid == self.appid) {
            return Err(invalid(
                "component.appid",
                "is also an [[apps]] appid: the platform is not one of its accounts",
            ));
        }
        Ok(())
    }
}
