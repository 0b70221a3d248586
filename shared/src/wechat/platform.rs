//! The third-party platform's own API calls, on its component_access_token: a fresh
//! pre-authorization code for the authorization page ("获取预授权码",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/ThirdParty/token/pre_auth_code.html),
//! and the exchange of a shop's authorization code for its account, refresh token and
//! granted permission sets ("获取刷新令牌" / `api_query_auth`,
//! developers.weixin.qq.com/doc/oplatform/openApi/OpenApiDoc/ticket-token/getAuthorizerRefreshToken.html).
//! A rejected component token is renewed and the call made once more, as for accounts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::warn;

use super::error::{ApiError, TOKEN_INVALID};
use super::token::{TokenAuthority, json_answer};
use crate::config::{ComponentConfig, WechatConfig};
use crate::support::ids::Appid;
use crate::support::secret::Secret;
use crate::support::url::with_query;

/// A pre-authorization code and its lifetime (WeChat: 1800 s).
#[derive(Clone)]
pub struct PreAuth {
    pub code: String,
    pub expires_in: i64,
}

/// What a shop granted, from `api_query_auth`.
pub struct Authorization {
    pub authorizer: Appid,
    pub refresh_token: Secret,
    /// `func_info[].funcscope_category.id`.
    pub permissions: Vec<u32>,
}

/// What WeChat says of a shop's account (`api_get_authorizer_info`, "获取授权账号详情",
/// developers.weixin.qq.com/doc/oplatform/openApi/authorization-management/api_getauthorizerinfo.html).
pub struct AuthorizerInfo {
    /// A Mini Program (its answer has `MiniProgramInfo`), else an Official Account.
    pub kind: crate::wechat::AppKind,
    /// Its nickname, when WeChat gives one (it may be empty).
    pub name: Option<String>,
}

pub struct PlatformApi {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    tokens: Arc<TokenAuthority>,
}

impl PlatformApi {
    pub(crate) fn new(
        http: reqwest::Client,
        cfg: &WechatConfig,
        tokens: Arc<TokenAuthority>,
    ) -> Self {
        Self {
            http,
            base: cfg.api_base.trim_end_matches('/').to_owned(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            tokens,
        }
    }

    pub async fn pre_auth_code(&self, c: &ComponentConfig) -> Result<PreAuth, ApiError> {
        let v = self
            .call(
                c,
                "/cgi-bin/component/api_create_preauthcode",
                json!({
                    "component_appid": c.appid.as_str(),
                }),
            )
            .await?;
        let code = text(&v, "pre_auth_code")?;
        let expires_in = v.get("expires_in").and_then(Value::as_i64).unwrap_or(1800);
        Ok(PreAuth { code, expires_in })
    }

    pub async fn query_auth(
        &self,
        c: &ComponentConfig,
        authorization_code: &str,
    ) -> Result<Authorization, ApiError> {
        let v = self
            .call(
                c,
                "/cgi-bin/component/api_query_auth",
                json!({
                    "component_appid": c.appid.as_str(),
                    "authorization_code": authorization_code,
                }),
            )
            .await?;
        let info = v
            .get("authorization_info")
            .ok_or_else(|| ApiError::Garbled("api_query_auth: no authorization_info".into()))?;
        let authorizer = Appid::parse(&text(info, "authorizer_appid")?)
            .map_err(|_| ApiError::Garbled("api_query_auth: authorizer_appid".into()))?;
        let refresh_token = Secret::new(text(info, "authorizer_refresh_token")?);
        let permissions = info
            .get("func_info")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|f| f.pointer("/funcscope_category/id")?.as_u64())
                    .filter_map(|id| u32::try_from(id).ok())
                    .take(256)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Authorization {
            authorizer,
            refresh_token,
            permissions,
        })
    }

    /// Which kind of account a shop is, and its name: an Official Account and a Mini
    /// Program take different answers (a Mini Program takes no passive reply).
    pub async fn authorizer_info(
        &self,
        c: &ComponentConfig,
        authorizer: &str,
    ) -> Result<AuthorizerInfo, ApiError> {
        let v = self
            .call(
                c,
                "/cgi-bin/component/api_get_authorizer_info",
                json!({
                    "component_appid": c.appid.as_str(),
                    "authorizer_appid": authorizer,
                }),
            )
            .await?;
        let info = v.get("authorizer_info").ok_or_else(|| {
            ApiError::Garbled("api_get_authorizer_info: no authorizer_info".into())
        })?;
        let kind = match info.get("MiniProgramInfo") {
            Some(_) => crate::wechat::AppKind::MiniProgram,
            None => crate::wechat::AppKind::OfficialAccount,
        };
        // A display name for agents: at most 32 characters, no control characters.
        let name = info
            .get("nick_name")
            .and_then(Value::as_str)
            .map(|n| {
                n.chars()
                    .filter(|c| !c.is_control())
                    .take(32)
                    .collect::<String>()
            })
            .filter(|n| !n.trim().is_empty());
        Ok(AuthorizerInfo { kind, name })
    }

    /// One POST with the component token; a rejected token is renewed once.
    async fn call(&self, c: &ComponentConfig, path: &str, body: Value) -> Result<Value, ApiError> {
        let token = self.tokens.component(c).await?;
        match self.send_once(path, &body, &token).await {
            Err(e) if TOKEN_INVALID.contains(&e.errcode()) => {
                warn!(component = %c.appid, path, errcode = e.errcode(), "component_access_token refused; renewing and retrying once");
                let renewed = self.tokens.renew_component(c, &token).await?;
                self.send_once(path, &body, &renewed).await
            }
            other => other,
        }
    }

    async fn send_once(&self, path: &str, body: &Value, token: &str) -> Result<Value, ApiError> {
        let url = with_query(
            &format!("{}{path}", self.base),
            &[("component_access_token", token)],
        );
        let req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        json_answer(req, self.timeout).await
    }
}

fn text(v: &Value, field: &str) -> Result<String, ApiError> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Garbled(format!("answer without {field}")))
}
