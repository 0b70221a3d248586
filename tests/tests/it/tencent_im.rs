//! Tencent Cloud IM as the desk, end to end: WeChat pushes become REST calls to a stand-in
//! IM server that checks every UserSig; agents' after-send callbacks, signed like Tencent,
//! become custom sends at the stand-in WeChat API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wxdesk::wechat::xml::Doc;
use wxdesk_tests::tim::{self, ADMIN, CALLBACK_TOKEN, SDKAPPID, SECRET_KEY, TimStandIn};
use wxdesk_tests::wechat::{self, WechatStandIn};
use wxdesk_tests::*;

const TIM_APPID: &str = "wxtim00000000001";
const CUSTOMER: &str = "oTimCustomer0000000000000001";

struct Rig {
    base: String,
    wx: WechatStandIn,
    im: TimStandIn,
    http: reqwest::Client,
    svc: Arc<wxdesk::Services>,
}

async fn rig(name: &str) -> Rig {
    rig_with(name, "").await
}

/// The account's config on `store`, with WeChat at `wx`, Tencent IM at `im`, media links
/// at `base`; `chatbot`: an `[apps.chatbot]` section for the account, or "".
fn config(store: &str, wx: &str, im: &str, base: &str, chatbot: &str) -> wxdesk::Config {
    config_with(store, wx, im, base, chatbot, "")
}

/// As `config`, with `desk_extra` added to `[apps.desk]`.
fn config_with(
    store: &str,
    wx: &str,
    im: &str,
    base: &str,
    chatbot: &str,
    desk_extra: &str,
) -> wxdesk::Config {
    wxdesk::Config::parse(&config_text(store, wx, im, base, chatbot, desk_extra)).unwrap()
}

fn config_text(
    store: &str,
    wx: &str,
    im: &str,
    base: &str,
    chatbot: &str,
    desk_extra: &str,
) -> String {
    format!(
        r#"{store}
[wechat]
api_base = "{wx}"
[media]
public_base_url = "{base}"
url_key = "test-url-key"
{FETCH_LOOPBACK}
[[apps]]
appid = "{TIM_APPID}"
kind = "official_account"
token = "{TOKEN}"
secret = "test-secret"
gateway_key = "{GATEWAY_KEY}"
name = "Blue Shop"
{chatbot}
[apps.desk]
kind = "tencent_im"
sdkappid = {SDKAPPID}
secret_key = "{SECRET_KEY}"
admin = "{ADMIN}"
agents = ["agent1", "agent2"]
api_base = "{im}"
callback_token = "{CALLBACK_TOKEN}"
welcome = "Thanks for following! Ask us anything."
connecting_text = "Connecting you to an agent..."
{desk_extra}
"#
    )
}

async fn serve(svc: Arc<wxdesk::Services>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve_local(svc, listener);
    base
}

/// `chatbot`: an `[apps.chatbot]` section for the account, or "".
async fn rig_with(name: &str, chatbot: &str) -> Rig {
    rig_full(name, chatbot, "").await
}

async fn rig_full(name: &str, chatbot: &str, desk_extra: &str) -> Rig {
    rig_text(name, |store, wx, im, base| {
        config_text(store, wx, im, base, chatbot, desk_extra)
    })
    .await
}

/// A rig whose config is `text(store, wechat, im, base)`.
async fn rig_text(name: &str, text: impl Fn(&str, &str, &str, &str) -> String) -> Rig {
    let wx = wechat::start().await;
    let im = tim::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let text = text(&embedded_store(name), &wx.base(), &im.server.url(""), &base);
    if text.contains("kind = \"mini_program\"") {
        wx.mini_program(TIM_APPID);
    }
    let cfg = wxdesk::Config::parse(&text).unwrap();
    let svc = Arc::new(wxdesk::Services::build(cfg).await.unwrap());
    serve_local(svc.clone(), listener);
    Rig {
        base,
        wx,
        im,
        http: wxdesk_tests::http(),
        svc,
    }
}

fn push_xml(msg_type: &str, fields: &str, msg_id: Option<u64>) -> String {
    let id = msg_id
        .map(|i| format!("<MsgId>{i}</MsgId>"))
        .unwrap_or_default();
    format!(
        "<xml><ToUserName><![CDATA[gh_tim]]></ToUserName><FromUserName><![CDATA[{CUSTOMER}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{fields}{id}</xml>",
        now_secs()
    )
}

impl Rig {
    /// Waits until the stand-in WeChat got `n` custom sends (the outbox's worker delivers
    /// agent messages after the callback's answer), up to 8 s; then a moment for extras.
    async fn wait_sent(&self, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while self.wx.sent().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.wx.sent()
    }

