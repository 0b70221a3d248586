//! A stand-in Tencent IM REST server: it checks every request's UserSig by decoding it and
//! recomputing the HMAC itself, records imports, deletes and sends, answers `sendmsg` from
//! a customer who was never imported with 20003 as Tencent does, and returns injected
//! error codes on demand. It keeps Tencent's rules: a deleted UserID cannot be imported
//! again (70399), a trial app holds 100 accounts (70398), custom profile fields must exist
//! (`profile_tags`), and `query_online_status` answers each agent's state (`online`).
//! Also: a callback sender that signs like Tencent, and agents' messages as TUIKit and its
//! customer-service plugin send them (typing states online-only, and only to a customer
//! whose last message asked for them).

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Digest;

use crate::{Reply, Seen, StandIn};

pub const SDKAPPID: u64 = 1_400_000_000;
pub const SECRET_KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
pub const ADMIN: &str = "administrator";
pub const CALLBACK_TOKEN: &str = "tim-callback-token";

#[derive(Default)]
pub struct TimState {
    pub imported: HashSet<String>,
    pub deleted: Vec<String>,
    pub sends: Vec<Value>,
    pub bad_sigs: usize,
    pub inject_sendmsg: VecDeque<i64>,
    /// Accounts the app may hold (a trial app: 100).
    pub max_accounts: usize,
    /// The `Nick` each account was imported with.
    pub nicks: std::collections::HashMap<String, String>,
    /// Custom profile fields defined in the console.
    pub profile_tags: HashSet<String>,
    /// Custom profile values set: (UserID, tag) → value.
    pub profiles: std::collections::HashMap<(String, String), String>,
    /// Agents' states for `query_online_status` ("Online", "PushOnline"); others Offline.
    pub online: std::collections::HashMap<String, &'static str>,
    pub status_queries: usize,
    /// When each (From, To) last sent, with its CloudCustomData (TUIKit's typing rule).
    pub last_sent: std::collections::HashMap<(String, String), (std::time::Instant, String)>,
}

pub struct TimStandIn {
    pub server: StandIn,
    pub state: Arc<Mutex<TimState>>,
}

fn fail(code: i64, info: &str) -> Reply {
    Reply::json(json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info}))
}

