//! The WeChat Open Platform's third-party-platform side, as the WeChat stand-in serves it
//! (its APIs live on api.weixin.qq.com too), written from WeChat's documentation
//! (developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/): the platform's
//! `component_verify_ticket` pushes (signed and encrypted with the platform's token and
//! key, receive-id the platform's appid, "验证票据") and `api_component_token` ("令牌").
//!
//! It enforces what WeChat does: a component_access_token only for the platform's appid
//! and secret, from an address on the platform's IP allow-list (40164), with a ticket
//! WeChat pushed in the last 12 hours ("component_verify_ticket 的有效时间为 12 小时";
//! any other answers 61006 "component ticket is invalid", binarywang/WxJava#2626).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::signature::{msg_signature, push_signature};

use crate::{Reply, Seen};

pub const COMPONENT_APPID: &str = "wxcomponent00001";
pub const COMPONENT_SECRET: &str = "component-test-secret";
pub const COMPONENT_TOKEN: &str = "component-test-token";
pub const COMPONENT_AES_KEY: &str = "componentAESkey0000000000000000000000000001";

/// How long WeChat takes a ticket after pushing it.
const TICKET_LIFE: Duration = Duration::from_secs(12 * 3600);

/// The `[component]` section for a config whose platform is this stand-in's.
pub fn component_config() -> String {
    format!(
        "[component]\nappid = \"{COMPONENT_APPID}\"\nsecret = \"{COMPONENT_SECRET}\"\n\
         token = \"{COMPONENT_TOKEN}\"\nencoding_aes_key = \"{COMPONENT_AES_KEY}\"\n"
    )
}

pub struct Platform {
    /// The platform's appid and secret (this stand-in's constants unless a test says).
    pub appid: String,
    pub secret: String,
    /// Every ticket pushed, and when.
    tickets: Vec<(String, Instant)>,
    pub component_token_calls: usize,
    next_token: usize,
    /// component_access_tokens issued and still valid.
    pub component_tokens: HashSet<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            appid: COMPONENT_APPID.into(),
            secret: COMPONENT_SECRET.into(),
            tickets: Vec::new(),
            component_token_calls: 0,
            next_token: 0,
            component_tokens: HashSet::new(),
        }
    }
}

impl Platform {
    /// A new ticket, as WeChat mints one every 10 minutes.
    pub fn mint_ticket(&mut self) -> String {
        let t = format!("ticket@@@{}-{}", self.tickets.len() + 1, crate::now_secs());
        self.pushed(&t);
        t
    }

    /// Records `ticket` as one WeChat pushed just now (a prepared sample's).
    pub fn pushed(&mut self, ticket: &str) {
        self.tickets.push((ticket.to_owned(), Instant::now()));
    }

    /// Every ticket pushed so far ages past its 12 hours.
    pub fn expire_tickets(&mut self) {
        for (_, at) in &mut self.tickets {
            *at = Instant::now() - TICKET_LIFE - Duration::from_secs(1);
        }
    }

    fn takes(&self, ticket: &str) -> bool {
        self.tickets
            .iter()
            .any(|(t, at)| t == ticket && at.elapsed() < TICKET_LIFE)
    }

    /// `POST /cgi-bin/component/api_component_token`.
    pub(crate) fn component_token(&mut self, seen: &Seen, allowed: &HashSet<IpAddr>) -> Reply {
        self.component_token_calls += 1;
        if !allowed.contains(&seen.peer) {
            return crate::wechat::not_allowed(seen.peer);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
            return crate::wechat::err(47001, "data format error");
        };
        if v["component_appid"] != self.appid.as_str() {
            return crate::wechat::err(40013, "invalid appid");
        }
        if v["component_appsecret"] != self.secret.as_str() {
            return crate::wechat::err(40125, "invalid appsecret");
        }
        if !self.takes(v["component_verify_ticket"].as_str().unwrap_or("")) {
            return crate::wechat::err(61006, "component ticket is invalid rid: 6650d6a1-1");
        }
        self.next_token += 1;
        let t = format!("COMPONENT_ACCESS_TOKEN_{}", self.next_token);
        self.component_tokens.insert(t.clone());
        Reply::json(json!({ "component_access_token": t, "expires_in": 7200 }))
    }
}

/// A ticket push's plaintext, as the documentation shows it.
pub fn ticket_event(ticket: &str, created_at: i64) -> String {
    format!(
        "<xml><AppId><![CDATA[{COMPONENT_APPID}]]></AppId><CreateTime>{created_at}</CreateTime>\
         <InfoType><![CDATA[component_verify_ticket]]></InfoType>\
         <ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
    )
}

/// `plaintext` as WeChat pushes it to the platform's authorization-event URL: (query,
/// body), signed with the platform's token, encrypted with its key for its appid.
pub fn platform_push(plaintext: &str, timestamp: i64, nonce: &str) -> (String, String) {
    let crypt = MsgCrypt::new(COMPONENT_AES_KEY).unwrap();
    let enc = crypt.encrypt(plaintext, COMPONENT_APPID);
    let ts = timestamp.to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={}",
        push_signature(COMPONENT_TOKEN, &ts, nonce),
        msg_signature(COMPONENT_TOKEN, &ts, nonce, &enc)
    );
    let body = format!(
        "<xml><AppId><![CDATA[{COMPONENT_APPID}]]></AppId><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    );
    (query, body)
}