    async fn push(&self, body: String) -> String {
        self.http
            .post(format!(
                "{}/wechat/{TIM_APPID}?{}",
                self.base,
                plain_query(now_secs(), "t1")
            ))
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn callback(&self, query: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!(
                "{}/tim/{TIM_APPID}/{GATEWAY_KEY}?{query}",
                self.base
            ))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The customer writes `text` (message `msg_id`); WeChat's answer.
    async fn say(&self, text: &str, msg_id: u64) -> String {
        let content = format!("<Content><![CDATA[{text}]]></Content>");
        self.push(push_xml("text", &content, Some(msg_id))).await
    }

    fn sends(&self) -> Vec<Value> {
        self.im.state.lock().unwrap().sends.clone()
    }

    /// `account_import` calls the stand-in IM got so far.
    fn imports(&self) -> usize {
        let requests = self.im.server.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(uri, _)| uri.contains("account_import"))
            .count()
    }

    /// The customer writes once (message `msg_id`; the stand-in WeChat is told), then
    /// agent1 sends `answers` one-text answers; returns the callback query for more.
    async fn customer_wrote_then_agent1_answers(&self, msg_id: u64, answers: u32) -> String {
        self.push(push_xml(
            "text",
            "<Content><![CDATA[hello]]></Content>",
            Some(msg_id),
        ))
        .await;
        self.wx
            .customer(TIM_APPID, CUSTOMER, wechat::Action::Message);
        let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
        for i in 1..=answers {
            let body = tim::after_send(
                "agent1",
                CUSTOMER,
                &format!("{msg_id}_{i}_1572870301"),
                json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("answer {i}")}}]),
            );
            assert_eq!(self.callback(&q, &body).await.0, 200);
        }
        q
    }
}

fn content(reply: &str) -> Option<String> {
    Doc::parse_xml(reply)
        .ok()
        .and_then(|d| d.get("Content").map(str::to_owned))
}

/// Follow, unfollow, follow again, write: on Tencent IM's paid editions a deleted UserID
/// cannot be imported again for 3 months (70399, the stand-in enforces it), so wxdesk
/// keeps the account when a customer unfollows, and the returning customer still
/// reaches an agent.
#[tokio::test]
async fn a_customer_who_unfollows_and_follows_again_still_reaches_an_agent() {
    let rig = rig("sub").await;
    let (follow, unfollow) = (
        "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
        "<Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
    );
    let reply = rig.push(push_xml("event", follow, None)).await;
    assert_eq!(
        content(&reply).as_deref(),
        Some("Thanks for following! Ask us anything.")
    );
    assert!(rig.im.state.lock().unwrap().imported.contains(CUSTOMER));
    assert_eq!(rig.push(push_xml("event", unfollow, None)).await, "success");
    // Events are told apart by their second (WeChat's dedup key for events).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = rig.push(push_xml("event", follow, None)).await;
    assert_eq!(
        content(&reply).as_deref(),
        Some("Thanks for following! Ask us anything.")
    );
    rig.say("back again", 8601).await;
    let st = rig.im.state.lock().unwrap();
    assert!(st.deleted.is_empty(), "nothing deleted: {:?}", st.deleted);
    assert_eq!(
        st.sends.last().unwrap()["MsgBody"][0]["MsgContent"]["Text"],
        "back again"
    );
    assert_eq!(
        st.bad_sigs, 0,
        "every REST call carried a valid admin UserSig"
    );
}

/// With `delete_on_unsubscribe = true` the account goes; the returning follower's import
/// is refused (70399), which no retry can help: the push is answered and the refusal is
/// logged with what to do, and nothing is tried again.
#[tokio::test]
async fn delete_on_unsubscribe_deletes_and_a_refused_reimport_is_not_retried() {
    let rig = rig_full("sub-delete", "", "delete_on_unsubscribe = true").await;
    let follow = "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>";
    let unfollow = "<Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey>";
    rig.push(push_xml("event", follow, None)).await;
    assert_eq!(rig.push(push_xml("event", unfollow, None)).await, "success");
    assert_eq!(
        rig.im.state.lock().unwrap().deleted,
        vec![CUSTOMER.to_owned()]
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = rig.push(push_xml("event", follow, None)).await;
    assert_eq!(
        reply, "success",
        "70399: no welcome for an account that cannot exist"
    );
    let imports = rig.imports();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.imports(), imports, "a 70399 is not retried");
}

#[tokio::test]
async fn text_goes_to_the_agent_with_lazy_import_and_rate_limit_retry() {
    let rig = rig("text").await;
    // Never imported: the first sendmsg gets 20003, wxdesk imports and sends again; and a
    // rate limit on the way is retried.
    rig.im.state.lock().unwrap().inject_sendmsg.push_back(60007);
    let reply = rig.say("Where is my parcel?", 8101).await;
    assert_eq!(
        content(&reply).as_deref(),
        Some("Connecting you to an agent...")
    );
    let sends = rig.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let s = &sends[0];
    assert_eq!(s["From_Account"], CUSTOMER);
    assert_eq!(s["To_Account"], "agent1");
    assert_eq!(
        s["ForbidCallbackControl"],
        json!(["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"])
    );
    assert_eq!(
        s["MsgBody"],
        json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "Where is my parcel?"}}])
    );
    assert!(rig.im.state.lock().unwrap().imported.contains(CUSTOMER));
}

