//! An authorized shop's token from `api_authorizer_token`, with the platform's token and
//! the shop's refresh token, opened from the registry ("获取/刷新接口调用令牌",
//! developers.weixin.qq.com/doc/oplatform/openApi/OpenApiDoc/ticket-token/getAuthorizerAccessToken.html).
//! A refresh token WeChat refuses (61023, binarywang/WxJava#1119) cannot be had again but
//! by a new authorization: the account is marked so in the registry, counted
//! (`AuthorizationLost`) and logged, never left failing silently. A refresh token WeChat
//! replaces is sealed and stored again.

use serde_json::json;
use tracing::{error, info};

use super::TokenAuthority;
use super::fetch::token_of;
use crate::config::ComponentConfig;
use crate::store::{Standing, authorizer_context};
use crate::support::secret::Secret;
use crate::support::url::with_query;
use crate::wechat::error::{ApiError, TOKEN_INVALID};

/// WeChat's answer to a refresh token it no longer takes.
pub(crate) const REFRESH_REFUSED: i64 = 61023;

impl TokenAuthority {
    pub(super) async fn authorizer_token(
        &self,
        c: &ComponentConfig,
        appid: &str,
    ) -> Result<(String, i64), ApiError> {
        let store = |e: crate::store::StoreError| ApiError::Store(e.to_string());
        let rec = self
            .registry
            .authorizer(appid)
            .await
            .map_err(store)?
            .filter(|r| r.component == c.appid.as_str())
            .ok_or_else(|| ApiError::Token(format!("{appid} has not authorized the platform")))?;
        if rec.standing != Standing::Authorized {
            return Err(ApiError::Token(format!(
                "{appid} is {}: the shop must authorize again (wxdesk-local authorize-url)",
                rec.standing.as_str()
            )));
        }
        let context = authorizer_context(appid);
        let sealer = self.registry.sealer().await.map_err(store)?;
        let refresh = sealer
            .open(&rec.sealed_refresh_token, &context)
            .map_err(|e| ApiError::Token(e.to_string()))?;
        let v = match self.refresh_once(c, appid, &refresh, None).await {
            Err((e, token)) if TOKEN_INVALID.contains(&e.errcode()) => {
                let renewed = self.renew_component(c, &token).await?;
                self.refresh_once(c, appid, &refresh, Some(renewed)).await
            }
            other => other,
        }
        .map_err(|(e, _)| e);
        let v = match v {
            Err(e) if e.errcode() == REFRESH_REFUSED => {
                let at = self.clock.unix_ms();
                let marked = self
                    .registry
                    .set_standing(appid, Standing::RefreshRejected, at)
                    .await
                    .map_err(store)?;
                crate::telemetry::metric("AuthorizationLost", 1.0, "Count");
                error!(
                    appid,
                    marked,
                    "WeChat refused the shop's refresh token: the account is closed until the shop authorizes again"
                );
                return Err(e);
            }
            other => other?,
        };
        let (token, expires_in) = token_of(&v, "authorizer_access_token")?;
        if let Some(next) = v.get("authorizer_refresh_token").and_then(|t| t.as_str())
            && !next.is_empty()
            && !refresh.matches(next)
        {
            let mut rec = rec;
            rec.sealed_refresh_token = sealer.seal(&Secret::new(next), &context);
            rec.changed_at_ms = self.clock.unix_ms();
            let kept = self.registry.put_authorizer(&rec).await.map_err(store)?;
            info!(
                appid,
                kept, "WeChat replaced the shop's refresh token; stored the new one"
            );
        }
        Ok((token, expires_in))
    }

    /// One `api_authorizer_token` call, with `component_token` or the platform's current
    /// one; a failure comes with the component token it was made with.
    async fn refresh_once(
        &self,
        c: &ComponentConfig,
        appid: &str,
        refresh: &Secret,
        component_token: Option<String>,
    ) -> Result<serde_json::Value, (ApiError, String)> {
        let token = match component_token {
            Some(t) => t,
            None => self.component(c).await.map_err(|e| (e, String::new()))?,
        };
        let url = with_query(
            &format!("{}/cgi-bin/component/api_authorizer_token", self.api_base),
            &[("component_access_token", token.as_str())],
        );
        let body = json!({
            "component_appid": c.appid.as_str(),
            "authorizer_appid": appid,
            "authorizer_refresh_token": refresh.expose(),
        });
        let req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.answer(req).await.map_err(|e| (e, token))
    }
}
