//! The calls that get a token: an account's from `cgi-bin/token` or `cgi-bin/stable_token`
//! with its AppSecret, a platform's from `api_component_token` with its secret and newest
//! ticket, an authorized shop's from `api_authorizer_token` with its refresh token. Each
//! answers the token and its lifetime, or WeChat's refusal as an `ApiError`.

use serde_json::Value;

use super::{Grant, TokenAuthority};
use crate::config::{AppConfig, ComponentConfig};
use crate::support::outbound;
use crate::support::url::with_query;
use crate::wechat::error::{ApiError, errcode_of};

impl TokenAuthority {
    /// One fetch for `grant`; `force` asks stable_token for a new token.
    pub(super) async fn fetch_once(
        &self,
        grant: Grant<'_>,
        force: bool,
    ) -> Result<(String, i64), ApiError> {
        match grant {
            Grant::Account(app) => self.account_token(app, force).await,
            Grant::Component(c) => self.component_token(c).await,
            Grant::Authorizer { component, appid } => self.authorizer_token(component, appid).await,
        }
    }

    /// An account's token from `cgi-bin/token` (or `cgi-bin/stable_token`).
    async fn account_token(&self, app: &AppConfig, force: bool) -> Result<(String, i64), ApiError> {
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
        self.token_answer(req, "access_token").await
    }

    /// A platform's component_access_token from `cgi-bin/component/api_component_token`,
    /// with its newest ticket ("令牌", developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/ThirdParty/token/component_access_token.html).
    /// WeChat answers 61006 for a ticket it no longer takes.
    async fn component_token(&self, c: &ComponentConfig) -> Result<(String, i64), ApiError> {
        let component = c.appid.as_str();
        let ticket = self
            .store
            .ticket(component)
            .await
            .map_err(super::store_err)?;
        let Some(ticket) = ticket else {
            return Err(ApiError::Token(format!(
                "no component_verify_ticket yet: WeChat pushes one every 10 minutes to /component/{component}/events"
            )));
        };
        let body = serde_json::json!({
            "component_appid": component,
            "component_appsecret": c.secret.expose(),
            "component_verify_ticket": ticket.ticket,
        });
        let req = self
            .http
            .post(format!(
                "{}/cgi-bin/component/api_component_token",
                self.api_base
            ))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.token_answer(req, "component_access_token").await
    }

    /// The token named `field` in a token endpoint's answer, and its lifetime.
    async fn token_answer(
        &self,
        req: reqwest::RequestBuilder,
        field: &str,
    ) -> Result<(String, i64), ApiError> {
        let v = self.answer(req).await?;
        token_of(&v, field)
    }

    /// A token endpoint's JSON answer, or its refusal.
    pub(super) async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        json_answer(req, self.timeout).await
    }
}

/// A JSON call's answer within `timeout`, or WeChat's refusal (its errcode, whatever the
/// HTTP status): for the token endpoints and the platform's own calls alike.
pub(crate) async fn json_answer(
    req: reqwest::RequestBuilder,
    timeout: std::time::Duration,
) -> Result<Value, ApiError> {
    // The request carries a secret: `outbound::send` reports errors without it.
    let answer = outbound::send(req, timeout, outbound::MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ApiError::Transport(e.to_string()))?;
    let status = answer.status;
    let v = answer.json().ok_or_else(|| {
        if status >= 500 {
            ApiError::Status(status)
        } else {
            ApiError::Garbled(format!("WeChat answered HTTP {status}, not JSON"))
        }
    })?;
    match errcode_of(&v) {
        Some(code) => Err(ApiError::from_body(code, v)),
        None => Ok(v),
    }
}

/// The token named `field` in a token endpoint's answer, and its lifetime.
pub(super) fn token_of(v: &Value, field: &str) -> Result<(String, i64), ApiError> {
    let token = v
        .get(field)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Garbled(format!("token answer without {field}")))?;
    let expires_in = v.get("expires_in").and_then(Value::as_i64).unwrap_or(7200);
    Ok((token.to_owned(), expires_in))
}
