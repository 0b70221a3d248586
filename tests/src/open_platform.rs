//! The WeChat Open Platform's third-party-platform side, as the WeChat stand-in serves it
//! (its APIs live on api.weixin.qq.com too), written from WeChat's documentation
//! (developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/): the platform's
//! `component_verify_ticket` pushes (signed and encrypted with the platform's token and
//! key, receive-id the platform's appid, "验证票据"), `api_component_token` ("令牌"),
//! `api_create_preauthcode` ("预授权码"), a shop's administrator authorizing on WeChat's
//! page (`authorize`, what the page and its redirect amount to) and `api_query_auth`.
//!
//! It enforces what WeChat does: a component_access_token only for the platform's appid
//! and secret, from an address on the platform's IP allow-list (40164), with a ticket
//! WeChat pushed in the last 12 hours ("component_verify_ticket 的有效时间为 12 小时";
//! any other answers 61006 "component ticket is invalid", binarywang/WxJava#2626); the
//! component APIs only with a component_access_token it issued (40001; 42001 once
//! expired) and from the allow-list; a pre_auth_code lives 1800 s and an authorization
//! code an hour (61009 unknown, 61010 expired).

use std::collections::{HashMap, HashSet};
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

/// The platform's entry domain in the tests' configs (WeChat's page is never really
/// opened: `Platform::authorize` plays the administrator).
pub const ENTRY_BASE: &str = "https://wx.example.com";

