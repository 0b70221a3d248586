//! A stand-in Dialogue Platform (chatbot.weixin.qq.com): `POST /openapi/sendmsg/{TOKEN}`
//! decrypts what it gets with the configured key, through `tests/chatbot_crypto.py` (not
//! our crypto), checks the receive-id and the XML fields, records them, and answers the
//! documented error codes on demand.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::{Reply, Seen, StandIn};

pub const PLATFORM_APPID: &str = "wxchatbotplatform1";
pub const PLATFORM_TOKEN: &str = "platformTOKEN0123";
pub const PLATFORM_KEY: &str = "chatbotKEY0123456789abcdefghijklmnopqrstuvw";

/// Runs the independent crypto helper.
pub fn py_crypto(args: &[&str], input: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/chatbot_crypto.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with `cryptography` (pip install 'moto[server]' brings it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chatbot_crypto.py {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Encrypts like the platform does for its hand-off callback.
pub fn platform_encrypt(plain: &str) -> String {
    py_crypto(&["encrypt", PLATFORM_KEY, PLATFORM_APPID], plain)
}

#[derive(Default)]
pub struct PlatformState {
    /// The XML fields of every accepted sendmsg.
    pub received: Vec<HashMap<String, String>>,
    pub attempts: usize,
    /// (HTTP status, errcode) to answer next.
    pub inject: VecDeque<(u16, i64)>,
}

pub struct PlatformStandIn {
    pub server: StandIn,
    pub state: Arc<Mutex<PlatformState>>,
}

impl PlatformStandIn {
    pub fn received(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().received.clone()
    }
}

fn answer(status: u16, v: Value) -> Reply {
    let mut r = Reply::json(v);
    r.status = status;
    r
}

/// The flat fields of `<xml>...</xml>` (values in CDATA or not).
fn fields(xml: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let inner = xml
        .trim()
        .trim_start_matches("<xml>")
        .trim_end_matches("</xml>");
    let mut rest = inner;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let name = rest[open + 1..open + close].to_owned();
        let after = &rest[open + close + 1..];
        let end_tag = format!("</{name}>");
        let Some(end) = after.find(&end_tag) else {
            break;
        };
        let value = after[..end]
            .trim_start_matches("<![CDATA[")
            .trim_end_matches("]]>")
            .to_owned();
        out.insert(name, value);
        rest = &after[end + end_tag.len()..];
    }
    out
}

pub async fn start() -> PlatformStandIn {
    let state = Arc::new(Mutex::new(PlatformState::default()));
    let st = state.clone();
    let server = StandIn::start_raw(Arc::new(move |seen: &Seen| {
        let mut s = st.lock().unwrap();
        s.attempts += 1;
        if let Some((status, code)) = s.inject.pop_front() {
            return if status >= 500 {
                Reply {
                    status,
                    headers: vec![("content-type", "text/html".into())],
                    body: Bytes::from_static(b"<html>busy</html>"),
                    delay: std::time::Duration::ZERO,
                }
            } else {
                answer(status, json!({"errcode": code, "errmsg": "injected"}))
            };
        }
        if seen.uri != format!("/openapi/sendmsg/{PLATFORM_TOKEN}") {
            return answer(
                200,
                json!({"errcode": 1001, "errmsg": "TOKEN is not valid"}),
            );
        }
        let Some(enc) = serde_json::from_slice::<Value>(&seen.body)
            .ok()
            .and_then(|v| v["encrypt"].as_str().map(str::to_owned))
        else {
            return answer(200, json!({"errcode": 1013, "errmsg": "no encrypt field"}));
        };
        let plain: Value =
            serde_json::from_str(&py_crypto(&["decrypt", PLATFORM_KEY], &enc)).unwrap_or_default();
        if plain["receive_id"] != PLATFORM_APPID {
            return answer(200, json!({"errcode": 1013, "errmsg": "decrypt failed"}));
        }
        let f = fields(plain["msg"].as_str().unwrap_or(""));
        for required in ["openid", "msg", "channel"] {
            if f.get(required).is_none_or(String::is_empty) {
                return answer(
                    200,
                    json!({"errcode": 1008, "errmsg": "appid, openid, msg cannot be empty"}),
                );
            }
        }
        s.received.push(f);
        answer(200, json!({"errcode": 0, "msg": "Success"}))
    }))
    .await;
    PlatformStandIn { server, state }
}