/// The stand-in's own UserSig check (decode, inflate, recompute the HMAC).
fn usersig_ok(sig: &str, identifier: &str) -> bool {
    let std_b64: String = sig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let Ok(z) = base64::engine::general_purpose::STANDARD.decode(std_b64) else {
        return false;
    };
    let mut text = String::new();
    if flate2::read::ZlibDecoder::new(z.as_slice())
        .read_to_string(&mut text)
        .is_err()
    {
        return false;
    }
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    if doc["TLS.sdkappid"] != SDKAPPID || doc["TLS.identifier"] != identifier {
        return false;
    }
    let content = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{SDKAPPID}\nTLS.time:{}\nTLS.expire:{}\n",
        doc["TLS.time"], doc["TLS.expire"]
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(content.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    doc["TLS.sig"] == want.as_str()
}

pub async fn start() -> TimStandIn {
    let state = Arc::new(Mutex::new(TimState {
        max_accounts: 100,
        ..TimState::default()
    }));
    let st = state.clone();
    let server = StandIn::start_raw(Arc::new(move |seen: &Seen| {
        let path = seen.uri.split('?').next().unwrap_or("").to_owned();
        let q: std::collections::HashMap<String, String> = seen
            .uri
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let mut s = st.lock().unwrap();
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        if get("sdkappid") != SDKAPPID.to_string() {
            return fail(60006, "SDKAppID invalid");
        }
        if get("identifier") != ADMIN {
            return fail(60010, "admin required");
        }
        if get("random").parse::<u32>().is_err() || get("contenttype") != "json" {
            return fail(60002, "bad query");
        }
        if !usersig_ok(&get("usersig"), ADMIN) {
            s.bad_sigs += 1;
            return fail(70003, "usersig invalid");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
            return fail(60003, "json parse error");
        };
        match path.as_str() {
            "/v4/im_open_login_svc/account_import" => {
                let Some(id) = body["UserID"].as_str().filter(|i| !i.is_empty() && i.len() <= 32) else {
                    return fail(70402, "UserID invalid");
                };
                // Tencent's rules ("删除账号", "导入单个账号"): a deleted UserID cannot be
                // imported again for 3 months on paid editions; a trial app holds 100.
                if s.deleted.iter().any(|d| d == id) {
                    return fail(70399, "the account was deleted less than 3 months ago");
                }
                if !s.imported.contains(id) && s.imported.len() >= s.max_accounts {
                    return fail(70398, "account count limit exceeded");
                }
                s.imported.insert(id.to_owned());
                if let Some(nick) = body["Nick"].as_str() {
                    s.nicks.insert(id.to_owned(), nick.to_owned());
                }
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}))
            }
            "/v4/profile/portrait_set" | "/v4/profile/portrait_get" => {
                let tags: Vec<String> = if path.ends_with("set") {
                    body["ProfileItem"].as_array().cloned().unwrap_or_default().iter()
                        .map(|i| i["Tag"].as_str().unwrap_or("").to_owned()).collect()
                } else {
                    body["TagList"].as_array().cloned().unwrap_or_default().iter()
                        .map(|t| t.as_str().unwrap_or("").to_owned()).collect()
                };
                if let Some(t) = tags.iter().find(|t| t.starts_with("Tag_Profile_Custom_") && !s.profile_tags.contains(*t)) {
                    return fail(40009, &format!("profile tag {t} is not defined"));
                }
                if path.ends_with("set") {
                    let user = body["From_Account"].as_str().unwrap_or("").to_owned();
                    for item in body["ProfileItem"].as_array().cloned().unwrap_or_default() {
                        let tag = item["Tag"].as_str().unwrap_or("").to_owned();
                        let value = item["Value"].as_str().unwrap_or("").to_owned();
                        s.profiles.insert((user.clone(), tag), value);
                    }
                }
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "UserProfileItem": []}))
            }
            "/v4/openim/query_online_status" => {
                s.status_queries += 1;
                let ids = body["To_Account"].as_array().cloned().unwrap_or_default();
                if ids.is_empty() || ids.len() > 500 {
                    return fail(90003, "To_Account must list 1-500 UserIDs");
                }
                let result: Vec<Value> = ids.iter().filter_map(Value::as_str).map(|id| {
                    json!({"To_Account": id, "Status": s.online.get(id).copied().unwrap_or("Offline")})
                }).collect();
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "QueryResult": result}))
            }
            "/v4/im_open_login_svc/account_delete" => {
                for item in body["DeleteItem"].as_array().cloned().unwrap_or_default() {
                    let id = item["UserID"].as_str().unwrap_or("").to_owned();
                    s.imported.remove(&id);
                    s.deleted.push(id);
                }
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ResultItem": []}))
            }
            "/v4/openim/sendmsg" => {
                if let Some(code) = s.inject_sendmsg.pop_front() {
                    return fail(code, "injected");
                }
                if body["MsgRandom"].as_u64().is_none_or(|r| r > u64::from(u32::MAX)) {
                    return fail(90005, "MsgRandom missing");
                }
                if body["To_Account"].as_str().is_none() {
                    return fail(90003, "To_Account missing");
                }
                let from = body["From_Account"].as_str().unwrap_or("");
                if !s.imported.contains(from) {
                    return fail(20003, "From_Account not imported");
                }
                let to = body["To_Account"].as_str().unwrap_or("").to_owned();
                let data = body["CloudCustomData"].as_str().unwrap_or("").to_owned();
                s.last_sent.insert((from.to_owned(), to), (std::time::Instant::now(), data));
                s.sends.push(body);
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                                   "MsgTime": 1_700_000_000, "MsgKey": "89541_2574206_1572870301"}))
            }
            _ => fail(60002, "unknown command"),
        }
    }))
    .await;
    TimStandIn { server, state }
}