#[tokio::test]
async fn image_goes_as_a_tim_image_with_a_staged_url() {
    let rig = rig("image").await;
    let bytes = b"\x89PNG\r\n\x1a\n customer photo for the agent".to_vec();
    rig.wx.add_media("IMG_T", &bytes, "image/png");
    rig.push(push_xml(
        "image",
        "<PicUrl><![CDATA[http://mmbiz.qpic.cn/t]]></PicUrl><MediaId><![CDATA[IMG_T]]></MediaId>",
        Some(8201),
    ))
    .await;
    let sends = rig.sends();
    let elem = &sends[0]["MsgBody"][0];
    assert_eq!(elem["MsgType"], "TIMImageElem");
    let info = &elem["MsgContent"]["ImageInfoArray"];
    assert_eq!(info.as_array().unwrap().len(), 3);
    assert_eq!(info[0]["Size"], bytes.len());
    let url = info[0]["URL"].as_str().unwrap();
    let got = wxdesk_tests::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn callbacks_with_a_bad_sign_stale_time_or_foreign_app_are_refused() {
    let rig = rig("refuse").await;
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "k1",
        json!([{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]),
    );
    let now = now_secs();
    for (q, status) in [
        (tim::callback_query(SDKAPPID, "wrong-token", now), 401),
        (
            tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now - 120),
            401,
        ),
        (tim::callback_query(1_400_000_001, CALLBACK_TOKEN, now), 403),
        (
            tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now).replace("&Sign=", "&NoSign="),
            401,
        ),
    ] {
        let (s, v) = rig.callback(&q, &body).await;
        assert_eq!(s, status, "{q}: {v}");
        assert_eq!(v["ActionStatus"], "FAIL");
    }
    assert!(rig.wx.sent().is_empty());
}

#[tokio::test]
async fn an_agent_reply_reaches_wechat_once() {
    let rig = rig("reply").await;
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let body = tim::after_send(
        "agent2",
        CUSTOMER,
        "89541_2574206_1572870301",
        json!([
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "Your parcel ships today."}},
            {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "order:1234", "Desc": "Order 1234", "Ext": ""}},
            {"MsgType": "TIMFileElem", "MsgContent": {"Url": "https://cdn.example/inv.pdf", "FileName": "invoice.pdf", "FileSize": 10, "UUID": "u", "Download_Flag": 2}}
        ]),
    );
    let (s, v) = rig.callback(&q, &body).await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0})
        )
    );
    // Tencent sends the same callback again: delivered once.
    let (s, _) = rig.callback(&q, &body).await;
    assert_eq!(s, 200);
    // Three text parts, one custom send: WeChat counts each send against the customer's
    // allowance (5 per customer message).
    assert_eq!(
        rig.wait_sent(1).await,
        vec![json!({"touser": CUSTOMER, "msgtype": "text", "text": {
            "content": "Your parcel ships today.\nOrder 1234\n[File] invoice.pdf https://cdn.example/inv.pdf"
        }})]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.wx.send_attempts(), 1);
    // The customer's next message goes to the agent who answered.
    rig.say("thanks", 8301).await;
    assert_eq!(rig.sends().last().unwrap()["To_Account"], "agent2");
}

#[tokio::test]
async fn an_agent_image_is_uploaded_to_wechat_and_sent_as_image() {
    let rig = rig("agentimg").await;
    let jpeg = [&[0xff, 0xd8, 0xff, 0xe0][..], b" agent picture"].concat();
    let url = rig.wx.serve_file("pic.jpg", &jpeg, "image/jpeg");
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "img-key-1",
        json!([{"MsgType": "TIMImageElem", "MsgContent": {"UUID": "x", "ImageFormat": 1,
            "ImageInfoArray": [{"Type": 1, "Size": 18, "Width": 1, "Height": 1, "URL": url}]}}]),
    );
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let sent = rig.wait_sent(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["msgtype"], "image");
    let media_id = sent[0]["image"]["media_id"].as_str().unwrap().to_owned();
    let st = rig.wx.state.lock().unwrap();
    assert_eq!(
        st.media[&media_id].0.as_ref(),
        jpeg.as_slice(),
        "WeChat got the agent's bytes"
    );
}

#[tokio::test]
async fn messages_not_from_an_agent_are_ignored() {
    let rig = rig("ignore").await;
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let text = json!([{"MsgType":"TIMTextElem","MsgContent":{"Text":"echo"}}]);
    for body in [
        tim::after_send(CUSTOMER, "agent1", "c1", text.clone()),
        tim::after_send("agent1", "agent2", "c2", text.clone()),
    ] {
        assert_eq!(rig.callback(&q, &body).await.0, 200);
    }
    // Longer than the worker takes to deliver a queued message.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rig.wx.sent().is_empty());
}

