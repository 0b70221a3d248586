//! A stand-in for WeChat's server API (`api.weixin.qq.com`) speaking its wire format:
//! `cgi-bin/token` and `cgi-bin/stable_token` (counting calls, able to expire or refuse
//! tokens), custom send (checking the JSON shape per message type), media upload and
//! download (bytes, `{"video_url"}` and errcode shapes), user info, templates, and errcodes
//! injected per path.
//!
//! It enforces the rules production WeChat does, so that a green test means a working
//! deployment:
//! - the IP allow-list ("API IP 白名单"): an Official Account's every call, and a Mini
//!   Program's AppSecret calls, answer 40164 naming the caller's address unless it is on
//!   the list (127.0.0.1 unless a test says otherwise);
//! - the customer-service send quota ("客服消息下发规则", developers.weixin.qq.com/doc/
//!   offiaccount/Customer_Service/Customer_Service_Messages.html): each customer action
//!   resets the customer's allowance to that action's sends and window (5 in 48 h for a
//!   message, 3 in a minute for a click, follow or scan, 2 in a minute for entering a
//!   Mini Program's chat, unlimited for 48 h after a payment); past the count 45047, past
//!   the window 45015. The stand-in does not see the pushes tests send to wxdesk: a test
//!   tells it of an action (`customer`); a customer it was never told of counts as having
//!   written just before its first send, so the 5-send cap holds in every test;
//! - `user/info` without `nickname` and `headimgurl` (WeChat stopped sending them on
//!   2021-12-27), with the remark a test sets (`remark`);
//! - the typing indicator (`custom/typing`, Mini Programs `custom/business/typing`): 45080
//!   without a message exchange in the last 30 s, 45081 while it shows (15 s; a sent
//!   message ends it);
//! - Mini Programs take only text, image, link and miniprogrampage custom messages
//!   ("发送客服消息"; anything else is refused as invalid args);
//! - the Open Platform's component APIs, with their own rules (`open_platform`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::{Value, json};

use crate::{Reply, Seen, StandIn};

pub const APP_SECRET: &str = "test-secret";

#[derive(Default)]
pub struct State {
    pub token_calls: usize,
    pub stable_calls: usize,
    pub stable_force_calls: usize,
    next_token: usize,
    pub valid: HashSet<String>,
    /// Tokens that were valid once: WeChat says 42001 (expired) for them.
    pub expired: HashSet<String>,
    /// errcodes to answer, in order, per path (`/cgi-bin/message/custom/send` ...).
    pub inject: HashMap<String, VecDeque<i64>>,
    /// Every accepted custom-send body.
    pub sent: Vec<Value>,
    /// The access token of each custom send that passed the token check, in order.
    pub sent_with: Vec<String>,
    /// Every custom-send attempt, accepted or not.
    pub send_attempts: usize,
    pub media: HashMap<String, (Bytes, String, String)>,
    pub media_get_calls: usize,
    pub uploads: Vec<(String, String, String, Bytes)>,
    pub template_sends: Vec<Value>,
    pub token_delay: Duration,
    pub expires_in: i64,
    /// The AppSecret the token endpoints accept.
    pub secret: String,
    /// Files served at `/files/<name>` (an agent's media on some CDN).
    pub files: HashMap<String, (Bytes, String)>,
    /// Callers allowed by the accounts' IP allow-lists.
    pub allow_list: HashSet<IpAddr>,
    /// Mini Program appids: only their AppSecret calls are held to the allow-list.
    pub mini_programs: HashSet<String>,
    /// Which account each issued token belongs to.
    token_app: HashMap<String, String>,
    /// What each (appid, openid) may still be sent.
    allowances: HashMap<(String, String), Allowance>,
    /// When each (appid, openid) last exchanged a message with the account.
    exchanged: HashMap<(String, String), Instant>,
    /// Until when each (appid, openid) sees the typing indicator.
    typing_until: HashMap<(String, String), Instant>,
    /// The Open Platform's third-party-platform APIs (`open_platform`).
    pub platform: crate::open_platform::Platform,
    /// Every accepted typing command: (openid, command).
    pub typings: Vec<(String, String)>,
    /// The account's remark for each openid (user/info `remark`).
    pub remarks: HashMap<String, String>,
}

