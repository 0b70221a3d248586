//! `wxdesk-local urls`: every URL an operator pastes into a console (WeChat's push URL,
//! the desk's route, the Dialogue Platform's hand-off and the desk's event URL, a third-
//! party platform's authorization event URL), with the
//! keys filled in, one per line as `<purpose>: <url>`. A route closed for lack of a key
//! is a note instead, so that nobody pastes a URL that answers 404.

use crate::config::{AppConfig, Config, DeskConfig, Secret};

/// One URL to paste, or why a route has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    Paste { purpose: String, url: String },
    Closed { purpose: String, why: &'static str },
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Paste { purpose, url } => write!(f, "{purpose}: {url}"),
            Url::Closed { purpose, why } => write!(f, "{purpose}: closed ({why})"),
        }
    }
}

/// Every account's URLs (or only `only`'s) under `base` (the API's or the local server's
/// address, without a trailing slash).
pub fn urls(config: &Config, only: Option<&str>, base: &str) -> Vec<Url> {
    let base = base.trim_end_matches('/');
    let mut out: Vec<Url> = config
        .apps
        .iter()
        .filter(|a| only.is_none_or(|o| o == a.appid))
        .flat_map(|app| account_urls(app, base))
        .collect();
    if let Some(c) = config
        .component
        .as_ref()
        .filter(|c| only.is_none_or(|o| o == c.appid))
    {
        out.push(Url::Paste {
            purpose: format!("{} third-party platform authorization event URL", c.appid),
            url: format!("{base}/component/{}/events", c.appid),
        });
        out.push(Url::Paste {
            purpose: format!(
                "{} third-party platform message and event URL ($APPID$ as written)",
                c.appid
            ),
            url: format!("{base}/wechat/component/{}/$APPID$", c.appid),
        });
        if matches!(c.desk, Some(DeskConfig::TencentIm(_))) {
            out.push(keyed(
                format!("{} Tencent IM callback URL (one for every shop)", c.appid),
                c.gateway_key.as_ref(),
                |k| format!("{base}/tim/{}/{k}", c.appid),
            ));
        }
        out.push(match authorize_page(config) {
            Ok(url) => Url::Paste {
                purpose: format!("{} page shops open to authorize the platform", c.appid),
                url,
            },
            Err(_) => Url::Closed {
                purpose: format!("{} page shops open to authorize the platform", c.appid),
                why: "no [component] public_base_url: set the platform's entry domain",
            },
        });
    }
    out
}

/// The page a shop's administrator opens to authorize the platform: on the entry domain
/// (`[component] public_base_url`), whatever address the API has, since WeChat takes the
/// authorization only from a page of that domain.
pub fn authorize_page(config: &Config) -> Result<String, &'static str> {
    let c = config
        .component
        .as_ref()
        .ok_or("no [component] in the config: this install is no third-party platform")?;
    let base = c.public_base_url.as_deref().ok_or(
        "no [component] public_base_url: set the platform's entry domain (授权发起页域名)",
    )?;
    Ok(format!("{base}/component/{}/authorize", c.appid))
}

/// One account's URLs under `base`: a stored account's as a configured one's (a shop's
/// account served through the platform has the platform's message URL for its pushes).
pub fn account_urls(app: &AppConfig, base: &str) -> Vec<Url> {
    let id = &app.appid;
    let desk_key = app.gateway_key.as_ref();
    let push = match &app.platform {
        Some(c) => format!("{base}/wechat/component/{}/{id}", c.appid),
        None => format!("{base}/wechat/{id}"),
    };
    let mut out = vec![Url::Paste {
        purpose: format!("{id} WeChat push URL"),
        url: push,
    }];
    let desk_route = match &app.desk {
        DeskConfig::UdeskWechat(_) => Some(("Udesk simulated WeChat domain", "udesk")),
        DeskConfig::UdeskIm(_) => Some(("Udesk message push server address", "udesk-im")),
        DeskConfig::TencentIm(_) => Some(("Tencent IM callback URL", "tim")),
        DeskConfig::Echo(_) => None,
    };
    if let Some((purpose, prefix)) = desk_route {
        out.push(keyed(format!("{id} {purpose}"), desk_key, |k| {
            format!("{base}/{prefix}/{id}/{k}")
        }));
    }
    if let Some(cb) = &app.chatbot {
        let handoff = cb.gateway_key.as_ref().or(desk_key);
        out.push(keyed(
            format!("{id} Dialogue Platform hand-off URL"),
            handoff,
            |k| format!("{base}/chatbot/{id}/{k}"),
        ));
        out.push(keyed(
            format!("{id} desk's Dialogue Platform event URL"),
            desk_key,
            |k| format!("{base}/chatbot/{id}/{k}/event"),
        ));
    }
    out
}

fn keyed(purpose: String, key: Option<&Secret>, url: impl FnOnce(&str) -> String) -> Url {
    match key {
        Some(k) => Url::Paste {
            purpose,
            url: url(k.expose()),
        },
        None => Url::Closed {
            purpose,
            why: "no gateway_key: set one of 16+ random characters",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(apps: &str) -> Config {
        Config::parse(&format!(
            "[store]\nbackend = \"embedded\"\npath = \"d\"\n{apps}"
        ))
        .unwrap()
    }

    #[test]
    fn each_desk_gets_its_own_route_and_closed_ones_say_why() {
        let c = config(
            r#"
[[apps]]
appid = "wxim"
kind = "official_account"
token = "tok"
secret = "s"
gateway_key = "im-key-0123456789ab"
[apps.desk]
kind = "udesk_im"
url = "https://x.udesk.cn/spa1/im_callback"
key = "udesk-key"

[[apps]]
appid = "wxtim"
kind = "official_account"
token = "tok"
secret = "s"
[apps.desk]
kind = "tencent_im"
sdkappid = 1400000000
secret_key = "k"
admin = "administrator"
agents = ["a1"]
callback_token = "cbtoken"
"#,
        );
        let shown: Vec<String> = urls(&c, None, "https://api/")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "wxim WeChat push URL: https://api/wechat/wxim",
                "wxim Udesk message push server address: https://api/udesk-im/wxim/im-key-0123456789ab",
                "wxtim WeChat push URL: https://api/wechat/wxtim",
                "wxtim Tencent IM callback URL: closed (no gateway_key: set one of 16+ random characters)",
            ]
        );
        assert_eq!(urls(&c, Some("wxtim"), "https://api").len(), 2);
    }

    #[test]
    fn a_platform_has_its_authorization_event_url() {
        let c = config(
            "[component]\nappid = \"wxcomp\"\nsecret = \"s\"\ntoken = \"t\"\n\
             encoding_aes_key = \"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"\n",
        );
        let shown: Vec<String> = urls(&c, None, "https://api")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "wxcomp third-party platform authorization event URL: https://api/component/wxcomp/events",
                "wxcomp third-party platform message and event URL ($APPID$ as written): https://api/wechat/component/wxcomp/$APPID$",
                "wxcomp page shops open to authorize the platform: closed (no [component] public_base_url: set the platform's entry domain)",
            ]
        );
        assert!(authorize_page(&c).is_err());
        let with_entry = config(
            "[component]\nappid = \"wxcomp\"\nsecret = \"s\"\ntoken = \"t\"\n\
             encoding_aes_key = \"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"\n\
             public_base_url = \"https://wx.example.com\"\n",
        );
        assert_eq!(
            authorize_page(&with_entry).unwrap(),
            "https://wx.example.com/component/wxcomp/authorize"
        );
    }
}