#[tokio::test]
async fn a_delivery_that_outlasts_tencents_timeout_still_happens() {
    let rig = rig("slow").await;
    // The first WeChat token takes 2.5 s: longer than Tencent waits for the answer.
    rig.wx.set_token_delay(Duration::from_millis(2500));
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "slow-1",
        json!([{"MsgType":"TIMTextElem","MsgContent":{"Text":"late but sure"}}]),
    );
    let started = std::time::Instant::now();
    let (s, v) = rig.callback(&q, &body).await;
    assert_eq!((s, v["ActionStatus"].as_str()), (200, Some("OK")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(rig.wx.sent().is_empty(), "not yet");
    // The outbox's worker delivers it (on AWS: deliver-worker, from the SQS queue).
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while rig.wx.sent().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.wx.sent().len(), 1, "delivered after the answer");
}

#[tokio::test]
async fn through_the_dialogue_platform_agents_switch_and_quit_with_waiter_events() {
    let (bot, rig) = dialogue_rig("bot", "").await;
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let text = |t: &str| json!({"MsgType":"TIMTextElem","MsgContent":{"Text":t}});
    // agent1 answers with two elements: one sendmsg with multimsg, opening the conversation.
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "b1",
        json!([text("Hello"), text("How can I help?")]),
    );
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    // agent2 takes over: waiterSwitch.
    let body = tim::after_send("agent2", CUSTOMER, "b2", json!([text("I am taking over")]));
    rig.callback(&q, &body).await;
    // agent2 closes the conversation with a custom element.
    let body = tim::after_send(
        "agent2",
        CUSTOMER,
        "b3",
        json!([{"MsgType":"TIMCustomElem",
        "MsgContent":{"Data":"waiterQuit","Desc":"Goodbye!","Ext":""}}]),
    );
    rig.callback(&q, &body).await;
    // Delivered by the worker, one after another in the customer's order.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while bot.received().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = bot.received();
    assert_eq!(got.len(), 3, "{got:?}");
    let multi: Value = serde_json::from_str(&got[0]["msg"]).unwrap();
    assert_eq!(multi, json!({"multimsg": ["Hello", "How can I help?"]}));
    assert_eq!(
        (got[0]["event"].as_str(), got[0]["kefuname"].as_str()),
        ("waiterEnter", "agent1")
    );
    assert_eq!(
        (got[1]["event"].as_str(), got[1]["kefuname"].as_str()),
        ("waiterSwitch", "agent2")
    );
    assert_eq!(
        (got[2]["event"].as_str(), got[2]["msg"].as_str()),
        ("waiterQuit", "Goodbye!")
    );
    assert!(rig.wx.sent().is_empty(), "nothing went through custom send");
}

/// On AWS the tim-callback function learns who served a customer and the wechat-callback
/// function routes the customer's next message: two processes. The agent is kept in the
/// shared store, so the second one routes to the agent the first one saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_agent_is_shared_across_processes_through_the_store() {
    let wx = wechat::start().await;
    let im = tim::start().await;
    let stores = aws_stores().await;
    let aws = "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n";
    let process = |stores: wxdesk::store::Stores| {
        let cfg = config(aws, &wx.base(), &im.server.url(""), "http://unused", "");
        Arc::new(wxdesk::Services::with_parts(
            cfg,
            stores,
            Arc::new(wxdesk::support::clock::SystemClock),
        ))
    };
    let callbacks = serve(process(stores.clone())).await;
    let pushes = serve(process(stores)).await;
    let http = wxdesk_tests::http();
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let body = tim::after_send(
        "agent2",
        CUSTOMER,
        "shared_1",
        json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "agent2 here"}}]),
    );
    let r = http
        .post(format!("{callbacks}/tim/{TIM_APPID}/{GATEWAY_KEY}?{q}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!(
            "{pushes}/wechat/{TIM_APPID}?{}",
            plain_query(now_secs(), "s1")
        ))
        .body(push_xml(
            "text",
            "<Content><![CDATA[thanks]]></Content>",
            Some(8901),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sends = im.state.lock().unwrap().sends.clone();
    assert_eq!(sends.last().unwrap()["To_Account"], "agent2", "{sends:?}");
}

/// The notices wxdesk sent agents (in the customer's conversation), as (agent, text).
fn notices(rig: &Rig) -> Vec<(String, String)> {
    rig.sends()
        .iter()
        .filter(|s| s["CloudCustomData"] == r#"{"wxdesk":"undelivered"}"#)
        .map(|s| {
            assert_eq!(s["From_Account"], CUSTOMER, "from the customer's account");
            assert!(
                s["ForbidCallbackControl"]
                    .to_string()
                    .contains("ForbidAfterSendMsgCallback")
            );
            (
                s["To_Account"].as_str().unwrap().to_owned(),
                s["MsgBody"][0]["MsgContent"]["Text"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

async fn wait_notices(rig: &Rig, n: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while notices(rig).len() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    notices(rig)
}

/// WeChat allows 5 custom sends per customer message (45047 after), and none 48 h after
/// the customer's last action (45015). An agent whose message WeChat refuses is told, in
/// their conversation with the customer, once per message; the rest go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_told_when_wechat_refuses_their_message() {
    let rig = rig("told").await;
    let q = rig.customer_wrote_then_agent1_answers(8401, 6).await;
    let sent = rig.wait_sent(5).await;
    assert_eq!(sent.len(), 5, "WeChat took five");
    let told = wait_notices(&rig, 1).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, "agent1");
    assert!(told[0].1.starts_with("[not delivered] "), "{}", told[0].1);
    assert!(told[0].1.contains("limit of messages"), "{}", told[0].1);

    // Two days on, the window has closed: the next answer is refused and told too.
    rig.wx
        .age_customer(TIM_APPID, CUSTOMER, Duration::from_secs(49 * 3600));
    let late = tim::after_send(
        "agent2",
        CUSTOMER,
        "89541_7_1572870301",
        json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "still there?"}}]),
    );
    assert_eq!(rig.callback(&q, &late).await.0, 200);
    let told = wait_notices(&rig, 2).await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1].0, "agent2");
    assert!(
        told[1].1.contains("48-hour window has closed"),
        "{}",
        told[1].1
    );
    assert_eq!(rig.wx.sent().len(), 5);
}

