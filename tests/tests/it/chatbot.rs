//! The Dialogue Platform as a channel, end to end: agents' messages (through the Udesk
//! simulated domain) reach a stand-in platform through the encrypted sendmsg API with the
//! right fields and waiter events; the platform's hand-off callback, encrypted by an
//! independent implementation, reaches the desk.

use std::sync::Arc;

use serde_json::{Value, json};
use wxdesk::wechat::xml::Doc;
use wxdesk_tests::chatbot::{self, PLATFORM_APPID, PLATFORM_KEY, PLATFORM_TOKEN, PlatformStandIn};
use wxdesk_tests::wechat::{self, WechatStandIn};
use wxdesk_tests::*;

const OPENID: &str = "oChatbotUser000000000000001";
/// The hand-off route's own key: the one the Dialogue Platform holds.
const HANDOFF_KEY: &str = "handoff-key-0123456789abc";

struct Rig {
    base: String,
    wx: WechatStandIn,
    platform: PlatformStandIn,
    desk: StandIn,
    http: reqwest::Client,
}

async fn rig(name: &str) -> Rig {
    rig_with(name, &format!("gateway_key = \"{HANDOFF_KEY}\"\n")).await
}

/// A rig whose `[apps.chatbot]` also holds `keys` (its gateway keys, or nothing).
async fn rig_with(name: &str, keys: &str) -> Rig {
    rig_on(name, keys, udesk_wechat().await, |t| t).await
}

/// A rig on `desk`, its config text passed through `edit`.
async fn rig_on(name: &str, keys: &str, desk: StandIn, edit: impl Fn(String) -> String) -> Rig {
    let wx = wechat::start().await;
    let platform = chatbot::start().await;
    let extra = format!("[wechat]\napi_base = \"{}\"\n", wx.base());
    let text = config_text(&embedded_store(name), &desk.url("/weixin/chan"), &extra);
    let text = edit(text).replacen(
        "[apps.desk]",
        &format!(
            "[apps.chatbot]\nappid = \"{PLATFORM_APPID}\"\ntoken = \"{PLATFORM_TOKEN}\"\n\
             encoding_aes_key = \"{PLATFORM_KEY}\"\nchannel = 0\napi_base = \"{}\"\n\
             kefuname = \"Shop service\"\nkefuavatar = \"https://example.com/a.png\"\n{keys}[apps.desk]",
            platform.server.url("")
        ),
        1,
    );
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc).await;
    Rig {
        base,
        wx,
        platform,
        desk,
        http: wxdesk_tests::http(),
    }
}

