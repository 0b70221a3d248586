//! Udesk's message interface end to end: pushes forwarded to a stand-in im_callback that
//! checks the sign as the documentation defines it, each status rendered for the customer, media
//! handed over as staged URLs (moto's S3, and the local server's signed links), the agent
//! push route, and the doctor.

use std::sync::Arc;

use serde_json::{Value, json};
use wxdesk::config::Secret;
use wxdesk::desk::udesk_im::sign;
use wxdesk::store::Stores;
use wxdesk::wechat::xml::Doc;
use wxdesk_tests::wechat::{self, WechatStandIn};
use wxdesk_tests::*;

const KEY: &str = "udesk-im-test-key";
const IM_APPID: &str = "wxim000000000001";
const IM_MP_APPID: &str = "wximmp0000000002";

struct Rig {
    base: String,
    wx: WechatStandIn,
    desk: StandIn,
    svc: Arc<wxdesk::Services>,
    http: reqwest::Client,
}

fn config(store: &str, wx: &str, desk: &str, key: &str, extra: &str) -> String {
    let app = |appid: &str, kind: &str| {
        // Each account has keys of its own (doctor fails shared ones).
        let gateway_key = if appid == IM_APPID {
            GATEWAY_KEY.to_owned()
        } else {
            format!("{GATEWAY_KEY}-{appid}")
        };
        format!(
            r#"
[[apps]]
appid = "{appid}"
kind = "{kind}"
token = "{TOKEN}"
secret = "test-secret"
gateway_key = "{gateway_key}"
[apps.desk]
kind = "udesk_im"
url = "{desk}/spa1/im_callback"
key = "{key}"
"#
        )
    };
    format!(
        "{store}\n[wechat]\napi_base = \"{wx}\"\n{extra}\n{}{}",
        app(IM_APPID, "official_account"),
        app(IM_MP_APPID, "mini_program")
    )
}

/// On moto (S3 media) or on the embedded store with the local server serving media.
async fn rig(name: &str, aws: bool) -> Rig {
    let wx = wechat::start().await;
    let desk = udesk_im(KEY).await;
    // The local server's address must be in the config before it starts: bind first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (store, extra) = if aws {
        (
            "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n".to_owned(),
            String::new(),
        )
    } else {
        (
            embedded_store(name),
            format!("[media]\npublic_base_url = \"{base}\"\nurl_key = \"test-url-key\"\n"),
        )
    };
    let cfg =
        wxdesk::Config::parse(&config(&store, &wx.base(), &desk.url(""), KEY, &extra)).unwrap();
    let stores = if aws {
        aws_stores().await
    } else {
        Stores::open(&cfg.store).await.unwrap()
    };
    let svc = Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ));
    serve_local(svc.clone(), listener);
    Rig {
        base,
        wx,
        desk,
        svc,
        http: wxdesk_tests::http(),
    }
}

fn xml_push(msg_type: &str, fields: &str, msg_id: u64, ts: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_im]]></ToUserName><FromUserName><![CDATA[oImUser]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{fields}<MsgId>{msg_id}</MsgId></xml>"
    )
}