/// With one send left of the customer's five, an agent message of three parts (text,
/// image, text) goes as one text with the image by its link, rather than losing two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_allowance_cannot_carry_goes_folded_into_one_text() {
    let rig = rig("fold").await;
    let q = rig.customer_wrote_then_agent1_answers(8501, 4).await;
    assert_eq!(rig.wait_sent(4).await.len(), 4);
    let jpeg = [&[0xff, 0xd8, 0xff, 0xe0][..], b" agent picture"].concat();
    let url = rig.wx.serve_file("fold.jpg", &jpeg, "image/jpeg");
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "fold_5_1572870301",
        json!([
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "Here is the photo:"}},
            {"MsgType": "TIMImageElem", "MsgContent": {"UUID": "x", "ImageFormat": 1,
                "ImageInfoArray": [{"Type": 1, "Size": 18, "Width": 1, "Height": 1, "URL": url}]}},
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "Anything else?"}}
        ]),
    );
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let sent = rig.wait_sent(5).await;
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert_eq!(
        sent[4]["text"]["content"],
        format!("Here is the photo:\n[Image] {url}\nAnything else?")
    );
    assert!(notices(&rig).is_empty(), "nothing was lost");
}

/// A trial IM app holds 100 accounts (70398): a customer past the cap is refused with
/// what to do, not retried, and doctor explains it when the cap is hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_im_app_at_its_account_cap_is_explained_not_retried() {
    let rig = rig("cap").await;
    rig.im.state.lock().unwrap().max_accounts = 0;
    let follow = "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>";
    assert_eq!(rig.push(push_xml("event", follow, None)).await, "success");
    let imports = rig.imports();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.imports(), imports, "a 70398 is not retried");
}

/// The callback's query for an agent's message now.
fn now_query() -> String {
    tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs())
}

/// A rig whose account has the Dialogue Platform (a stand-in) in front, with `extra`
/// in its `[apps.chatbot]`.
async fn dialogue_rig(name: &str, extra: &str) -> (wxdesk_tests::chatbot::PlatformStandIn, Rig) {
    use wxdesk_tests::chatbot::{self as platform, PLATFORM_APPID, PLATFORM_KEY, PLATFORM_TOKEN};
    let bot = platform::start().await;
    let section = format!(
        "[apps.chatbot]\nappid = \"{PLATFORM_APPID}\"\ntoken = \"{PLATFORM_TOKEN}\"\n\
         encoding_aes_key = \"{PLATFORM_KEY}\"\napi_base = \"{}\"\n{extra}",
        bot.server.url("")
    );
    let rig = rig_with(name, &section).await;
    (bot, rig)
}

/// A Mini Program rig: the same account as a Mini Program (the stand-in WeChat holds it
/// to a Mini Program's rules: no msgmenu, the business typing API).
async fn mp_rig(name: &str, desk_extra: &str) -> Rig {
    rig_text(name, |store, wx, im, base| {
        config_text(store, wx, im, base, "", desk_extra)
            .replace("kind = \"official_account\"", "kind = \"mini_program\"")
            .replace("connecting_text = \"Connecting you to an agent...\"", "")
    })
    .await
}

