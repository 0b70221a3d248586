//! A stand-in Tencent IM REST server: it checks every request's UserSig by decoding it and
//! recomputing the HMAC itself, records imports, deletes and sends, answers `sendmsg` from
//! a customer who was never imported with 20003 as Tencent does, and returns injected
//! error codes on demand. Also: a callback sender that signs like Tencent.

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
                Reply::json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}))
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