/// A customer's action, as WeChat counts it for the send quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Message,
    /// A menu click (click / scancode push events).
    Click,
    Follow,
    Scan,
    Payment,
    /// A Mini Program customer entering the customer-service chat.
    EnterChat,
}

impl Action {
    /// (sends, window): None sends is without limit.
    fn grant(self) -> (Option<u32>, Duration) {
        let (minute, two_days) = (Duration::from_secs(60), Duration::from_secs(48 * 3600));
        match self {
            Action::Message => (Some(5), two_days),
            Action::Click | Action::Follow | Action::Scan => (Some(3), minute),
            Action::Payment => (None, two_days),
            Action::EnterChat => (Some(2), minute),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Allowance {
    left: Option<u32>,
    until: Instant,
}

impl Allowance {
    fn of(action: Action) -> Allowance {
        let (left, window) = action.grant();
        Allowance {
            left,
            until: Instant::now() + window,
        }
    }
}

pub struct WechatStandIn {
    pub server: StandIn,
    pub state: Arc<Mutex<State>>,
}

impl WechatStandIn {
    pub fn base(&self) -> String {
        self.server.url("")
    }
    pub fn token_calls(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.token_calls + s.stable_calls
    }
    pub fn sent(&self) -> Vec<Value> {
        self.state.lock().unwrap().sent.clone()
    }
    pub fn send_attempts(&self) -> usize {
        self.state.lock().unwrap().send_attempts
    }
    /// Every token issued so far stops working (42001).
    pub fn expire_all(&self) {
        let mut s = self.state.lock().unwrap();
        let old: Vec<String> = s.valid.drain().collect();
        s.expired.extend(old);
    }
    pub fn inject(&self, path: &str, errcodes: &[i64]) {
        self.state
            .lock()
            .unwrap()
            .inject
            .entry(path.to_owned())
            .or_default()
            .extend(errcodes);
    }
    pub fn add_media(&self, media_id: &str, bytes: &[u8], content_type: &str) {
        self.state.lock().unwrap().media.insert(
            media_id.to_owned(),
            (
                Bytes::copy_from_slice(bytes),
                content_type.to_owned(),
                format!("{media_id}.bin"),
            ),
        );
    }
    /// Serves `bytes` at `/files/<name>`; returns the URL.
    pub fn serve_file(&self, name: &str, bytes: &[u8], content_type: &str) -> String {
        self.state.lock().unwrap().files.insert(
            name.to_owned(),
            (Bytes::copy_from_slice(bytes), content_type.to_owned()),
        );
        self.server.url(&format!("/files/{name}"))
    }

    pub fn set_token_delay(&self, d: Duration) {
        self.state.lock().unwrap().token_delay = d;
    }

    /// The customer acted: their allowance is reset to what the action grants (allowances
    /// do not add up).
    pub fn customer(&self, appid: &str, openid: &str, action: Action) {
        let mut s = self.state.lock().unwrap();
        let k = (appid.to_owned(), openid.to_owned());
        s.allowances.insert(k.clone(), Allowance::of(action));
        if action == Action::Message {
            s.exchanged.insert(k, Instant::now());
        }
    }

    /// Typing commands WeChat accepted: (openid, "Typing" | "CancelTyping").
    pub fn typings(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().typings.clone()
    }

    /// The account's remark for a follower (what `user/info` answers as `remark`).
    pub fn remark(&self, openid: &str, remark: &str) {
        self.state
            .lock()
            .unwrap()
            .remarks
            .insert(openid.to_owned(), remark.to_owned());
    }

    /// Moves the customer's window `by` into the past, as if that much time had gone by.
    pub fn age_customer(&self, appid: &str, openid: &str, by: Duration) {
        let mut s = self.state.lock().unwrap();
        let a = s
            .allowances
            .entry((appid.to_owned(), openid.to_owned()))
            .or_insert_with(|| Allowance::of(Action::Message));
        a.until = a.until.checked_sub(by).unwrap_or_else(Instant::now);
        let k = (appid.to_owned(), openid.to_owned());
        if let Some(at) = s.exchanged.get_mut(&k) {
            *at = at.checked_sub(by).unwrap_or_else(Instant::now);
        }
    }

    /// The accounts' IP allow-list is exactly `ips`.
    pub fn allow_only(&self, ips: &[IpAddr]) {
        self.state.lock().unwrap().allow_list = ips.iter().copied().collect();
    }

    /// `appid` is a Mini Program: only its AppSecret calls are held to the allow-list.
    pub fn mini_program(&self, appid: &str) {
        let mut s = self.state.lock().unwrap();
        s.mini_programs.insert(appid.to_owned());
        s.platform.mini_programs.insert(appid.to_owned());
    }
}

/// WeChat's answer to a caller not on the allow-list, naming the address it saw.
pub(crate) fn not_allowed(peer: IpAddr) -> Reply {
    let v4 = match peer {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a
            .to_ipv4_mapped()
            .map(|a| a.to_string())
            .unwrap_or(a.to_string()),
    };
    err(
        40164,
        &format!(
            "invalid ip {v4} ipv6 ::ffff:{v4}, not in whitelist rid: 6650d6a1-0a1b2c3d-4e5f6a7b"
        ),
    )
}

/// The send quota's verdict on one custom send, spending one send when allowed.
fn spend(s: &mut State, appid: &str, openid: &str) -> Result<(), Reply> {
    let a = s
        .allowances
        .entry((appid.to_owned(), openid.to_owned()))
        .or_insert_with(|| Allowance::of(Action::Message));
    if Instant::now() >= a.until {
        return Err(err(
            45015,
            "response out of time limit or subscription is canceled",
        ));
    }
    match &mut a.left {
        Some(0) => Err(err(45047, "out of response count limit")),
        Some(n) => {
            *n -= 1;
            Ok(())
        }
        None => Ok(()),
    }
}

/// The typing indicator's rules: a customer message in the last 30 s (else 45080; a test
/// tells the stand-in of it with `customer`), not
/// while it shows (45081, 15 s).
fn typing(s: &mut State, appid: &str, seen: &Seen) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
        return err(47001, "data format error");
    };
    let (touser, command) = (
        v["touser"].as_str().unwrap_or_default().to_owned(),
        v["command"].as_str().unwrap_or_default().to_owned(),
    );
    if touser.is_empty() || !["Typing", "CancelTyping"].contains(&command.as_str()) {
        return err(40035, "invalid args");
    }
    let k = (appid.to_owned(), touser.clone());
    let now = Instant::now();
    if s.exchanged
        .get(&k)
        .is_none_or(|at| now.duration_since(*at) > Duration::from_secs(30))
    {
        return err(
            45080,
            "no message exchange with the user in the last 30 seconds",
        );
    }
    if command == "Typing" {
        if s.typing_until.get(&k).is_some_and(|until| now < *until) {
            return err(45081, "already typing");
        }
        s.typing_until.insert(k, now + Duration::from_secs(15));
    } else {
        s.typing_until.remove(&k);
    }
    s.typings.push((touser, command));
    err(0, "ok")
}

pub(crate) fn err(code: i64, msg: &str) -> Reply {
    Reply::json(json!({ "errcode": code, "errmsg": msg }))
}

pub(crate) fn query(uri: &str) -> HashMap<String, String> {
    uri.split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Required string fields per custom-send type (OA and MP types together).
fn shape(msgtype: &str) -> Option<&'static [&'static str]> {
    Some(match msgtype {
        "text" => &["content"],
        "image" | "voice" | "mpnews" => &["media_id"],
        "video" => &["media_id"],
        "music" => &["musicurl", "hqmusicurl", "thumb_media_id"],
        "news" => &[],
        "mpnewsarticle" => &["article_id"],
        "wxcard" => &["card_id"],
        "msgmenu" => &[],
        "miniprogrampage" => &["title", "pagepath", "thumb_media_id"],
        "link" => &["title", "description", "url", "thumb_url"],
        _ => return None,
    })
}

fn check_custom(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("not an object")?;
    let touser = obj.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() {
        return Err("touser".into());
    }
    let t = obj
        .get("msgtype")
        .and_then(Value::as_str)
        .ok_or("msgtype")?;
    let fields = shape(t).ok_or_else(|| format!("unknown msgtype {t}"))?;
    let inner = obj.get(t).and_then(Value::as_object).ok_or(t.to_owned())?;
    for f in fields {
        if inner
            .get(*f)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("{t}.{f}"));
        }
    }
    let allowed = ["touser", "msgtype", t, "customservice"];
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unexpected key {k}"));
    }
    match t {
        "news" => {
            let arts = inner
                .get("articles")
                .and_then(Value::as_array)
                .ok_or("news.articles")?;
            if arts.is_empty() || arts.iter().any(|a| a.get("title").is_none()) {
                return Err("news.articles[].title".into());
            }
        }
        "msgmenu" => {
            let list = inner
                .get("list")
                .and_then(Value::as_array)
                .ok_or("msgmenu.list")?;
            if list
                .iter()
                .any(|i| i.get("id").is_none() || i.get("content").is_none())
            {
                return Err("msgmenu.list[]".into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The `media` part of a multipart body, read by multer.
fn multipart_media(seen: &Seen) -> Result<(String, String, Bytes), String> {
    let ct = seen
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .ok_or("no content-type")?;
    let boundary = multer::parse_boundary(ct).map_err(|e| e.to_string())?;
    let body = seen.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    // The stream is in memory: every future is ready on its first poll.
    async move {
        while let Some(field) = mp.next_field().await.map_err(|e| e.to_string())? {
            if field.name() == Some("media") {
                let filename = field.file_name().unwrap_or("").to_owned();
                let ct = field
                    .content_type()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let bytes = field.bytes().await.map_err(|e| e.to_string())?;
                return Ok((filename, ct, bytes));
            }
        }
        Err("no media part".to_owned())
    }
    .now_or_never()
    .unwrap_or_else(|| Err("multipart parse did not complete".into()))
}

pub async fn start() -> WechatStandIn {
    let state = Arc::new(Mutex::new(State {
        expires_in: 7200,
        secret: APP_SECRET.to_owned(),
        allow_list: [IpAddr::from([127, 0, 0, 1])].into_iter().collect(),
        ..State::default()
    }));
    let st = state.clone();
    let server = StandIn::start_raw(Arc::new(move |seen: &Seen| {
        let path = seen.uri.split('?').next().unwrap_or("").to_owned();
        let q = query(&seen.uri);
        let mut s = st.lock().unwrap();
        let injected = s.inject.get_mut(&path).and_then(VecDeque::pop_front);
        let issue = |s: &mut State, appid: String| {
            s.next_token += 1;
            let t = format!("ACCESS_TOKEN_{}", s.next_token);
            s.valid.insert(t.clone());
            s.token_app.insert(t.clone(), appid);
            let mut r = Reply::json(json!({ "access_token": t, "expires_in": s.expires_in }));
            r.delay = s.token_delay;
            r
        };
        match path.as_str() {
            "/cgi-bin/token" => {
                s.token_calls += 1;
                if let Some(code) = injected {
                    return err(code, "injected");
                }
                if !s.allow_list.contains(&seen.peer) {
                    return not_allowed(seen.peer);
                }
                if q.get("grant_type").map(String::as_str) != Some("client_credential") {
                    return err(40002, "invalid grant_type");
                }
                if q.get("secret") != Some(&s.secret) {
                    return err(40125, "invalid appsecret");
                }
                let appid = q.get("appid").cloned().unwrap_or_default();
                issue(&mut s, appid)
            }
            "/cgi-bin/stable_token" => {
                s.stable_calls += 1;
                if !s.allow_list.contains(&seen.peer) {
                    return not_allowed(seen.peer);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
                    return err(47001, "data format error");
                };
                if v["secret"].as_str() != Some(s.secret.as_str()) {
                    return err(40125, "invalid appsecret");
                }
                if v["force_refresh"] == true {
                    s.stable_force_calls += 1;
                }
                let appid = v["appid"].as_str().unwrap_or_default().to_owned();
                issue(&mut s, appid)
            }
            "/cgi-bin/component/api_component_token" => {
                let allowed = s.allow_list.clone();
                s.platform.component_token(seen, &allowed)
            }
            _ if path.starts_with("/cgi-bin/component/") => {
                let allowed = s.allow_list.clone();
                s.platform.component_api(&path, seen, &allowed)
            }
            _ if path.starts_with("/files/") => match s.files.get(&path["/files/".len()..]) {
                Some((bytes, ct)) => Reply {
                    status: 200,
                    headers: vec![("content-type", ct.clone())],
                    body: bytes.clone(),
                    delay: Duration::ZERO,
                },
                None => err(404, "no such file"),
            },
            "/video/1" => Reply {
                status: 200,
                headers: vec![("content-type", "video/mp4".into())],
                body: Bytes::from_static(b"\0\0\0\x18ftypmp42 stand-in video bytes"),
                delay: Duration::ZERO,
            },
            _ if path.starts_with("/cgi-bin/") => {
                let token = q.get("access_token").cloned().unwrap_or_default();
                if path == "/cgi-bin/message/custom/send" {
                    s.send_attempts += 1;
                }
                if path == "/cgi-bin/media/get" {
                    s.media_get_calls += 1;
                }
                if let Some(code) = injected {
                    return err(code, "injected");
                }
                if token.is_empty() {
                    return err(41001, "access_token missing");
                }
                if s.expired.contains(&token) {
                    return err(42001, "access_token expired");
                }
                // An account's own token, or an authorizer_access_token the platform was
                // issued for a shop that still authorizes it.
                let appid = match s.platform.authorizer_of(&token) {
                    Some(shop) => shop.to_owned(),
                    None if s.valid.contains(&token) => {
                        s.token_app.get(&token).cloned().unwrap_or_default()
                    }
                    None => {
                        return err(
                            40001,
                            "invalid credential, access_token is invalid or not latest",
                        );
                    }
                };
                if path == "/cgi-bin/message/custom/send" {
                    s.sent_with.push(token.clone());
                }
                if !s.mini_programs.contains(&appid) && !s.allow_list.contains(&seen.peer) {
                    return not_allowed(seen.peer);
                }
                api(&mut s, &appid, &path, &q, seen)
            }
            _ => Reply {
                status: 404,
                headers: vec![("content-type", "text/html".into())],
                body: Bytes::from_static(b"<html>404</html>"),
                delay: Duration::ZERO,
            },
        }
    }))
    .await;
    WechatStandIn { server, state }
}

fn api(s: &mut State, appid: &str, path: &str, q: &HashMap<String, String>, seen: &Seen) -> Reply {
    match path {
        "/cgi-bin/message/custom/send" => {
            let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
                return err(47001, "data format error");
            };
            if let Err(field) = check_custom(&v) {
                return err(40035, &format!("invalid args: {field}"));
            }
            let touser = v["touser"].as_str().unwrap_or_default().to_owned();
            let msgtype = v["msgtype"].as_str().unwrap_or_default();
            if s.mini_programs.contains(appid)
                && !["text", "image", "link", "miniprogrampage"].contains(&msgtype)
            {
                return err(
                    40035,
                    &format!("invalid args: {msgtype} is not a Mini Program customer message"),
                );
            }
            if let Err(refused) = spend(s, appid, &touser) {
                return refused;
            }
            // A message ends the typing indicator.
            s.typing_until.remove(&(appid.to_owned(), touser));
            s.sent.push(v);
            err(0, "ok")
        }
        "/cgi-bin/message/custom/typing" | "/cgi-bin/message/custom/business/typing" => {
            let business = path.ends_with("/business/typing");
            if business != s.mini_programs.contains(appid) {
                return err(48001, "api unauthorized");
            }
            typing(s, appid, seen)
        }
        "/cgi-bin/media/upload" => {
            let t = q.get("type").cloned().unwrap_or_default();
            if !["image", "voice", "video", "thumb"].contains(&t.as_str()) {
                return err(40004, "invalid media type");
            }
            match multipart_media(seen) {
                Ok((filename, ct, bytes)) => {
                    let id = format!("MEDIA_{}", s.uploads.len() + 1);
                    s.media
                        .insert(id.clone(), (bytes.clone(), ct.clone(), filename.clone()));
                    s.uploads.push((t.clone(), filename, ct, bytes));
                    Reply::json(json!({"type": t, "media_id": id, "created_at": 1_700_000_000}))
                }
                Err(e) => err(41005, &format!("media data missing: {e}")),
            }
        }
        "/cgi-bin/media/get" => {
            let id = q.get("media_id").cloned().unwrap_or_default();
            if id == "VIDEO_1" {
                let url = format!(
                    "http://{}/video/1",
                    seen.headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                );
                // WeChat's real answer for videos is JSON with a text/plain type.
                let mut r = Reply::json(json!({ "video_url": url }));
                r.headers = vec![("content-type", "text/plain".into())];
                return r;
            }
            match s.media.get(&id) {
                Some((bytes, ct, _)) => Reply {
                    status: 200,
                    headers: vec![
                        ("content-type", ct.clone()),
                        (
                            "content-disposition",
                            format!("attachment; filename=\"{id}.jpg\""),
                        ),
                    ],
                    body: bytes.clone(),
                    delay: Duration::ZERO,
                },
                None => err(40007, "invalid media_id"),
            }
        }
        "/cgi-bin/user/info" => {
            let openid = q.get("openid").cloned().unwrap_or_default();
            let remark = s.remarks.get(&openid).cloned().unwrap_or_default();
            Reply::json(json!({
                "subscribe": 1, "openid": openid, "language": q.get("lang"),
                "subscribe_time": 1_382_694_957, "remark": remark, "groupid": 0,
                "tagid_list": [128, 2], "subscribe_scene": "ADD_SCENE_QR_CODE",
                "qr_scene": 98765, "qr_scene_str": ""
            }))
        }
        "/cgi-bin/template/get_all_private_template" => Reply::json(json!({
            "template_list": [{
                "template_id": "iPk5sOIt5X_flOVKn5GrTFpncEYTojx6ddbt8WYoV5s",
                "title": "Reward Collection Reminder",
                "primary_industry": "IT Technology",
                "deputy_industry": "Internet|E-commerce",
                "content": "{ {result.DATA} }\n\nReward Amount:{ {withdrawMoney.DATA} }",
                "example": "You have submitted a reward application"
            }]
        })),
        "/cgi-bin/message/template/send" => {
            let Ok(v) = serde_json::from_slice::<Value>(&seen.body) else {
                return err(47001, "data format error");
            };
            if v["touser"].as_str().is_none() || v["template_id"].as_str().is_none() {
                return err(40035, "invalid args");
            }
            s.template_sends.push(v);
            Reply::json(json!({"errcode": 0, "errmsg": "ok", "msgid": 200_228_332}))
        }
        _ => err(48001, "api unauthorized"),
    }
}