/// Customers reach agents as people, not bare openids: the account's remark where WeChat
/// has one, else a label with the shop's name; the appid in the configured profile field.
#[tokio::test]
async fn customers_are_imported_with_a_readable_nick_and_their_account() {
    let rig = rig_full("nick", "", "profile_field = \"Tag_Profile_Custom_appid\"").await;
    rig.im
        .state
        .lock()
        .unwrap()
        .profile_tags
        .insert("Tag_Profile_Custom_appid".into());
    rig.say("hi", 9001).await;
    {
        let st = rig.im.state.lock().unwrap();
        assert_eq!(st.nicks[CUSTOMER], "Blue Shop customer 0001");
        assert_eq!(
            st.profiles[&(CUSTOMER.to_owned(), "Tag_Profile_Custom_appid".to_owned())],
            TIM_APPID
        );
        let data: Value =
            serde_json::from_str(st.sends[0]["CloudCustomData"].as_str().unwrap()).unwrap();
        assert_eq!(data["wxdesk"]["account"]["name"], "Blue Shop");
        assert_eq!(data["messageFeature"]["needTyping"], 1);
    }
    let other = "oTimCustomer0000000000000002";
    rig.wx.remark(other, "VIP Wang");
    let xml =
        push_xml("text", "<Content><![CDATA[hi]]></Content>", Some(9002)).replace(CUSTOMER, other);
    rig.push(xml).await;
    assert_eq!(rig.im.state.lock().unwrap().nicks[other], "VIP Wang");
}

/// An offline last agent does not get the customer: the online one does; with nobody
/// online the customer is told once per offline period, and a burst of messages costs one
/// state query.
#[tokio::test]
async fn an_offline_last_agent_hands_the_customer_to_an_online_one() {
    let rig = rig_full(
        "presence",
        "",
        "offline_text = \"We are away; we will answer soon.\"",
    )
    .await;
    rig.im.set_online("agent2", "Online");
    // agent1 (offline, on their phone's desk) answers and so serves the customer last.
    rig.customer_wrote_then_agent1_answers(9101, 1).await;
    rig.wait_sent(1).await;
    let before = rig.im.state.lock().unwrap().status_queries;
    let reply = rig.say("still there?", 9102).await;
    assert_eq!(
        content(&reply).as_deref(),
        Some("Connecting you to an agent...")
    );
    let sends = rig.sends();
    assert_eq!(sends.last().unwrap()["To_Account"], "agent2", "{sends:?}");
    assert!(rig.im.state.lock().unwrap().status_queries <= before + 1);
}

#[tokio::test]
async fn with_nobody_online_the_customer_is_told_once() {
    let rig = rig_full(
        "offline",
        "",
        "offline_text = \"We are away; we will answer soon.\"",
    )
    .await;
    let first = rig.say("hello?", 9201).await;
    assert_eq!(
        content(&first).as_deref(),
        Some("We are away; we will answer soon.")
    );
    let second = rig.say("anyone?", 9202).await;
    assert_eq!(
        content(&second).as_deref(),
        Some("Connecting you to an agent...")
    );
    let sends = rig.sends();
    assert_eq!(sends.len(), 2, "both messages wait for the first agent");
    assert!(sends.iter().all(|s| s["To_Account"] == "agent1"));
    assert_eq!(
        rig.im.state.lock().unwrap().status_queries,
        1,
        "the fresh answer is reused"
    );
}

/// TUIKit's typing state (online-only, sent as TUIKit sends it) becomes WeChat's typing
/// indicator and never text; a second Typing while it shows (45081) and one with no
/// recent customer message (45080) are dropped quietly.
#[tokio::test]
async fn an_agents_typing_shows_as_typing_and_never_as_text() {
    let rig = rig("typing").await;
    rig.say("hi", 9301).await;
    rig.wx
        .customer(TIM_APPID, CUSTOMER, wechat::Action::Message);
    let typing = rig
        .im
        .typing("agent1", CUSTOMER, true, "9301_t1")
        .expect("TUIKit sends typing: the customer's message asked for it");
    assert_eq!(rig.callback(&now_query(), &typing).await.0, 200);
    assert_eq!(
        rig.wx.typings(),
        vec![(CUSTOMER.to_owned(), "Typing".to_owned())]
    );
    let again = rig.im.typing("agent1", CUSTOMER, true, "9301_t2").unwrap();
    assert_eq!(
        rig.callback(&now_query(), &again).await.0,
        200,
        "45081 is dropped"
    );
    rig.wx
        .age_customer(TIM_APPID, CUSTOMER, Duration::from_secs(31));
    let stop = rig.im.typing("agent1", CUSTOMER, false, "9301_t3").unwrap();
    assert_eq!(
        rig.callback(&now_query(), &stop).await.0,
        200,
        "45080 is dropped"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rig.wx.typings().len(), 1);
    assert!(rig.wx.sent().is_empty(), "no text: {:?}", rig.wx.sent());
    assert!(notices(&rig).is_empty(), "nobody was told of a failure");
}

