//! The local server end to end on loopback: WeChat pushes in every mode → wxdesk → a
//! stand-in Udesk → WeChat's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::signature::msg_signature;
use wxdesk::wechat::xml::Doc;
use wxdesk_tests::*;

struct Rig {
    base: String,
    desk: StandIn,
    svc: Arc<wxdesk::Services>,
    http: reqwest::Client,
}

async fn rig(name: &str) -> Rig {
    let desk = udesk_wechat().await;
    let store = embedded_store(name);
    let config =
        wxdesk::Config::parse(&config_text(&store, &desk.url("/weixin/chan"), "")).unwrap();
    let svc = Arc::new(wxdesk::Services::build(config).await.unwrap());
    let base = start_local(svc.clone()).await;
    Rig {
        base,
        desk,
        svc,
        http: wxdesk_tests::http(),
    }
}

impl Rig {
    async fn post(&self, appid: &str, query: &str, body: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/wechat/{appid}?{query}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn url_verification() {
    let rig = rig("verify").await;
    let ts = now_secs();
    let q = plain_query(ts, "n1");
    let ok = rig
        .http
        .get(format!(
            "{}/wechat/{APPID}?{q}&echostr=4375120948345356249",
            rig.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "4375120948345356249");
    let bad = q.replace("signature=", "signature=0");
    let r = rig
        .http
        .get(format!("{}/wechat/{APPID}?{bad}&echostr=1", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = rig
        .http
        .get(format!("{}/wechat/wxunknown?{q}&echostr=1", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let stale = plain_query(ts - 3600, "n1");
    let r = rig
        .http
        .get(format!("{}/wechat/{APPID}?{stale}&echostr=1", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(rig.desk.hits(), 0);
}

#[tokio::test]
async fn plain_text_push_gets_the_desks_passive_reply() {
    let rig = rig("plain").await;
    let ts = now_secs();
    let push = text_push("hello agent", 1001, ts);
    let (status, body) = rig.post(PLAIN_APPID, &plain_query(ts, "n2"), &push).await;
    assert_eq!(status, 200);
    let doc = Doc::parse_xml(&body).unwrap();
    assert_eq!(doc.get("Content"), Some("echo: hello agent"));
    assert_eq!(doc.get("ToUserName"), Some("oUser"));
    // The desk got the push exactly as WeChat sent it.
    assert_eq!(rig.desk.bodies(), vec![push.clone()]);
    // WeChat's retry gets the same answer and the desk is not called again.
    let (status, again) = rig.post(PLAIN_APPID, &plain_query(ts, "n3"), &push).await;
    assert_eq!((status, again), (200, body));
    assert_eq!(rig.desk.hits(), 1);
}

#[tokio::test]
async fn quiet_failing_and_garbage_desks_give_success() {
    let rig = rig("quiet").await;
    let ts = now_secs();
    // The failing one last: a later message of the same customer would queue behind it.
    for (i, content) in ["quiet", "garbage", "fail"].iter().enumerate() {
        let (status, body) = rig
            .post(
                PLAIN_APPID,
                &plain_query(ts, "n"),
                &text_push(content, 2000 + i as u64, ts),
            )
            .await;
        assert_eq!((status, body.as_str()), (200, "success"), "{content}");
    }
    assert_eq!(rig.desk.hits(), 3);
    let now = wxdesk::support::clock::unix_ms();
    let failed = rig
        .svc
        .inbox
        .get(&format!("{PLAIN_APPID}#msg#2002#oUser#{ts}"), now)
        .await
        .unwrap()
        .unwrap();
    // Left to the outbox, which tries again after `first_retry_secs`.
    assert_eq!(failed.state, wxdesk::store::EntryState::Pending);
    assert!(failed.last_error.unwrap().contains("500"));
    // The desk took the garbage-answered one: it is not sent again.
    let garbage = rig
        .svc
        .inbox
        .get(&format!("{PLAIN_APPID}#msg#2001#oUser#{ts}"), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(garbage.state, wxdesk::store::EntryState::Answered);
    let quiet = rig
        .svc
        .inbox
        .get(&format!("{PLAIN_APPID}#msg#2000#oUser#{ts}"), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quiet.state, wxdesk::store::EntryState::Answered);
}

#[tokio::test]
async fn slow_desk_is_answered_within_the_deadline() {
    let rig = rig("slow").await;
    let ts = now_secs();
    let started = Instant::now();
    let (status, body) = rig
        .post(
            PLAIN_APPID,
            &plain_query(ts, "n"),
            &text_push("slow", 3000, ts),
        )
        .await;
    let took = started.elapsed();
    assert_eq!((status, body.as_str()), (200, "success"));
    assert!(
        took < Duration::from_millis(4800),
        "answered after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(4000),
        "gave up too early: {took:?}"
    );
    let entry = rig
        .svc
        .inbox
        .get(
            &format!("{PLAIN_APPID}#msg#3000#oUser#{ts}"),
            wxdesk::support::clock::unix_ms(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, wxdesk::store::EntryState::Pending);
    assert!(
        entry.payload.contains("slow"),
        "the inbox keeps the message for redelivery"
    );
}

#[tokio::test]
async fn three_identical_concurrent_pushes_reach_the_desk_once() {
    let rig = Arc::new(rig("race").await);
    let ts = now_secs();
    let push = text_push("only once", 4000, ts);
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let (rig, push) = (rig.clone(), push.clone());
            tokio::spawn(async move {
                rig.post(PLAIN_APPID, &plain_query(ts, &format!("r{i}")), &push)
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        answers.push(body);
    }
    assert_eq!(rig.desk.hits(), 1, "desk saw {:?}", rig.desk.bodies());
    // One got the reply; the others got it too (answered) or `success` (in flight).
    assert!(answers.iter().any(|a| a.contains("echo: only once")));
    assert!(
        answers
            .iter()
            .all(|a| a == "success" || a.contains("echo: only once"))
    );
}

#[tokio::test]
async fn safe_mode_xml_push_gets_an_encrypted_reply() {
    let rig = rig("safe").await;
    let ts = now_secs();
    let (query, body) = safe_mode_push(
        APPID,
        &text_push("secret hello", 5000, ts),
        false,
        ts,
        "nonce5",
    );
    let (status, reply) = rig.post(APPID, &query, &body).await;
    assert_eq!(status, 200, "{reply}");
    let doc = Doc::parse_xml(&reply).unwrap();
    let (enc, rts, nonce) = (
        doc.get("Encrypt").unwrap(),
        doc.get("TimeStamp").unwrap(),
        doc.get("Nonce").unwrap(),
    );
    assert_eq!(
        doc.get("MsgSignature").unwrap(),
        msg_signature(TOKEN, rts, nonce, enc)
    );
    let plain = MsgCrypt::new(AES_KEY).unwrap().decrypt(enc, APPID).unwrap();
    assert_eq!(
        Doc::parse_xml(&plain).unwrap().get("Content"),
        Some("echo: secret hello")
    );
    // The desk got plaintext XML.
    assert!(rig.desk.bodies()[0].contains("<![CDATA[secret hello]]>"));
}

#[tokio::test]
async fn mini_program_json_safe_mode_gets_an_encrypted_json_reply() {
    let rig = rig("mpjson").await;
    let ts = now_secs();
    // transfer_customer_service is the passive reply Mini Programs accept (others go
    // through custom send: tests/udesk_gateway.rs).
    let push = serde_json::json!({"ToUserName":"gh_mp","FromUserName":"oMp","CreateTime":ts,"MsgType":"text","Content":"transfer","MsgId":6000_u64}).to_string();
    let (query, body) = safe_mode_push(MP_APPID, &push, true, ts, "n6");
    let (status, reply) = rig.post(MP_APPID, &query, &body).await;
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let enc = v["Encrypt"].as_str().unwrap();
    assert!(v["TimeStamp"].is_i64());
    assert_eq!(
        v["MsgSignature"],
        msg_signature(
            TOKEN,
            &v["TimeStamp"].to_string(),
            v["Nonce"].as_str().unwrap(),
            enc
        )
    );
    let plain = MsgCrypt::new(AES_KEY)
        .unwrap()
        .decrypt(enc, MP_APPID)
        .unwrap();
    let inner: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(inner["MsgType"], "transfer_customer_service");
    assert_eq!(inner["ToUserName"], "oMp");
    assert_eq!(inner["CreateTime"], 12345678);
    // The desk got the JSON push converted to WeChat XML.
    let sent = Doc::parse_xml(&rig.desk.bodies()[0]).unwrap();
    assert_eq!(sent.get("Content"), Some("transfer"));
    assert_eq!(sent.get("MsgId"), Some("6000"));
}

#[tokio::test]
async fn bad_input_is_refused_and_never_reaches_the_desk() {
    let rig = rig("bad").await;
    let ts = now_secs();
    // A nonce of its own per case: a plain-mode signature carries only its first body.
    let q = || plain_query(ts, "nb");
    let cases: Vec<(&str, String, String, u16)> = vec![
        (PLAIN_APPID, q(), "<xml><FromUserName>".into(), 400),
        (PLAIN_APPID, q(), "{\"FromUserName\": ".into(), 400),
        (PLAIN_APPID, q(), "plain words".into(), 400),
        (PLAIN_APPID, q(), "x".repeat(70 * 1024), 413),
        (
            APPID,
            format!("{}&encrypt_type=aes&msg_signature=00", q()),
            "<xml><Encrypt>abc</Encrypt></xml>".into(),
            401,
        ),
        (
            PLAIN_APPID,
            q().replace("nonce=nb", "nonce=nbX"),
            text_push("x", 1, ts),
            401,
        ),
        (
            PLAIN_APPID,
            q().replace("timestamp=", "timestamp=9"),
            text_push("x", 1, ts),
            403,
        ),
        (
            PLAIN_APPID,
            q().replace("&nonce=nb", ""),
            text_push("x", 1, ts),
            401,
        ),
    ];
    for (appid, query, body, want) in cases {
        let (status, msg) = rig.post(appid, &query, &body).await;
        assert_eq!(status, want, "{msg}");
        assert!(!msg.is_empty());
    }
    // Valid msg_signature over garbage base64, and over ciphertext under another key.
    for enc in [
        "@@not-base64@@".to_owned(),
        MsgCrypt::new(&"B".repeat(43))
            .unwrap()
            .encrypt("<xml/>", APPID),
    ] {
        let ts_s = ts.to_string();
        // Safe mode: msg_signature covers the body, so one query may be reused.
        let query = format!(
            "{}&encrypt_type=aes&msg_signature={}",
            signed_query(ts, "nb"),
            msg_signature(TOKEN, &ts_s, "nb", &enc)
        );
        let (status, msg) = rig
            .post(
                APPID,
                &query,
                &format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
            )
            .await;
        assert_eq!(status, 400, "{msg}");
        assert!(msg.contains("decrypt"), "{msg}");
    }
    assert_eq!(rig.desk.hits(), 0);
}

#[tokio::test]
async fn skipped_events_are_not_forwarded() {
    let rig = rig("skip").await;
    let ts = now_secs();
    let loc = format!(
        "<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName><CreateTime>{ts}</CreateTime>\
         <MsgType>event</MsgType><Event>LOCATION</Event><Latitude>1</Latitude><Longitude>2</Longitude><Precision>3</Precision></xml>"
    );
    assert_eq!(
        rig.post(PLAIN_APPID, &plain_query(ts, "e"), &loc).await,
        (200, "success".into())
    );
    assert_eq!(rig.desk.hits(), 0);
    let sub = loc.replace("LOCATION", "subscribe");
    let (status, body) = rig.post(PLAIN_APPID, &plain_query(ts, "e"), &sub).await;
    assert_eq!(status, 200);
    assert!(body.contains("echo: "), "{body}");
    assert_eq!(rig.desk.hits(), 1);
}

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    let dir = temp_dir("restart");
    let desk = udesk_wechat().await;
    let store = format!("[store]\nbackend = \"embedded\"\npath = {dir:?}\n");
    let text = config_text(&store, &desk.url("/weixin/chan"), "");
    let ts = now_secs();
    let push = text_push("remember me", 7000, ts);
    let first = {
        let svc = Arc::new(
            wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
                .await
                .unwrap(),
        );
        let base = start_local(svc.clone()).await;
        let r = wxdesk_tests::http()
            .post(format!(
                "{base}/wechat/{PLAIN_APPID}?{}",
                plain_query(ts, "a")
            ))
            .body(push.clone())
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
        // The server task keeps its Services; opening the store again below must not need it.
    };
    // Reopen the same directory in a fresh store (the first still holds the file lock in
    // this process, so read a copy of the file as a restarted process would).
    let copy = temp_dir("restart-copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("wxdesk.redb"), copy.join("wxdesk.redb")).unwrap();
    let store = wxdesk::store::embedded::EmbeddedStore::open(&copy).unwrap();
    use wxdesk::store::InboxStore;
    let entry = store
        .get(
            &format!("{PLAIN_APPID}#msg#7000#oUser#{ts}"),
            wxdesk::support::clock::unix_ms(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.answer.as_deref(),
        Some(Doc::parse_xml(&first).map(|_| first.as_str()).unwrap())
    );
}

/// `wxdesk-local simulate` on a safe-mode account: the push goes encrypted with
/// `msg_signature`, the desk's passive reply comes back encrypted, and simulate checks
/// and decrypts it. With another token or key it says which one differs.
#[tokio::test]
async fn simulate_plays_wechat_in_safe_mode() {
    use wxdesk::app::simulate::{Outcome, SimulateError, simulate};
    let rig = rig("simulate").await;
    let app = rig.svc.config.app(APPID).unwrap();
    let got = simulate(app, &rig.base, "oSimulated", "hello", now_secs())
        .await
        .unwrap();
    let Outcome::Reply { content, .. } = got else {
        panic!("the desk answers texts: {got:?}")
    };
    assert_eq!(content.as_deref(), Some("echo: hello"));
    assert!(rig.desk.bodies().last().unwrap().contains("hello"));

    // The same account as another install would know it: a different token.
    let other = wxdesk::Config::parse(
        &config_text(&embedded_store("simulate-other"), "http://unused", "")
            .replace(&format!("token = \"{TOKEN}\""), "token = \"another-token\""),
    )
    .unwrap();
    let err = simulate(
        other.app(APPID).unwrap(),
        &rig.base,
        "oSimulated",
        "x",
        now_secs(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SimulateError::Status(401, _)), "{err}");
}
