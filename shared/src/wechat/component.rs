//! The third-party platform's authorization events ("授权事件推送"): what WeChat pushes,
//! decrypted, to the platform's authorization-event URL. One `InfoType` per event:
//! `component_verify_ticket` every 10 minutes ("验证票据",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/component_verify_ticket.html),
//! and `authorized`, `updateauthorized`, `unauthorized` when a shop grants, changes or
//! withdraws its authorization ("授权变更通知推送",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/authorize_event.html).

use super::xml::{Doc, XmlError};
use crate::support::ids::Appid;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} is not valid")]
    Invalid(&'static str),
}

/// A shop's grant, as `authorized` and `updateauthorized` carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub authorizer: Appid,
    /// Exchanged for the authorizer's tokens with `api_query_auth`.
    pub code: String,
    /// When the code stops working (seconds).
    pub code_expires_at: i64,
}

impl std::fmt::Debug for Grant {
    // The code is exchangeable for the shop's tokens: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("authorizer", &self.authorizer.as_str())
            .field("code_expires_at", &self.code_expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    Ticket {
        ticket: String,
        created_at: i64,
    },
    Authorized(Grant),
    UpdateAuthorized(Grant),
    Unauthorized {
        authorizer: Appid,
    },
    /// An `InfoType` this version does not act on (WeChat adds some: registration
    /// results, for one); answered `success` and logged.
    Other(String),
}

impl AuthEvent {
    /// The event in a decrypted push; `component` is the platform's appid, which the
    /// event must name (its `AppId`).
    pub fn parse(plaintext: &str, component: &Appid) -> Result<AuthEvent, EventError> {
        let doc = Doc::parse_xml(plaintext)?;
        let field = |name: &'static str| doc.non_empty(name).ok_or(EventError::Missing(name));
        if field("AppId")? != component.as_str() {
            return Err(EventError::Invalid("AppId"));
        }
        let created_at = number(&field("CreateTime")?, "CreateTime")?;
        let info_type = field("InfoType")?;
        Ok(match info_type.as_str() {
            "component_verify_ticket" => AuthEvent::Ticket {
                ticket: field("ComponentVerifyTicket")?,
                created_at,
            },
            "authorized" => AuthEvent::Authorized(grant(&doc)?),
            "updateauthorized" => AuthEvent::UpdateAuthorized(grant(&doc)?),
            "unauthorized" => AuthEvent::Unauthorized {
                authorizer: authorizer(&doc)?,
            },
            _ if crate::support::ids::is_identifier(&info_type, 64) => AuthEvent::Other(info_type),
            _ => return Err(EventError::Invalid("InfoType")),
        })
    }

    /// Its name in the log.
    pub fn name(&self) -> &str {
        match self {
            AuthEvent::Ticket { .. } => "component_verify_ticket",
            AuthEvent::Authorized(_) => "authorized",
            AuthEvent::UpdateAuthorized(_) => "updateauthorized",
            AuthEvent::Unauthorized { .. } => "unauthorized",
            AuthEvent::Other(t) => t,
        }
    }
}

fn number(text: &str, name: &'static str) -> Result<i64, EventError> {
    text.trim().parse().map_err(|_| EventError::Invalid(name))
}

fn authorizer(doc: &Doc) -> Result<Appid, EventError> {
    let id = doc
        .non_empty("AuthorizerAppid")
        .ok_or(EventError::Missing("AuthorizerAppid"))?;
    Appid::parse(&id).map_err(|_| EventError::Invalid("AuthorizerAppid"))
}

fn grant(doc: &Doc) -> Result<Grant, EventError> {
    let code = doc
        .non_empty("AuthorizationCode")
        .ok_or(EventError::Missing("AuthorizationCode"))?;
    let expires = doc
        .non_empty("AuthorizationCodeExpiredTime")
        .ok_or(EventError::Missing("AuthorizationCodeExpiredTime"))?;
    Ok(Grant {
        authorizer: authorizer(doc)?,
        code,
        code_expires_at: number(&expires, "AuthorizationCodeExpiredTime")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Appid {
        Appid::parse("wxcomponent000001").unwrap()
    }

    /// The documentation's examples of each event.
    #[test]
    fn the_documented_events_parse() {
        let ticket = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1413192605</CreateTime>\
            <InfoType>component_verify_ticket</InfoType>\
            <ComponentVerifyTicket>ticket@@@abc</ComponentVerifyTicket></xml>";
        assert_eq!(
            AuthEvent::parse(ticket, &platform()),
            Ok(AuthEvent::Ticket {
                ticket: "ticket@@@abc".into(),
                created_at: 1413192605
            })
        );
        let authorized = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1413192760</CreateTime>\
            <InfoType>authorized</InfoType><AuthorizerAppid>wxshop00000000001</AuthorizerAppid>\
            <AuthorizationCode>queryauthcode@@@xyz</AuthorizationCode>\
            <AuthorizationCodeExpiredTime>1413196360</AuthorizationCodeExpiredTime>\
            <PreAuthCode>preauthcode@@@p</PreAuthCode></xml>";
        let AuthEvent::Authorized(g) = AuthEvent::parse(authorized, &platform()).unwrap() else {
            panic!("not authorized");
        };
        assert_eq!(g.authorizer.as_str(), "wxshop00000000001");
        assert_eq!(
            (g.code.as_str(), g.code_expires_at),
            ("queryauthcode@@@xyz", 1413196360)
        );
        assert!(
            !format!("{g:?}").contains("queryauthcode"),
            "the code never prints"
        );
        let updated = authorized.replace(">authorized<", ">updateauthorized<");
        assert!(matches!(
            AuthEvent::parse(&updated, &platform()),
            Ok(AuthEvent::UpdateAuthorized(_))
        ));
        let withdrawn = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1413192760</CreateTime>\
            <InfoType>unauthorized</InfoType><AuthorizerAppid>wxshop00000000001</AuthorizerAppid></xml>";
        assert_eq!(
            AuthEvent::parse(withdrawn, &platform()).unwrap().name(),
            "unauthorized"
        );
    }

    #[test]
    fn another_platforms_or_broken_events_are_refused() {
        let other = "<xml><AppId>wxsomeoneelse0001</AppId><CreateTime>1</CreateTime>\
            <InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>";
        assert_eq!(
            AuthEvent::parse(other, &platform()),
            Err(EventError::Invalid("AppId"))
        );
        let no_ticket = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1</CreateTime>\
            <InfoType>component_verify_ticket</InfoType></xml>";
        assert_eq!(
            AuthEvent::parse(no_ticket, &platform()),
            Err(EventError::Missing("ComponentVerifyTicket"))
        );
        let bad_appid = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1</CreateTime>\
            <InfoType>unauthorized</InfoType><AuthorizerAppid>wx/../x</AuthorizerAppid></xml>";
        assert_eq!(
            AuthEvent::parse(bad_appid, &platform()),
            Err(EventError::Invalid("AuthorizerAppid"))
        );
        let novel = "<xml><AppId>wxcomponent000001</AppId><CreateTime>1</CreateTime>\
            <InfoType>notify_third_fasteregister</InfoType></xml>";
        assert_eq!(
            AuthEvent::parse(novel, &platform()),
            Ok(AuthEvent::Other("notify_third_fasteregister".into()))
        );
    }
}