/// A branch menu reaches an Official Account customer as msgmenu; the click comes back
/// to the agent as the option's text, as TUIKit sends a tap.
#[tokio::test]
async fn a_branch_menu_round_trip() {
    let rig = rig("branch").await;
    let q = rig.customer_wrote_then_agent1_answers(9401, 0).await;
    let menu = tim::custom(
        &tim::branch_menu("What do you need?", &["Order status", "Returns"]),
        "",
    );
    let body = tim::after_send("agent1", CUSTOMER, "9401_m_1", menu);
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let sent = rig.wait_sent(1).await;
    assert_eq!(sent[0]["msgtype"], "msgmenu", "{sent:?}");
    assert_eq!(sent[0]["msgmenu"]["head_content"], "What do you need?");
    let option = &sent[0]["msgmenu"]["list"][1];
    assert_eq!(option["content"], "Returns");
    let click = format!(
        "<Content><![CDATA[Returns]]></Content><bizmsgmenuid>{}</bizmsgmenuid>",
        option["id"].as_str().unwrap()
    );
    rig.push(push_xml("text", &click, Some(9402))).await;
    let last = rig.sends().last().cloned().unwrap();
    assert_eq!(
        last["MsgBody"],
        json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "Returns"}}])
    );
}

/// A rating request reaches a Mini Program customer as numbered lines (no msgmenu
/// there); the digit goes back to the agent as the plugin's "rating chosen" message.
#[tokio::test]
async fn a_rating_round_trip_on_a_mini_program() {
    let rig = mp_rig("rating-mp", "").await;
    let q = rig.customer_wrote_then_agent1_answers(9501, 0).await;
    let rating = tim::rating_request("How did we do?", &[("1", "Bad"), ("5", "Great")], "sess-9");
    let body = tim::after_send("agent1", CUSTOMER, "9501_r_1", tim::custom(&rating, ""));
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let sent = rig.wait_sent(1).await;
    assert_eq!(sent[0]["msgtype"], "text", "{sent:?}");
    let text = sent[0]["text"]["content"].as_str().unwrap();
    assert!(
        text.contains("1. Bad") && text.contains("2. Great"),
        "{text}"
    );
    rig.say("2", 9502).await;
    let last = rig.sends().last().cloned().unwrap();
    let elem = &last["MsgBody"][0];
    assert_eq!(elem["MsgType"], "TIMCustomElem", "{last}");
    let data: Value = serde_json::from_str(elem["MsgContent"]["Data"].as_str().unwrap()).unwrap();
    assert_eq!(data["src"], "10");
    assert_eq!(data["menuSelected"]["id"], "5");
    assert_eq!(data["menuSelected"]["sessionId"], "sess-9");
    // Answered: the same digit again is just text.
    rig.say("2", 9503).await;
    let last = rig.sends().last().cloned().unwrap();
    assert_eq!(last["MsgBody"][0]["MsgContent"]["Text"], "2");
}

/// A product card reaches a Mini Program customer as a link card; the session's end shows
/// the customer nothing and tells the agent of no failure.
#[tokio::test]
async fn a_product_card_as_a_link_and_a_session_end_as_nothing() {
    let rig = mp_rig("card-mp", "").await;
    let q = rig.customer_wrote_then_agent1_answers(9601, 0).await;
    let card = tim::product_card(
        "Blue mug",
        "12 oz",
        "https://cdn.example/m.png",
        "https://shop.example/m",
    );
    let end = tim::plugin("19", json!({}));
    let body = tim::after_send("agent1", CUSTOMER, "9601_c_1", tim::custom(&card, ""));
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let body = tim::after_send("agent1", CUSTOMER, "9601_e_1", tim::custom(&end, ""));
    assert_eq!(rig.callback(&q, &body).await.0, 200);
    let sent = rig.wait_sent(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["msgtype"], "link");
    assert_eq!(sent[0]["link"]["url"], "https://shop.example/m");
    assert_eq!(sent[0]["link"]["thumb_url"], "https://cdn.example/m.png");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(notices(&rig).is_empty(), "{:?}", notices(&rig));
}

/// An agent mapped to a WeChat customer-service account speaks as that account.
#[tokio::test]
async fn agents_speak_as_their_kf_account() {
    let rig = rig_full(
        "kf",
        "",
        "[apps.desk.kf_accounts]\nagent1 = \"kf2001@gh_test\"",
    )
    .await;
    rig.customer_wrote_then_agent1_answers(9701, 1).await;
    let sent = rig.wait_sent(1).await;
    assert_eq!(
        sent[0]["customservice"]["kf_account"], "kf2001@gh_test",
        "{sent:?}"
    );
}

