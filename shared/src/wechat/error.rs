//! WeChat's API errors: the errcode in the body whatever the HTTP status, what each code
//! means for a retry, and what the operator must fix for the ones no retry helps.

use serde_json::{Value, json};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// WeChat answered with a non-zero errcode; `body` is its answer as is.
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Wechat {
        errcode: i64,
        errmsg: String,
        body: Value,
    },
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    #[error("WeChat answered HTTP {0}")]
    Status(u16),
    #[error("WeChat's answer is unreadable: {0}")]
    Garbled(String),
    #[error("no access_token: {0}")]
    Token(String),
    /// The token store failed: the detail (table names, ARNs) is for the log only.
    #[error("no access_token: token store: {0}")]
    Store(String),
}

/// Codes that say the token itself was refused: renew it and retry once.
pub(crate) const TOKEN_INVALID: [i64; 3] = [40001, 40014, 42001];

/// Where an operator adds an address WeChat refused ("API IP 白名单",
/// developers.weixin.qq.com, "获取Access token").
const ALLOW_LIST_PLACE: &str =
    "WeChat admin console → Settings → Basic configuration → IP allow-list (IP白名单)";

/// The address WeChat says it saw, from a 40164 message: `invalid ip 47.94.148.108 ipv6
/// ::ffff:47.94.148.108, not in whitelist rid: …`.
pub(crate) fn refused_address(errmsg: &str) -> Option<std::net::IpAddr> {
    let rest = errmsg.split_once("invalid ip ")?.1;
    rest.split([' ', ',']).next()?.parse().ok()
}

/// What the operator must fix for codes that no retry can help; for the IP allow-list,
/// with the address WeChat saw (behind a NAT gateway or a proxy, only WeChat knows it).
pub(crate) fn operator_hint(e: &ApiError) -> Option<String> {
    let (errcode, errmsg) = match e {
        ApiError::Wechat {
            errcode, errmsg, ..
        } => (*errcode, errmsg.as_str()),
        _ => return None,
    };
    let seen = refused_address(errmsg);
    Some(match (errcode, seen) {
        (40164, Some(ip)) => format!(
            "WeChat saw this server's calls come from {ip}, which is not on the account's IP allow-list: add {ip} in the {ALLOW_LIST_PLACE}"
        ),
        (40164, None) => format!(
            "this server's address is not on the account's IP allow-list: add it in the {ALLOW_LIST_PLACE}"
        ),
        (89503, _) => format!(
            "WeChat asks the account's administrator to confirm this server's address: confirm it in WeChat, or add it in the {ALLOW_LIST_PLACE}"
        ),
        (40013, _) => "the appid is wrong: check apps.appid".into(),
        (40125, _) => {
            "the AppSecret is wrong: check apps.secret (reset it in the WeChat admin console if needed)".into()
        }
        (40243, _) => "the AppSecret is frozen: unfreeze or reset it in the WeChat admin console".into(),
        (45009, _) => {
            "the daily API quota is used up (cgi-bin/clear_quota resets it, 10 times a month)".into()
        }
        (48001, _) => {
            "the account is not authorised for this API (verification or permission missing)".into()
        }
        (61023, _) => {
            "WeChat refused the shop's refresh token: the shop must authorize the platform again (give them the page `wxdesk-local authorize-url` prints)".into()
        }
        (61005, _) => {
            "the stored component_verify_ticket has expired: check that the platform's authorization event URL is /component/{appid}/events here, and wait for the next ticket (every 10 minutes)".into()
        }
        (61006, _) => {
            "WeChat no longer takes the stored component_verify_ticket: check that the platform's authorization event URL is /component/{appid}/events here, and wait for the next ticket (every 10 minutes)".into()
        }
        _ => return None,
    })
}

impl ApiError {
    pub(crate) fn from_body(errcode: i64, body: Value) -> Self {
        let errmsg = body
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        ApiError::Wechat {
            errcode,
            errmsg,
            body,
        }
    }

    /// WeChat's code, or -1 (WeChat's own "system busy") for failures around the call.
    pub fn errcode(&self) -> i64 {
        match self {
            ApiError::Wechat { errcode, .. } => *errcode,
            _ => -1,
        }
    }

    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiError::Wechat { errcode, .. } => *errcode == -1,
            ApiError::Transport(_) => true,
            ApiError::Status(s) => *s >= 500,
            ApiError::Garbled(_) | ApiError::Token(_) | ApiError::Store(_) => false,
        }
    }

    /// The JSON a desk gets: WeChat's own answer when there is one, else an errcode/errmsg
    /// pair saying what went wrong around the call.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            ApiError::Wechat { body, .. } => body.clone(),
            // A desk is a third party: it learns that our store failed, not how.
            ApiError::Store(_) => json!({
                "errcode": -1,
                "errmsg": "wxdesk: the token store is unavailable; try again (the server log has the reason)",
            }),
            other => json!({ "errcode": other.errcode(), "errmsg": format!("wxdesk: {other}") }),
        }
    }
}

/// `errcode` when present and non-zero.
pub(crate) fn errcode_of(v: &Value) -> Option<i64> {
    v.get("errcode")
        .and_then(|c| {
            c.as_i64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|c| *c != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcode_is_read_from_the_body() {
        assert_eq!(
            errcode_of(&json!({"errcode": 40001, "errmsg": "x"})),
            Some(40001)
        );
        assert_eq!(errcode_of(&json!({"errcode": "45015"})), Some(45015));
        assert_eq!(errcode_of(&json!({"errcode": 0, "errmsg": "ok"})), None);
        assert_eq!(errcode_of(&json!({"access_token": "t"})), None);
        let e = ApiError::from_body(40164, json!({"errcode": 40164, "errmsg": "invalid ip"}));
        assert!(!e.is_transient());
        assert!(operator_hint(&e).unwrap().contains("IP allow-list"));
        let seen = ApiError::from_body(
            40164,
            json!({"errcode": 40164, "errmsg": "invalid ip 47.94.148.108 ipv6 ::ffff:47.94.148.108, not in whitelist rid: 1"}),
        );
        let hint = operator_hint(&seen).unwrap();
        assert!(
            hint.contains("add 47.94.148.108 in the WeChat admin console → Settings"),
            "{hint}"
        );
        assert!(operator_hint(&ApiError::Status(502)).is_none());
        assert_eq!(e.to_json()["errcode"], 40164);
        let t = ApiError::Transport("connection refused".into());
        assert!(t.is_transient());
        assert_eq!(t.to_json()["errcode"], -1);
    }
}