impl Rig {
    async fn agent_sends(&self, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/udesk/{APPID}/{GATEWAY_KEY}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn event(&self, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/chatbot/{APPID}/{key}/event", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn handoff(&self, body: String) -> (u16, Value) {
        self.handoff_with(HANDOFF_KEY, body).await
    }

    async fn handoff_with(&self, key: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/chatbot/{APPID}/{key}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn agent_messages_go_through_sendmsg_with_waiter_enter_first() {
    let rig = rig("send").await;
    let (s, v) = rig
        .agent_sends(&format!(
            "touser={OPENID}&msgtype=text&text[content]=Hello, how can I help?"
        ))
        .await;
    assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
    rig.agent_sends(&format!(
        "touser={OPENID}&msgtype=text&text[content]=Still there?"
    ))
    .await;
    let got = rig.platform.received();
    assert_eq!(got.len(), 2);
    let first = &got[0];
    assert_eq!(first["appid"], APPID);
    assert_eq!(first["openid"], OPENID);
    assert_eq!(first["msg"], "Hello, how can I help?");
    assert_eq!(first["channel"], "0");
    assert_eq!(first["event"], "waiterEnter");
    assert_eq!(first["kefuname"], "Shop service");
    assert_eq!(first["kefuavatar"], "https://example.com/a.png");
    assert!(!got[1].contains_key("event"), "{:?}", got[1]);
    assert!(rig.wx.sent().is_empty(), "nothing went through custom send");
}

#[tokio::test]
async fn every_message_type_is_mapped() {
    let rig = rig("mapping").await;
    let cases = [
        (
            "touser=U&msgtype=news&news[articles][0][title]=T&news[articles][0][description]=D&news[articles][0][url]=https://mp.weixin.qq.com/s/1&news[articles][0][picurl]=https://p",
            json!({"news":{"articles":[{"title":"T","description":"D","url":"https://mp.weixin.qq.com/s/1","picurl":"https://p","type":"mp"}]}}),
        ),
        (
            "touser=U&msgtype=image&image[media_id]=M1",
            json!({"image":{"media_id":"M1","url":""}}),
        ),
        (
            "touser=U&msgtype=miniprogrampage&miniprogrampage[title]=P&miniprogrampage[appid]=wxa&miniprogrampage[pagepath]=pages/i&miniprogrampage[thumb_media_id]=T",
            json!({"miniprogrampage":{"title":"P","appid":"wxa","pagepath":"pages/i","thumb_media_id":"T","thumb_url":""}}),
        ),
    ];
    for (body, want) in &cases {
        let (s, v) = rig
            .agent_sends(&body.replace("touser=U", &format!("touser={OPENID}")))
            .await;
        assert_eq!(s, 200, "{v}");
        let got: Value =
            serde_json::from_str(&rig.platform.received().last().unwrap()["msg"]).unwrap();
        assert_eq!(&got, want, "{body}");
    }
    // Links in text are kept.
    rig.agent_sends(&format!(
        "touser={OPENID}&msgtype=text&text[content]=see <a href=\"https://x\">here</a>"
    ))
    .await;
    assert_eq!(
        rig.platform.received().last().unwrap()["msg"],
        "see <a href=\"https://x\">here</a>"
    );
    // The satisfaction trigger becomes waiterQualityEvaluate with the prompt.
    rig.agent_sends(&format!(
        "touser={OPENID}&msgtype=text&text[content]=%23rate"
    ))
    .await;
    let last = rig.platform.received().last().cloned().unwrap();
    assert_eq!(last["event"], "waiterQualityEvaluate");
    assert_eq!(last["msg"], "How satisfied are you with this conversation?");
}

#[tokio::test]
async fn the_event_route_drives_waiter_events() {
    let rig = rig("events").await;
    let (s, _) = rig
        .event(
            "wrong-key-0123456789",
            json!({"openid": OPENID, "event": "waiterQuit"}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, v) = rig
        .event(GATEWAY_KEY, json!({"openid": OPENID, "event": "dance"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(rig.platform.received().is_empty());
    rig.agent_sends(&format!("touser={OPENID}&msgtype=text&text[content]=hi"))
        .await;
    let (s, v) = rig
        .event(
            GATEWAY_KEY,
            json!({"openid": OPENID, "event": "waiterSwitch", "kefuname": "Alice"}),
        )
        .await;
    assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
    rig.event(
        GATEWAY_KEY,
        json!({"openid": OPENID, "event": "waiterQuit", "msg": "Bye!"}),
    )
    .await;
    // After a quit, the next agent message opens a new conversation.
    rig.agent_sends(&format!(
        "touser={OPENID}&msgtype=text&text[content]=back again"
    ))
    .await;
    let got = rig.platform.received();
    let events: Vec<&str> = got
        .iter()
        .map(|f| f.get("event").map_or("", String::as_str))
        .collect();
    assert_eq!(
        events,
        ["waiterEnter", "waiterSwitch", "waiterQuit", "waiterEnter"]
    );
    assert_eq!(got[1]["kefuname"], "Alice");
    assert_eq!(got[2]["msg"], "Bye!");
}

#[tokio::test]
async fn platform_errors_are_clear_and_only_transient_ones_are_retried() {
    let rig = rig("errors").await;
    let send = format!("touser={OPENID}&msgtype=text&text[content]=x");
    rig.platform
        .state
        .lock()
        .unwrap()
        .inject
        .push_back((200, 1001));
    let (s, v) = rig.agent_sends(&send).await;
    assert_eq!(s, 200);
    assert_eq!(v["errcode"], 1001);
    assert!(
        v["errmsg"].as_str().unwrap().contains("TOKEN is not valid"),
        "{v}"
    );
    assert_eq!(
        rig.platform.state.lock().unwrap().attempts,
        1,
        "1001 is not retried"
    );
    rig.platform
        .state
        .lock()
        .unwrap()
        .inject
        .push_back((200, 1005));
    assert_eq!(rig.agent_sends(&send).await.1["errcode"], 1005);
    assert_eq!(
        rig.platform.state.lock().unwrap().attempts,
        2,
        "1005 is not retried"
    );
    // Two 502s, then success: retried with backoff.
    rig.platform
        .state
        .lock()
        .unwrap()
        .inject
        .extend([(502, 0), (502, 0)]);
    assert_eq!(rig.agent_sends(&send).await.1["errcode"], 0);
    assert_eq!(rig.platform.state.lock().unwrap().attempts, 5);
}

fn handoff_xml(
    event: &str,
    from: i64,
    kfstate: i64,
    content: &str,
    assessment: i64,
    t: i64,
) -> String {
    format!(
        "<xml><userid><![CDATA[{OPENID}]]></userid><appid><![CDATA[{PLATFORM_APPID}]]></appid>\
         <content><msg><![CDATA[{content}]]></msg></content><event><![CDATA[{event}]]></event>\
         <from>{from}</from><kfstate>{kfstate}</kfstate><channel>0</channel>\
         <assessment>{assessment}</assessment><createtime>{t}</createtime></xml>"
    )
}

#[tokio::test]
async fn the_handoff_callback_reaches_the_desk_and_its_answer_comes_back() {
    let rig = rig("handoff").await;
    let t = now_secs();
    // needperson: a conversation-start for the desk; the desk's echo goes back by sendmsg.
    let enc = chatbot::platform_encrypt(&handoff_xml("userEnter", 0, 3, "", 0, t));
    let (s, v) = rig.handoff(json!({ "encrypted": enc }).to_string()).await;
    assert_eq!((s, v), (200, json!({"errcode": 0, "errmsg": "ok"})));
    let desk_got = Doc::parse_xml(&rig.desk.bodies()[0]).unwrap();
    assert_eq!(
        desk_got.get("Content"),
        Some("[The customer asked for an agent]")
    );
    assert_eq!(desk_got.get("FromUserName"), Some(OPENID));
    assert_eq!(
        rig.platform.received()[0]["msg"],
        "echo: [The customer asked for an agent]"
    );
    // A customer message, in the `encrypt` and the XML wrapper; the second is a duplicate.
    let enc = chatbot::platform_encrypt(&handoff_xml("", 0, 1, "my order is late", 0, t + 1));
    rig.handoff(json!({ "encrypt": enc }).to_string()).await;
    rig.handoff(format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"))
        .await;
    assert_eq!(rig.desk.hits(), 2, "the duplicate was not forwarded");
    assert_eq!(
        Doc::parse_xml(&rig.desk.bodies()[1])
            .unwrap()
            .get("Content"),
        Some("my order is late")
    );
    // The bot's own messages are not for the desk; a rating is.
    let enc = chatbot::platform_encrypt(&handoff_xml("", 1, 1, "bot says hi", 0, t + 2));
    rig.handoff(json!({ "encrypted": enc }).to_string()).await;
    assert_eq!(rig.desk.hits(), 2);
    let enc = chatbot::platform_encrypt(&handoff_xml("", 0, 2, "", 4, t + 3));
    rig.handoff(json!({ "encrypted": enc }).to_string()).await;
    assert_eq!(
        Doc::parse_xml(rig.desk.bodies().last().unwrap())
            .unwrap()
            .get("Content"),
        Some("[The customer rated the conversation 4/5]")
    );
    // Encrypted for another platform APPID, or garbage: refused, nothing forwarded.
    let foreign = chatbot::py_crypto(
        &["encrypt", PLATFORM_KEY, "wxsomeoneelse"],
        &handoff_xml("", 0, 1, "x", 0, t + 4),
    );
    let (s, _) = rig
        .handoff(json!({ "encrypted": foreign }).to_string())
        .await;
    assert_eq!(s, 400);
    let (s, _) = rig
        .handoff("{\"encrypted\": \"bm90IGEgY2lwaGVy\"}".into())
        .await;
    assert_eq!(s, 400);
    assert_eq!(rig.desk.hits(), 3);
}

/// Security review §8: a `userQuit` hand-off closed the conversation before the dedup check,
/// so a captured one, replayed, ended a conversation that had started since.
#[tokio::test]
async fn a_replayed_user_quit_does_not_close_a_newer_conversation() {
    let rig = rig("quit-replay").await;
    let t = now_secs();
    let send = |text: &str| format!("touser={OPENID}&msgtype=text&text[content]={text}");
    rig.agent_sends(&send("hello")).await;
    let quit = chatbot::platform_encrypt(&handoff_xml("userQuit", 0, 0, "", 0, t));
    let (s, _) = rig.handoff(json!({ "encrypted": quit }).to_string()).await;
    assert_eq!(s, 200);
    // A new conversation starts with the next agent message...
    rig.agent_sends(&send("welcome back")).await;
    // ...and the captured userQuit, sent again, must not end it.
    let (s, _) = rig.handoff(json!({ "encrypted": quit }).to_string()).await;
    assert_eq!(s, 200);
    rig.agent_sends(&send("still here")).await;
    let events: Vec<String> = rig
        .platform
        .received()
        .iter()
        .map(|f| f.get("event").cloned().unwrap_or_default())
        .collect();
    // hello opens; the desk's answer to the quit opens anew; the replay changes nothing.
    assert_eq!(events, ["waiterEnter", "waiterEnter", "", ""], "{events:?}");
}

/// Security review §3: decrypt and parse errors were returned word for word ("invalid
/// padding" versus "declared message length N"), a padding oracle. Every hand-off that
/// cannot be opened now gets one identical answer.
#[tokio::test]
async fn every_undecryptable_hand_off_gets_the_same_answer() {
    use base64::Engine as _;
    let rig = rig("oracle").await;
    let t = now_secs();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut bodies: Vec<String> = vec![
        // No ciphertext, not base64, not whole blocks.
        json!({"nothing": 1}).to_string(),
        json!({"encrypted": "@@@"}).to_string(),
        json!({"encrypted": b64(&[7u8; 20])}).to_string(),
        // Another platform's receive-id; a plaintext that is not the platform's XML.
        json!({"encrypted": chatbot::py_crypto(&["encrypt", PLATFORM_KEY, "wxsomeoneelse"], &handoff_xml("", 0, 1, "x", 0, t))}).to_string(),
        json!({"encrypted": chatbot::platform_encrypt("not xml at all")}).to_string(),
        json!({"encrypted": chatbot::platform_encrypt("<xml><userid></userid></xml>")}).to_string(),
    ];
    // Random two-block ciphertexts, as the review sent: bad padding, or padding that
    // happens to be valid over a malformed buffer.
    for i in 0..40u8 {
        let block: Vec<u8> = (0..32u8)
            .map(|j| j.wrapping_mul(31).wrapping_add(i.wrapping_mul(17)))
            .collect();
        bodies.push(json!({ "encrypted": b64(&block) }).to_string());
    }
    let mut answers = std::collections::BTreeSet::new();
    for body in bodies {
        let r = rig
            .http
            .post(format!("{}/chatbot/{APPID}/{HANDOFF_KEY}", rig.base))
            .body(body)
            .send()
            .await
            .unwrap();
        answers.insert((r.status().as_u16(), r.text().await.unwrap()));
    }
    assert_eq!(answers.len(), 1, "distinct answers leak why: {answers:?}");
    assert_eq!(answers.first().unwrap().0, 400);
    assert_eq!(rig.desk.hits(), 0);
}

/// Review 2, §1: the Dialogue Platform holds the hand-off URL, so its key drove the desk's
/// routes (`/chatbot/{appid}/{key}/event` with any openid and `kefuname`, and the simulated
/// domain). The hand-off now has a key of its own, which opens nothing else; the desk's
/// key does not open the hand-off.
#[tokio::test]
async fn the_handoff_key_opens_only_the_handoff() {
    let rig = rig("handoff-key").await;
    let phish = json!({"openid": OPENID, "event": "waiterSwitch", "kefuname": "Bank security", "msg": "verify at http://evil.example"});
    let (s, _) = rig.event(HANDOFF_KEY, phish.clone()).await;
    assert_eq!(s, 401, "the platform's key drove the event route");
    let r = rig
        .http
        .post(format!("{}/udesk/{APPID}/{HANDOFF_KEY}", rig.base))
        .body(format!("touser={OPENID}&msgtype=text&text[content]=phish"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the platform's key drove the simulated domain"
    );
    let enc = chatbot::platform_encrypt(&handoff_xml("userEnter", 0, 3, "", 0, now_secs()));
    let (s, _) = rig
        .handoff_with(GATEWAY_KEY, json!({ "encrypted": enc.clone() }).to_string())
        .await;
    assert_eq!(s, 401, "the desk's key opened the hand-off");
    assert!(rig.platform.received().is_empty());
    assert!(rig.wx.sent().is_empty());
    assert_eq!(rig.desk.hits(), 0);
    let (s, _) = rig.handoff(json!({ "encrypted": enc }).to_string()).await;
    assert_eq!(s, 200);
    assert_eq!(rig.desk.hits(), 1);
}

/// Both keys rotate: a `previous_gateway_key` is accepted beside the new one, on the
/// hand-off and on the desk's routes.
#[tokio::test]
async fn previous_gateway_keys_are_accepted_during_a_rotation() {
    let old_handoff = "old-handoff-key-0123456789";
    let rig = rig_with(
        "rotation",
        &format!("gateway_key = \"{HANDOFF_KEY}\"\nprevious_gateway_key = \"{old_handoff}\"\n"),
    )
    .await;
    let enc = chatbot::platform_encrypt(&handoff_xml("userEnter", 0, 3, "", 0, now_secs()));
    let (s, v) = rig
        .handoff_with(old_handoff, json!({ "encrypted": enc }).to_string())
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = rig
        .event(
            old_handoff,
            json!({"openid": OPENID, "event": "waiterQuit"}),
        )
        .await;
    assert_eq!(s, 401, "an old hand-off key opens only the hand-off");
    // The account's own previous key, on the desk's routes.
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let extra = format!("[wechat]\napi_base = \"{}\"\n", wx.base());
    let text = config_text(&embedded_store("rotation-desk"), &desk.url("/w"), &extra).replacen(
        &format!("gateway_key = \"{GATEWAY_KEY}\"\n"),
        &format!(
            "gateway_key = \"new-desk-key-0123456789\"\nprevious_gateway_key = \"{GATEWAY_KEY}\"\n"
        ),
        1,
    );
    let base = start_local(Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    ))
    .await;
    for key in [GATEWAY_KEY, "new-desk-key-0123456789"] {
        let r = rig
            .http
            .post(format!("{base}/udesk/{APPID}/{key}"))
            .body(format!("touser={OPENID}&msgtype=text&text[content]=hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{key}");
    }
    assert_eq!(wx.sent().len(), 2);
}

/// A config from before the split (no `[apps.chatbot] gateway_key`) still loads and its
/// hand-off still takes the account's key, but doctor fails it; a hand-off key equal to
/// the account's is a config error.
#[tokio::test]
async fn a_handoff_without_its_own_key_still_works_and_doctor_fails_it() {
    let rig = rig_with("legacy", "").await;
    let enc = chatbot::platform_encrypt(&handoff_xml("userEnter", 0, 3, "", 0, now_secs()));
    let (s, v) = rig
        .handoff_with(GATEWAY_KEY, json!({ "encrypted": enc }).to_string())
        .await;
    assert_eq!(s, 200, "{v}");
    // WeChat and the desk on a closed loopback port: doctor's other checks reach nobody.
    let text = config_text(
        &embedded_store("legacy-doctor"),
        "http://127.0.0.1:9/w",
        "[wechat]\napi_base = \"http://127.0.0.1:9\"\n",
    )
    .replacen(
        "[apps.desk]",
        &format!(
            "[apps.chatbot]\nappid = \"{PLATFORM_APPID}\"\ntoken = \"{PLATFORM_TOKEN}\"\n\
                 encoding_aes_key = \"{PLATFORM_KEY}\"\n[apps.desk]"
        ),
        1,
    );
    let svc = wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
        .await
        .unwrap();
    let checks = wxdesk::app::doctor::run(&svc, Some(APPID)).await;
    let config = checks
        .iter()
        .find(|c| c.name == "config")
        .unwrap()
        .to_string();
    assert!(
        config.starts_with("FAIL") && config.contains("[apps.chatbot] has no gateway_key"),
        "{config}"
    );
    let same = text.replacen(
        "[apps.desk]",
        &format!("gateway_key = \"{GATEWAY_KEY}\"\n[apps.desk]"),
        1,
    );
    let err = wxdesk::Config::parse(&same).unwrap_err().to_string();
    assert!(err.contains("apps[0].chatbot.gateway_key"), "{err}");
    assert!(!err.contains(GATEWAY_KEY), "{err}");
}

/// Review 2, §4: a chatbot account's `touser` became a store key unchecked (100 × 60 KB
/// grew the store by 19 MB). It is validated like every openid.
#[tokio::test]
async fn an_agents_touser_must_be_an_openid() {
    let rig = rig("touser").await;
    let huge = "o".repeat(60_000);
    let (s, v) = rig
        .agent_sends(&format!("touser={huge}&msgtype=text&text[content]=hi"))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["errmsg"].as_str().unwrap_or("").contains("touser"), "{v}");
    let (s, _) = rig
        .event(HANDOFF_KEY.replace("handoff", "x").as_str(), json!({}))
        .await;
    assert_eq!(s, 401);
    let (s, v) = rig
        .event(GATEWAY_KEY, json!({"openid": huge, "event": "waiterQuit"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(rig.platform.received().is_empty());
}

/// Review 2, §4: a captured hand-off replayed once its dedup entry expired. One whose
/// `createtime` is further from now than `max_timestamp_skew_secs` gets the one answer
/// every unusable hand-off gets, and reaches no desk.
#[tokio::test]
async fn an_old_handoff_is_refused() {
    let rig = rig("old-handoff").await;
    let old = chatbot::platform_encrypt(&handoff_xml("userEnter", 0, 3, "", 0, now_secs() - 3600));
    let (s, v) = rig.handoff(json!({ "encrypted": old }).to_string()).await;
    assert_eq!(
        (s, v),
        (400, json!({"errcode": -1, "errmsg": "invalid request"}))
    );
    assert_eq!(rig.desk.hits(), 0);
}

/// Review 2, §4: agent text reached the platform with `javascript:` links and `onerror=`
/// handlers. Only plain http(s) links stay markup.
#[tokio::test]
async fn agent_text_reaches_the_platform_without_active_markup() {
    let rig = rig("markup").await;
    let (s, v) = rig
        .agent_sends(&format!(
            "touser={OPENID}&msgtype=text&text[content]={}",
            form_urlencoded::byte_serialize(
                b"<img src=x onerror=alert(1)><a href=\"javascript:steal()\">pay</a> <a href=\"https://shop.example/o\">order</a>"
            )
            .collect::<String>()
        ))
        .await;
    assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
    let msg = rig.platform.received()[0]["msg"].clone();
    assert!(
        !msg.contains("<img") && !msg.contains("href=\"javascript"),
        "{msg}"
    );
    assert!(
        msg.contains("<a href=\"https://shop.example/o\">order</a>"),
        "{msg}"
    );
}

/// Udesk's message interface names the agent serving (`agent_name`): on a Dialogue
/// Platform account that name is the `kefuname` the customer sees, not the config's.
#[tokio::test]
async fn a_udesk_agents_name_is_the_platforms_kefuname() {
    const KEY: &str = "udesk-im-key-for-chatbot";
    let desk = udesk_im(KEY).await;
    let rig = rig_on(
        "udesk-name",
        &format!("gateway_key = \"{HANDOFF_KEY}\"\n"),
        desk,
        |t| {
            t.replacen(
                "kind = \"udesk_wechat\"\nurl = ",
                &format!("kind = \"udesk_im\"\nkey = \"{KEY}\"\nurl = "),
                1,
            )
        },
    )
    .await;
    let enc = chatbot::platform_encrypt(&handoff_xml("", 0, 1, "hello", 0, now_secs()));
    let (s, _) = rig.handoff(json!({ "encrypted": enc }).to_string()).await;
    assert_eq!(s, 200);
    let got = rig.platform.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["msg"], "Test Customer Service 1 is serving you!");
    assert_eq!(got[0]["kefuname"], "Test Customer Service 1");
}