/// Two accounts on one IM app: Tencent calls one callback URL for both, so an agent's
/// answer to the second account's customer, arriving at the first account's URL, still
/// reaches that customer (from the record written at their import).
#[tokio::test]
async fn one_im_app_serves_the_customers_of_every_account_on_it() {
    const OTHER: &str = "wxtim00000000002";
    let rig = rig_text("shared-im", |store, wx, im, base| {
        let first = config_text(store, wx, im, base, "", "");
        let second = first
            .split("[[apps]]")
            .nth(1)
            .unwrap()
            .replace(TIM_APPID, OTHER)
            .replace("name = \"Blue Shop\"", "name = \"Red Shop\"")
            .replace("agents = [\"agent1\", \"agent2\"]", "agents = [\"agent3\"]");
        format!("{first}\n[[apps]]{second}")
    })
    .await;
    let customer = "oRedShopCustomer000000000001";
    let xml = push_xml("text", "<Content><![CDATA[hi red]]></Content>", Some(9801))
        .replace(CUSTOMER, customer);
    let r = rig
        .http
        .post(format!(
            "{}/wechat/{OTHER}?{}",
            rig.base,
            plain_query(now_secs(), "t1")
        ))
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data: Value =
        serde_json::from_str(rig.sends()[0]["CloudCustomData"].as_str().unwrap()).unwrap();
    assert_eq!(data["wxdesk"]["account"]["appid"], OTHER);
    rig.wx.customer(OTHER, customer, wechat::Action::Message);
    let body = tim::after_send(
        "agent3",
        customer,
        "9801_1_1",
        json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello from red"}}]),
    );
    // The first account's URL: the one Tencent's console holds for the IM app.
    assert_eq!(rig.callback(&now_query(), &body).await.0, 200);
    let sent = rig.wait_sent(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["touser"], customer);
}

/// Through the Dialogue Platform: a branch menu becomes the platform's own bizmsgmenu
/// links, every sendmsg names the configured skill (`ans_node_name`), and the session's
/// end sends `waiterQuit`.
#[tokio::test]
async fn through_the_dialogue_platform_menus_are_bizmsgmenu_links_with_the_skill() {
    let (bot, rig) = dialogue_rig("bot-menu", "ans_node_name = \"After-sales\"\n").await;
    let q = now_query();
    let menu = tim::custom(&tim::branch_menu("Pick one", &["Refund", "Exchange"]), "");
    rig.callback(&q, &tim::after_send("agent1", CUSTOMER, "m1", menu))
        .await;
    let end = tim::custom(&tim::plugin("20", json!({})), "");
    rig.callback(&q, &tim::after_send("agent1", CUSTOMER, "m2", end))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while bot.received().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = bot.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let msg = got[0]["msg"].as_str();
    assert!(msg.starts_with("Pick one\n"), "{msg}");
    assert!(
        msg.contains("<a href=\"weixin://bizmsgmenu?msgmenucontent=Refund&amp;msgmenuid="),
        "{msg}"
    );
    assert!(msg.contains(">Exchange</a>"), "{msg}");
    assert!(
        got.iter().all(|m| m["ans_node_name"] == "After-sales"),
        "{got:?}"
    );
    assert_eq!(got[1]["event"].as_str(), "waiterQuit");
    assert!(rig.wx.sent().is_empty());
}

/// A Mini Program customer opening the chat reaches the agent with the developer's
/// context (`SessionFrom`: a product, an order).
#[tokio::test]
async fn entering_the_chat_tells_the_agent_where_the_customer_came_from() {
    let rig = mp_rig("tempsession", "").await;
    let event = "<Event><![CDATA[user_enter_tempsession]]></Event><SessionFrom><![CDATA[order 42]]></SessionFrom>";
    assert_eq!(rig.push(push_xml("event", event, None)).await, "success");
    let sends = rig.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        sends[0]["MsgBody"][0]["MsgContent"]["Text"],
        "[The customer opened the chat from: order 42]"
    );
}

/// `doctor` proves the configured profile field exists in the IM console, and says what to
/// do when it does not.
#[tokio::test]
async fn doctor_checks_the_profile_field() {
    let rig = rig_full(
        "doctor-profile",
        "",
        "profile_field = \"Tag_Profile_Custom_appid\"",
    )
    .await;
    let desk = |checks: &[wxdesk::app::doctor::Check]| {
        checks
            .iter()
            .find(|c| c.name == "desk")
            .map(|c| c.to_string())
            .unwrap_or_default()
    };
    let checks = wxdesk::app::doctor::run(&rig.svc, None).await;
    let line = desk(&checks);
    assert!(
        line.contains("Tag_Profile_Custom_appid") && line.contains("IM console"),
        "{line}"
    );
    rig.im
        .state
        .lock()
        .unwrap()
        .profile_tags
        .insert("Tag_Profile_Custom_appid".into());
    let checks = wxdesk::app::doctor::run(&rig.svc, None).await;
    let line = desk(&checks);
    assert!(line.contains("exists"), "{line}");
}