/// The `[component]` section for a config whose platform is this stand-in's, with the
/// test entry domain.
pub fn component_config() -> String {
    format!(
        "[component]\nappid = \"{COMPONENT_APPID}\"\nsecret = \"{COMPONENT_SECRET}\"\n\
         token = \"{COMPONENT_TOKEN}\"\nencoding_aes_key = \"{COMPONENT_AES_KEY}\"\n\
         public_base_url = \"{ENTRY_BASE}\"\n"
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
    /// component_access_tokens that were valid once (42001).
    pub expired_component_tokens: HashSet<String>,
    /// pre_auth_codes issued, and when.
    pre_auth_codes: HashMap<String, Instant>,
    /// Authorization codes a shop's administrator produced: (authorizer, permissions, when).
    auth_codes: HashMap<String, (String, Vec<u32>, Instant)>,
    /// Each authorizer's current refresh token (a new authorization replaces it).
    pub refresh_tokens: HashMap<String, String>,
    /// authorizer_access_tokens issued: token → authorizer appid.
    pub authorizer_tokens: HashMap<String, String>,
    pub query_auth_calls: usize,
    pub authorizer_token_calls: usize,
    /// The lifetime `api_authorizer_token` gives its tokens (7200 s unless a test says).
    pub authorizer_expires_in: i64,
    /// Authorizers that are Mini Programs (`api_get_authorizer_info` says so).
    pub mini_programs: HashSet<String>,
    serial: usize,
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
            expired_component_tokens: HashSet::new(),
            pre_auth_codes: HashMap::new(),
            auth_codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            authorizer_tokens: HashMap::new(),
            query_auth_calls: 0,
            authorizer_token_calls: 0,
            authorizer_expires_in: 7200,
            mini_programs: HashSet::new(),
            serial: 0,
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

    /// A shop's administrator follows the authorization page's link (which must carry a
    /// live pre_auth_code of this platform's) and grants `permissions` for `authorizer`:
    /// the authorization code WeChat's redirect then carries. None: WeChat's page would
    /// have shown an error instead.
    pub fn authorize(
        &mut self,
        link: &str,
        authorizer: &str,
        permissions: &[u32],
    ) -> Option<String> {
        let q = crate::wechat::query(link);
        let live = q
            .get("pre_auth_code")
            .and_then(|c| self.pre_auth_codes.get(c));
        if q.get("component_appid") != Some(&self.appid)
            || live.is_none_or(|at| at.elapsed() >= Duration::from_secs(1800))
            || !q
                .get("redirect_uri")
                .is_some_and(|r| r.starts_with("https://"))
        {
            return None;
        }
        let code = format!("queryauthcode@@@{}", self.next_serial());
        self.auth_codes.insert(
            code.clone(),
            (authorizer.to_owned(), permissions.to_vec(), Instant::now()),
        );
        Some(code)
    }

    /// WeChat authorizes its release-test account `appid` to the platform by itself (no
    /// page) and hands the platform the query_auth_code it will push in a text
    /// `QUERY_AUTH_CODE:<code>` ("全网发布接入检测说明").
    pub fn release_test_code(&mut self, appid: &str) -> String {
        let code = format!("queryauthcode@@@release-{}", self.next_serial());
        self.auth_codes
            .insert(code.clone(), (appid.to_owned(), vec![1], Instant::now()));
        code
    }

    /// Every component_access_token issued so far expires (42001 from now on).
    pub fn expire_component_tokens(&mut self) {
        let all: Vec<String> = self.component_tokens.drain().collect();
        self.expired_component_tokens.extend(all);
    }

    fn next_serial(&mut self) -> usize {
        self.serial += 1;
        self.serial
    }

    /// The component APIs: a valid component_access_token from the allow-list first.
    pub(crate) fn component_api(
        &mut self,
        path: &str,
        seen: &Seen,
        allowed: &HashSet<IpAddr>,
    ) -> Reply {
        let q = crate::wechat::query(&seen.uri);
        let token = q.get("component_access_token").cloned().unwrap_or_default();
        if self.expired_component_tokens.contains(&token) {
            return crate::wechat::err(42001, "access_token expired");
        }
        if !self.component_tokens.contains(&token) {
            return crate::wechat::err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            );
        }
        if !allowed.contains(&seen.peer) {
            return crate::wechat::not_allowed(seen.peer);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
            return crate::wechat::err(47001, "data format error");
        };
        if v["component_appid"] != self.appid.as_str() {
            return crate::wechat::err(61011, "invalid component");
        }
        match path {
            "/cgi-bin/component/api_create_preauthcode" => {
                let code = format!("preauthcode@@@{}", self.next_serial());
                self.pre_auth_codes.insert(code.clone(), Instant::now());
                Reply::json(json!({ "pre_auth_code": code, "expires_in": 1800 }))
            }
            "/cgi-bin/component/api_query_auth" => self.query_auth(&v),
            "/cgi-bin/component/api_authorizer_token" => self.authorizer_token(&v),
            "/cgi-bin/component/api_get_authorizer_info" => self.authorizer_info(&v),
            _ => crate::wechat::err(40066, "invalid url"),
        }
    }

    /// `api_authorizer_token`: only the authorizer's current refresh token (61023
    /// "refresh_token is invalid" otherwise, binarywang/WxJava#1119); the refresh token
    /// stays the same, the access token is new.
    fn authorizer_token(&mut self, v: &Value) -> Reply {
        self.authorizer_token_calls += 1;
        let appid = v["authorizer_appid"].as_str().unwrap_or("").to_owned();
        let presented = v["authorizer_refresh_token"].as_str().unwrap_or("");
        if self.refresh_tokens.get(&appid).map(String::as_str) != Some(presented) {
            return crate::wechat::err(61023, "refresh_token is invalid hint: [stand-in]");
        }
        let access = format!("AUTHORIZER_ACCESS_TOKEN_{}", self.next_serial());
        self.authorizer_tokens.insert(access.clone(), appid);
        Reply::json(json!({
            "authorizer_access_token": access,
            "expires_in": self.authorizer_expires_in,
            "authorizer_refresh_token": presented,
        }))
    }

    /// `api_get_authorizer_info`: only for an account that authorized this platform (61003
    /// "component is not authorized by this account"); `MiniProgramInfo` only for a Mini
    /// Program ("获取授权账号详情").
    fn authorizer_info(&self, v: &Value) -> Reply {
        let appid = v["authorizer_appid"].as_str().unwrap_or("");
        if !self.refresh_tokens.contains_key(appid) {
            return crate::wechat::err(61003, "component is not authorized by this account");
        }
        let mut info = json!({
            "nick_name": format!("Shop {appid}"),
            "user_name": format!("gh_{appid}"),
            "service_type_info": {"id": 2}, "verify_type_info": {"id": 0},
        });
        if self.mini_programs.contains(appid) {
            info["MiniProgramInfo"] = json!({"network": {}, "categories": [], "visit_status": 0});
        }
        Reply::json(json!({
            "authorizer_info": info,
            "authorization_info": {"authorizer_appid": appid},
        }))
    }

    /// WeChat stops taking `appid`'s refresh token (it was lost, or the shop's
    /// authorization was reset on WeChat's side).
    pub fn revoke_refresh_token(&mut self, appid: &str) {
        self.refresh_tokens.remove(appid);
    }

    /// The shop `appid` withdraws its authorization: WeChat takes none of its tokens any
    /// more (the `unauthorized` event is the test's to push).
    pub fn withdraw(&mut self, appid: &str) {
        self.refresh_tokens.remove(appid);
        self.authorizer_tokens.retain(|_, a| a != appid);
    }

    /// The authorizer an authorizer_access_token was issued to, while it is valid.
    pub fn authorizer_of(&self, token: &str) -> Option<&str> {
        self.authorizer_tokens.get(token).map(String::as_str)
    }

    fn query_auth(&mut self, v: &Value) -> Reply {
        self.query_auth_calls += 1;
        let code = v["authorization_code"].as_str().unwrap_or("");
        let Some((authorizer, permissions, at)) = self.auth_codes.get(code).cloned() else {
            return crate::wechat::err(61009, "code is invalid");
        };
        if at.elapsed() > Duration::from_secs(3600) {
            return crate::wechat::err(61010, "code is expired");
        }
        let n = self.next_serial();
        let (access, refresh) = (
            format!("AUTHORIZER_ACCESS_TOKEN_{n}"),
            format!("refreshtoken@@@{n}"),
        );
        // A new authorization replaces the authorizer's tokens.
        self.authorizer_tokens.retain(|_, a| *a != authorizer);
        self.authorizer_tokens
            .insert(access.clone(), authorizer.clone());
        self.refresh_tokens
            .insert(authorizer.clone(), refresh.clone());
        let func_info: Vec<Value> = permissions
            .iter()
            .map(|id| json!({ "funcscope_category": { "id": id } }))
            .collect();
        Reply::json(json!({ "authorization_info": {
            "authorizer_appid": authorizer,
            "authorizer_access_token": access,
            "expires_in": 7200,
            "authorizer_refresh_token": refresh,
            "func_info": func_info,
        }}))
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

/// `plaintext` as WeChat pushes an authorized account's message to the platform's message
/// URL: (query, body), signed with the platform's token and encrypted with its key for
/// the platform's appid (not the account's), the envelope naming the account's original
/// ID ("消息加解密接入指引").
pub fn authorizer_push(
    to_user: &str,
    plaintext: &str,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let (query, body) = platform_push(plaintext, timestamp, nonce);
    let body = body.replace(
        &format!("<AppId><![CDATA[{COMPONENT_APPID}]]></AppId>"),
        &format!("<ToUserName><![CDATA[{to_user}]]></ToUserName>"),
    );
    (query, body)
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
