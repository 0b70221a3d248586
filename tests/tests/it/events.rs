//! Every sample in events/ through the Lambda handler (lambda_http's own API Gateway v2
//! parsing), against a stand-in Udesk, with the answer each must get.

use std::sync::Arc;
use std::time::Duration;

use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::signature::msg_signature;
use wxdesk::wechat::xml::Doc;
use wxdesk_tests::*;

const EVENTS_CONFIG: &str = include_str!("../../../events/wxdesk.toml");
const EVENTS_AES_KEY: &str = "eventsAESkey0000000000000000000000000000001";
/// When `events/generate.py` signed the samples.
const SIGNED_AT: i64 = 1_714_112_445;

enum Expect {
    Echo(&'static str),
    Body(&'static str),
    Skipped,
    EncryptedXml(&'static str, &'static str),
    /// A Mini Program push: WeChat gets `success`, the desk's reply goes by custom send.
    CustomSent(&'static str),
    /// The official vector (a Mini Program): as CustomSent, and the desk got its event.
    OfficialVector,
    /// A simulated-domain call answered with WeChat's JSON containing this field.
    WxJson(&'static str),
    /// A simulated-domain media download.
    Media,
    /// Not an HTTP event: the token-refresher's schedule.
    Schedule,
    /// deliver-worker's SQS batch: no item failures.
    SqsBatch,
    /// deliver-worker's schedule: one sweep pass without errors.
    Sweep,
    /// An agent push from Udesk's message interface: `{"success":true}`, sent to WeChat.
    UdeskImSuccess,
    /// A Tencent IM after-send callback: `ActionStatus: OK`, the reply sent to WeChat.
    TimOk,
    /// Online-only typing: the typing indicator at once, nothing queued.
    TimTyping,
    /// The Dialogue Platform's hand-off: acknowledged, the desk told, its answer sent back.
    ChatbotHandoff,
    /// A waiter event driven by a desk, sent to the platform.
    ChatbotEvent,
    /// The third-party platform's ticket: `success`, and a component_access_token is then
    /// fetched with it (by the token-refresher sample, which comes later).
    ComponentTicket,
    /// An authorized shop's push: the desk's passive reply, encrypted with the platform's
    /// token and key for the platform's appid.
    PlatformEncrypted(&'static str),
}

fn expectation(name: &str) -> Option<Expect> {
    use Expect::*;
    Some(match name {
        "verify-get" => Body("4375120948345356249"),
        "message-text" => Echo("echo: When do the new children's clothes arrive?"),
        "message-image" | "message-voice" | "message-video" | "message-shortvideo"
        | "message-location" | "message-link" => Echo("echo: "),
        "event-subscribe"
        | "event-subscribe-qrscene"
        | "event-unsubscribe"
        | "event-scan"
        | "event-click" => Echo("echo: "),
        "event-location"
        | "event-view"
        | "event-templatesendjobfinish"
        | "event-kf-create-session"
        | "event-kf-close-session"
        | "event-kf-switch-session" => Skipped,
        "mp-json-text" => CustomSent("echo: this is a test"),
        "mp-json-miniprogrampage" | "mp-json-user-enter-tempsession" => CustomSent("echo: "),
        "safe-mode-text" => EncryptedXml("wxevents00000001", "echo: safe mode hello"),
        "official-encrypted-json" => OfficialVector,
        "udesk-send-text" | "udesk-send-news" | "udesk-send-json-image" => WxJson("errcode"),
        "udesk-upload-image" => WxJson("media_id"),
        "udesk-media-get" => Media,
        "udesk-user-info" => WxJson("subscribe"),
        "udesk-template-list" => WxJson("template_list"),
        "udesk-template-send" => WxJson("msgid"),
        "schedule-token-refresher" => Schedule,
        "deliver-worker-sqs" => SqsBatch,
        "schedule-outbox-sweep" => Sweep,
        "udesk-im-push-text" | "udesk-im-push-json-news" => UdeskImSuccess,
        "tim-callback-text" | "tim-callback-custom" | "tim-callback-tuikit-branch" => TimOk,
        "tim-callback-tuikit-typing" => TimTyping,
        "chatbot-handoff-needperson" => ChatbotHandoff,
        "chatbot-event-quit" => ChatbotEvent,
        "component-ticket" => ComponentTicket,
        "component-push-text" => PlatformEncrypted("echo: Is my order shipped?"),
        _ => return None,
    })
}

#[tokio::test]
async fn every_sample_event_gets_its_answer() {
    let desk = udesk_wechat().await;
    let wx = wxdesk_tests::wechat::start().await;
    let platform = wxdesk_tests::chatbot::start().await;
    wx.state.lock().unwrap().secret = "events-secret-not-real".into();
    {
        let platform = &mut wx.state.lock().unwrap().platform;
        platform.appid = "wxeventscomp0007".into();
        platform.secret = "events-component-secret-not-real".into();
        platform.pushed("ticket@@@events-sample");
    }
    wx.add_media("MEDIA_1", b"\xff\xd8\xff\xe0 sample jpeg", "image/jpeg");
    // The typing sample's customer wrote just now (WeChat shows typing only then).
    wx.customer(
        "wxeventstim00004",
        "oEventsUser0000000000000001",
        wxdesk_tests::wechat::Action::Message,
    );
    let dir = temp_dir("events");
    let text = EVENTS_CONFIG
        .replace(
            "http://127.0.0.1:8081/weixin/events",
            &desk.url("/weixin/events"),
        )
        .replace("\".wxdesk-data/events\"", &format!("{dir:?}"))
        .replace("http://127.0.0.1:8082", &wx.base())
        .replace("http://127.0.0.1:8085", &platform.server.url(""));
    // The samples were signed at one moment (Tencent IM's Sign is checked within 60 s of
    // its RequestTime): replay them at that moment.
    let cfg = wxdesk::Config::parse(&text).unwrap();
    let stores = wxdesk::store::Stores::open(&cfg.store).await.unwrap();
    // The shop of component-push-text.json authorized the platform.
    stores
        .registry
        .put_authorizer(&wxdesk::store::Authorizer {
            appid: "wxeventsshop0008".into(),
            component: "wxeventscomp0007".into(),
            sealed_refresh_token: String::new(),
            permissions: vec![1],
            standing: wxdesk::store::Standing::Authorized,
            changed_at_ms: SIGNED_AT * 1000,
            sealed_settings: None,
        })
        .await
        .unwrap();
    let svc = Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(wxdesk::support::clock::FixedClock::at_secs(SIGNED_AT)),
    ));

    let events_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut names: Vec<String> = std::fs::read_dir(events_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 24, "{names:?}");
    for name in names {
        let expect = expectation(&name)
            .unwrap_or_else(|| panic!("events/{name}.json has no expectation in this test"));
        let raw = std::fs::read_to_string(format!("{events_dir}/{name}.json")).unwrap();
        if let Expect::SqsBatch = expect {
            // A job whose entry is settled (or gone) is done: no item failure.
            let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
            let answer =
                wxdesk::app::worker::handle_sqs_batch(&svc, event["Records"].as_array().unwrap())
                    .await;
            assert_eq!(
                answer,
                serde_json::json!({"batchItemFailures": []}),
                "{name}"
            );
            continue;
        }
        if let Expect::Sweep = expect {
            let swept = wxdesk::outbox::sweep::sweep(&svc).await;
            assert_eq!(swept.failed, 0, "{name}");
            continue;
        }
        if let Expect::Schedule = expect {
            let fetched = wx.token_calls();
            let (report, ok) = wxdesk::app::refresher::refresh_all(&svc).await;
            assert!(ok, "{name}: {report}");
            assert!(wx.token_calls() > fetched || report.to_string().contains("fresh"));
            continue;
        }
        let req = lambda_http::request::from_str(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = match wxdesk::app::routes::find(req.uri().path()) {
            Some(r) => r.kind,
            None => panic!("{name}: no route for {}", req.uri().path()),
        };
        let hits_before = desk.hits();
        let sent_before = wx.sent().len();
        let resp = wxdesk::app::lambda::handle(&svc, kind, req).await;
        let body = resp.body_str().to_owned();
        assert_eq!(resp.status, 200, "{name}: {body}");
        match expect {
            Expect::Body(b) => assert_eq!(body, b, "{name}"),
            Expect::Skipped => {
                assert_eq!(body, "success", "{name}");
                assert_eq!(desk.hits(), hits_before, "{name} must not reach the desk");
            }
            Expect::Echo(content) => {
                let doc = if body.starts_with('{') {
                    Doc::parse_json(&body)
                } else {
                    Doc::parse_xml(&body)
                }
                .unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
                assert_eq!(doc.get("Content"), Some(content), "{name}");
                assert_eq!(doc.get("MsgType"), Some("text"), "{name}");
                assert_eq!(desk.hits(), hits_before + 1, "{name}");
            }
            Expect::EncryptedXml(appid, content) => {
                let doc = Doc::parse_xml(&body).unwrap();
                let enc = doc.get("Encrypt").unwrap();
                assert_eq!(
                    doc.get("MsgSignature").unwrap(),
                    msg_signature(
                        "events-token",
                        doc.get("TimeStamp").unwrap(),
                        doc.get("Nonce").unwrap(),
                        enc
                    )
                );
                let plain = MsgCrypt::new(EVENTS_AES_KEY)
                    .unwrap()
                    .decrypt(enc, appid)
                    .unwrap();
                assert_eq!(
                    Doc::parse_xml(&plain).unwrap().get("Content"),
                    Some(content),
                    "{name}"
                );
            }
            Expect::PlatformEncrypted(content) => {
                let doc = Doc::parse_xml(&body).unwrap();
                let enc = doc.get("Encrypt").unwrap();
                assert_eq!(
                    doc.get("MsgSignature").unwrap(),
                    msg_signature(
                        "events-component-token",
                        doc.get("TimeStamp").unwrap(),
                        doc.get("Nonce").unwrap(),
                        enc
                    )
                );
                let plain = MsgCrypt::new("eventsCOMPONENTkey0000000000000000000000001")
                    .unwrap()
                    .decrypt(enc, "wxeventscomp0007")
                    .unwrap();
                assert_eq!(
                    Doc::parse_xml(&plain).unwrap().get("Content"),
                    Some(content),
                    "{name}"
                );
            }
            Expect::CustomSent(content) => {
                assert_eq!(body, "success", "{name}");
                assert_eq!(desk.hits(), hits_before + 1, "{name}");
                let sent = wx.sent();
                assert_eq!(sent.len(), sent_before + 1, "{name}");
                assert_eq!(sent.last().unwrap()["text"]["content"], content, "{name}");
            }
            Expect::OfficialVector => {
                assert_eq!(body, "success", "{name}");
                assert_eq!(wx.sent().len(), sent_before + 1, "{name}");
                // The desk got the official vector's event as WeChat XML.
                let sent = Doc::parse_xml(desk.bodies().last().unwrap()).unwrap();
                assert_eq!(sent.get("Event"), Some("debug_demo"));
                assert_eq!(sent.get("debug_str"), Some("hello world"));
            }
            Expect::WxJson(field) => {
                let v: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
                assert!(v.get(field).is_some(), "{name}: {body}");
                assert!(v.get("errcode").is_none_or(|c| c == 0), "{name}: {body}");
                assert_eq!(desk.hits(), hits_before, "{name}");
            }
            Expect::Media => {
                assert_eq!(resp.content_type, "image/jpeg", "{name}");
                assert_eq!(resp.body.as_ref(), b"\xff\xd8\xff\xe0 sample jpeg");
                // Through the Lambda adapter the bytes go base64-encoded.
                let lambda = wxdesk::app::lambda::to_lambda_response(resp);
                assert!(
                    matches!(lambda.body(), lambda_http::Body::Binary(_)),
                    "{name}"
                );
            }
            Expect::UdeskImSuccess => {
                assert_eq!(body, r#"{"success":true}"#, "{name}");
                assert_eq!(wx.sent().len(), sent_before + 1, "{name}");
            }
            Expect::TimOk => {
                assert_eq!(
                    body, r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#,
                    "{name}"
                );
                // Answered at once; the worker (deliver-worker on AWS) delivers the job.
                assert_eq!(
                    wx.sent().len(),
                    sent_before,
                    "{name}: nothing after the answer"
                );
                let ran = wxdesk::app::worker::run_once(&svc, Duration::from_secs(2)).await;
                assert_eq!(ran, 1, "{name}");
                assert_eq!(wx.sent().len(), sent_before + 1, "{name}");
            }
            Expect::TimTyping => {
                assert_eq!(
                    body, r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#,
                    "{name}"
                );
                // Shown at once as WeChat's typing indicator; nothing queued, no text.
                assert_eq!(wx.typings().len(), 1, "{name}");
                let ran = wxdesk::app::worker::run_once(&svc, Duration::from_secs(2)).await;
                assert_eq!(ran, 0, "{name}");
                assert_eq!(wx.sent().len(), sent_before, "{name}");
            }
            Expect::ChatbotHandoff => {
                assert_eq!(body, r#"{"errcode":0,"errmsg":"ok"}"#, "{name}");
                assert_eq!(desk.hits(), hits_before + 1, "{name}");
                assert_eq!(
                    platform.received().last().unwrap()["msg"],
                    "echo: [The customer asked for an agent]"
                );
            }
            Expect::ChatbotEvent => {
                assert_eq!(
                    platform.received().last().unwrap()["event"],
                    "waiterQuit",
                    "{name}: {body}"
                );
            }
            Expect::ComponentTicket => {
                assert_eq!(body, "success", "{name}");
                let check = wxdesk::app::doctor::component(&svc).await.unwrap();
                assert!(check.result.is_ok(), "{name}: {check}");
            }
            Expect::Schedule | Expect::SqsBatch | Expect::Sweep => unreachable!(),
        }
    }
    // No fixture carries a real secret: the only key material is test values.
    for entry in std::fs::read_dir(events_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("test-secret") && !text.contains("\"secret\""));
    }
}