impl Rig {
    async fn push(&self, appid: &str, body: String) -> String {
        let ts = now_secs();
        self.http
            .post(format!(
                "{}/wechat/{appid}?{}",
                self.base,
                plain_query(ts, "n1")
            ))
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn text(&self, content: &str, msg_id: u64) -> String {
        let body = xml_push(
            "text",
            &format!("<Content><![CDATA[{content}]]></Content>"),
            msg_id,
            now_secs(),
        );
        self.push(IM_APPID, body).await
    }

    fn last_desk_call(&self) -> (std::collections::HashMap<String, String>, Doc) {
        let (uri, body) = self.desk.requests.lock().unwrap().last().cloned().unwrap();
        let q = uri
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        (q, Doc::parse_xml(&body).unwrap())
    }
}

#[test]
fn sign_of_the_documented_example() {
    assert_eq!(
        sign::sign(
            "13574221234",
            "894733082@qq.com",
            "20151124141451",
            &Secret::new("mysecret")
        ),
        "BB39DD501EE22BC3559AE5D42CCC9B22"
    );
}

#[tokio::test]
async fn text_is_forwarded_signed_and_chatting_msg_is_the_reply() {
    let rig = rig("text", false).await;
    let reply = rig.text("When will my order ship?", 9001).await;
    let doc = Doc::parse_xml(&reply).unwrap();
    assert_eq!(
        doc.get("Content"),
        Some("Test Customer Service 1 is serving you!")
    );
    assert_eq!(doc.get("ToUserName"), Some("oImUser"));
    assert_eq!(doc.get("MsgType"), Some("text"));
    let (q, body) = rig.last_desk_call();
    // The stand-in checked the sign; the timestamp is Shanghai time, within a minute of now.
    let ts = &q["timestamp"];
    let t = wxdesk::support::localtime::parse_local_timestamp(ts, 8 * 3600).unwrap();
    assert!((t - now_secs()).abs() < 60, "{ts}");
    assert_eq!((q["number"].as_str(), q["email"].as_str()), ("", ""));
    assert_eq!(body.get("FromUserName"), Some("oImUser"));
    assert_eq!(body.get("Content"), Some("When will my order ship?"));
    assert_eq!(body.get("MsgType"), Some("text"));
    assert_eq!(body.get("MsgId"), Some("9001"));
    assert_eq!(body.get("Number"), Some(""));
}

#[tokio::test]
async fn each_status_becomes_what_the_customer_sees() {
    let rig = rig("status", false).await;
    let content = |r: &str| {
        Doc::parse_xml(r)
            .ok()
            .and_then(|d| d.get("Content").map(str::to_owned))
    };
    assert_eq!(
        content(&rig.text("queue", 9101).await).as_deref(),
        Some("You are number 3 in the queue. An agent will be with you shortly.")
    );
    assert!(
        content(&rig.text("offline", 9102).await)
            .unwrap()
            .contains("offline")
    );
    for (i, quiet) in ["quiet", "refuse", "garbage"].iter().enumerate() {
        assert_eq!(rig.text(quiet, 9110 + i as u64).await, "success", "{quiet}");
    }
    // Udesk's "unknown error" gives the customer words, not silence.
    assert!(
        content(&rig.text("lost", 9120).await)
            .unwrap()
            .contains("could not reach an agent")
    );
    assert_eq!(rig.desk.hits(), 6);
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_udesk_and_the_customer_gets_success() {
    let wx = wechat::start().await;
    let desk = udesk_im(KEY).await;
    let text = config(
        &embedded_store("wrongkey"),
        &wx.base(),
        &desk.url(""),
        "not-the-key",
        "",
    );
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc.clone()).await;
    let ts = now_secs();
    let r = wxdesk_tests::http()
        .post(format!("{base}/wechat/{IM_APPID}?{}", plain_query(ts, "k")))
        .body(xml_push("text", "<Content>hi</Content>", 9201, ts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "success");
    // The doctor says why.
    let checks = wxdesk::app::doctor::run(&svc, Some(IM_APPID)).await;
    let lines: Vec<String> = checks.iter().map(ToString::to_string).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAIL") && l.contains("sign verification failed")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("not-the-key")));
}

#[tokio::test]
async fn doctor_passes_against_a_working_desk() {
    let rig = rig("doctor", false).await;
    let checks = wxdesk::app::doctor::run(&rig.svc, None).await;
    assert_eq!(checks.len(), 6);
    for c in &checks {
        assert!(c.result.is_ok(), "{c}");
    }
    assert_eq!(rig.wx.token_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pic_url_is_a_presigned_s3_url_to_the_staged_bytes() {
    let rig = rig("image", true).await;
    let bytes = b"\x89PNG\r\n\x1a\n customer photo".to_vec();
    rig.wx.add_media("IMG_1", &bytes, "image/png");
    let reply = rig
        .push(
            IM_APPID,
            xml_push(
                "image",
                "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[IMG_1]]></MediaId>",
                9301,
                now_secs(),
            ),
        )
        .await;
    assert!(reply.contains("serving you"), "{reply}");
    let (_, body) = rig.last_desk_call();
    assert_eq!(body.get("MsgType"), Some("image"));
    assert_eq!(body.get("MediaId"), Some("IMG_1"));
    let pic = body.get("PicUrl").unwrap().to_owned();
    assert!(
        pic.contains("X-Amz-Signature") && pic.contains("X-Amz-Expires=86400"),
        "{pic}"
    );
    let got = wxdesk_tests::get(&pic).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn voice_media_url_is_served_by_the_local_server_under_a_signed_link() {
    let rig = rig("voice", false).await;
    let bytes = b"#!AMR\n customer voice".to_vec();
    rig.wx.add_media("VOICE_1", &bytes, "audio/amr");
    rig.push(
        IM_APPID,
        xml_push(
            "voice",
            "<MediaId><![CDATA[VOICE_1]]></MediaId><Format><![CDATA[amr]]></Format>",
            9401,
            now_secs(),
        ),
    )
    .await;
    let (_, body) = rig.last_desk_call();
    assert_eq!(body.get("MsgType"), Some("voice"));
    assert_eq!(body.get("Format"), Some("amr"));
    let url = body.get("MediaUrl").unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/media/", rig.base)), "{url}");
    let got = wxdesk_tests::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // A tampered or missing signature is refused.
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(wxdesk_tests::get(&tampered).await.unwrap().status(), 403);
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(wxdesk_tests::get(&unsigned).await.unwrap().status(), 403);
}

#[tokio::test]
async fn events_go_as_text_when_listed_and_not_otherwise() {
    let rig = rig("events", false).await;
    let ts = now_secs();
    let sub = xml_push(
        "event",
        "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
        0,
        ts,
    )
    .replace("<MsgId>0</MsgId>", "");
    rig.push(IM_APPID, sub).await;
    let (_, body) = rig.last_desk_call();
    assert_eq!(body.get("MsgType"), Some("text"));
    assert_eq!(
        body.get("Content"),
        Some("[The customer followed the account]")
    );
    let hits = rig.desk.hits();
    let click = xml_push(
        "event",
        "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[K]]></EventKey>",
        0,
        ts + 1,
    )
    .replace("<MsgId>0</MsgId>", "");
    assert_eq!(rig.push(IM_APPID, click).await, "success");
    assert_eq!(rig.desk.hits(), hits, "CLICK is not in event_texts");
}

/// Two customers' events in the same second: Udesk's MsgId is a 64-bit integer per
/// message, so each gets its own (derived from the inbox key), not the shared CreateTime.
#[tokio::test]
async fn two_customers_events_in_one_second_have_distinct_msg_ids() {
    let rig = rig("event-ids", false).await;
    let ts = now_secs();
    let mut ids = Vec::new();
    for who in ["oImUser", "oImOther"] {
        let sub = xml_push(
            "event",
            "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
            0,
            ts,
        )
        .replace("<MsgId>0</MsgId>", "")
        .replace("oImUser", who);
        rig.push(IM_APPID, sub).await;
        let (_, body) = rig.last_desk_call();
        ids.push(body.get("MsgId").unwrap().parse::<u64>().unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|i| *i > 0 && *i < 1 << 63), "{ids:?}");
    assert!(
        ids.iter().all(|i| *i != ts as u64),
        "not CreateTime: {ids:?}"
    );
}

#[tokio::test]
async fn mini_program_gets_the_answer_by_custom_send() {
    let rig = rig("mp", false).await;
    let body = xml_push(
        "text",
        "<Content><![CDATA[hello]]></Content>",
        9501,
        now_secs(),
    );
    assert_eq!(rig.push(IM_MP_APPID, body).await, "success");
    assert_eq!(
        rig.wx.sent(),
        vec![
            json!({"touser":"oImUser","msgtype":"text","text":{"content":"Test Customer Service 1 is serving you!"}})
        ]
    );
}

fn signed(ts: &str, key: &str) -> String {
    sign::signed_query("", "", ts, &Secret::new(key))
}

#[tokio::test]
async fn agent_pushes_are_verified_and_delivered() {
    let rig = rig("push", false).await;
    let now_ts = wxdesk::support::localtime::local_timestamp(now_secs(), 8 * 3600);
    let url = |q: &str| format!("{}/udesk-im/{IM_APPID}/{GATEWAY_KEY}?{q}", rig.base);
    let post = |u: String, body: &'static str| {
        let http = rig.http.clone();
        async move {
            let r = http.post(u).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = post(
        url(&signed(&now_ts, KEY)),
        "touser=oImUser&msgtype=text&text[content]=hi",
    )
    .await;
    assert_eq!((status, v), (200, json!({"success": true})));
    assert_eq!(
        rig.wx.sent(),
        vec![json!({"touser":"oImUser","msgtype":"text","text":{"content":"hi"}})]
    );
    let json_body = r#"{"touser":"oImUser","msgtype":"image","image":{"media_id":"M1"}}"#;
    assert_eq!(
        post(url(&signed(&now_ts, KEY)), json_body).await.1,
        json!({"success": true})
    );
    // Refused: wrong key, no sign, a stale timestamp, an unconvertible body.
    let stale = wxdesk::support::localtime::local_timestamp(now_secs() - 3600, 8 * 3600);
    for (q, status) in [
        (signed(&now_ts, "wrong"), 401),
        (format!("number=&email=&timestamp={now_ts}"), 401),
        (signed(&stale, KEY), 401),
    ] {
        let (s, v) = post(url(&q), "touser=oImUser&msgtype=text&text[content]=x").await;
        assert_eq!(s, status, "{q}: {v}");
        assert_eq!(v["success"], false);
        assert!(v["msg"].as_str().unwrap().len() > 5);
    }
    let (s, v) = post(url(&signed(&now_ts, KEY)), "touser=oImUser&msgtype=text").await;
    assert_eq!(s, 400);
    assert!(v["msg"].as_str().unwrap().contains("text"), "{v}");
    assert_eq!(rig.wx.sent().len(), 2, "nothing refused reached WeChat");
}