/// The query Tencent puts on a callback, signed with `token` at `request_time`.
pub fn callback_query(sdkappid: u64, token: &str, request_time: i64) -> String {
    let sign = sha2::Sha256::digest(format!("{token}{request_time}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    format!(
        "SdkAppid={sdkappid}&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json\
         &ClientIP=10.0.0.1&OptPlatform=RESTAPI&Sign={sign}&RequestTime={request_time}"
    )
}

/// An agent's after-send callback body.
pub fn after_send(from: &str, to: &str, msg_key: &str, body: Value) -> Value {
    json!({
        "CallbackCommand": "C2C.CallbackAfterSendMsg",
        "From_Account": from, "To_Account": to,
        "MsgSeq": 48374, "MsgRandom": 2_837_546, "MsgTime": 1_557_481_126,
        "MsgKey": msg_key, "OnlineOnlyFlag": 0, "SendMsgResult": 0, "ErrorInfo": "send msg succeed",
        "UnreadMsgNum": 0, "MsgBody": body, "CloudCustomData": ""
    })
}

impl TimStandIn {
    /// Sets an agent's state as `query_online_status` answers it.
    pub fn set_online(&self, agent: &str, status: &'static str) {
        self.state
            .lock()
            .unwrap()
            .online
            .insert(agent.to_owned(), status);
    }

    /// TUIKit's typing state from `agent` to `customer`, as its after-send callback, or
    /// None where TUIKit would not send one: only to a peer whose last message (under 30 s
    /// old) carries `{"messageFeature":{"needTyping":1,...}}` ("C2CChatPresenter.
    /// isSupportTyping", TencentCloud/TIMSDK).
    pub fn typing(&self, agent: &str, customer: &str, on: bool, msg_key: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        let (at, data) = s.last_sent.get(&(customer.to_owned(), agent.to_owned()))?;
        let feature: Value = serde_json::from_str(data).ok()?;
        if feature["messageFeature"]["needTyping"] != 1
            || at.elapsed() > std::time::Duration::from_secs(30)
        {
            return None;
        }
        let data = json!({
            "businessID": "user_typing_status", "typingStatus": i32::from(on), "version": 1,
            "userAction": if on { 14 } else { 0 },
            "actionParam": if on { "EIMAMSG_InputStatus_Ing" } else { "EIMAMSG_InputStatus_End" },
        });
        let mut body = after_send(agent, customer, msg_key, custom(&data, ""));
        body["OnlineOnlyFlag"] = json!(1);
        Some(body)
    }
}

/// One TIMCustomElem with `data` (JSON) and `desc`.
pub fn custom(data: &Value, desc: &str) -> Value {
    json!([{ "MsgType": "TIMCustomElem", "MsgContent": { "Data": data.to_string(), "Desc": desc, "Ext": "" } }])
}

/// The customer-service plugin's message `src` with `fields`, as its Data.
pub fn plugin(src: &str, fields: Value) -> Value {
    let mut v = json!({ "customerServicePlugin": 0, "src": src });
    if let (Some(o), Some(f)) = (v.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    v
}

/// A branch menu (src 15), as `TUICustomerServiceMessageParser.getBranchInfo` reads it.
pub fn branch_menu(header: &str, items: &[&str]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|i| json!({ "content": i, "desc": "" }))
        .collect();
    plugin(
        "15",
        json!({ "content": { "header": header, "items": items, "tail": "" } }),
    )
}

/// A satisfaction request (src 9), as `getEvaluationInfo` reads it.
pub fn rating_request(head: &str, options: &[(&str, &str)], session: &str) -> Value {
    let menu: Vec<Value> = options
        .iter()
        .map(|(id, c)| json!({ "id": id, "content": c }))
        .collect();
    plugin(
        "9",
        json!({ "menuContent": { "head": head, "type": 2, "menu": menu, "sessionId": session, "tail": "", "expireTime": 0 } }),
    )
}

/// A product card (src 22), as `getCardInfo` reads it.
pub fn product_card(header: &str, desc: &str, pic: &str, url: &str) -> Value {
    plugin(
        "22",
        json!({ "content": { "header": header, "desc": desc, "pic": pic, "url": url } }),
    )
}
