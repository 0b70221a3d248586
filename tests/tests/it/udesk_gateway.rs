//! The Udesk simulated WeChat domain end to end: the local server between a stand-in Udesk
//! client (reqwest, sending what the documentation shows) and the stand-in WeChat API, on the
//! embedded store and on moto (DynamoDB tokens, S3 media).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wxdesk::store::{MediaStore, Stores};
use wxdesk_tests::wechat::{self, WechatStandIn};
use wxdesk_tests::*;

struct Rig {
    base: String,
    wx: WechatStandIn,
    desk: StandIn,
    svc: Arc<wxdesk::Services>,
    http: reqwest::Client,
}

fn config(wx: &WechatStandIn, desk: &StandIn, store: &str, extra: &str) -> wxdesk::Config {
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\n{FETCH_LOOPBACK}{extra}",
        wx.base()
    );
    wxdesk::Config::parse(&config_text(store, &desk.url("/weixin/chan"), &extra)).unwrap()
}

async fn rig_with(name: &str, aws: bool, extra: &str) -> Rig {
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let svc = if aws {
        let cfg = config(
            &wx,
            &desk,
            "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n",
            extra,
        );
        Arc::new(wxdesk::Services::with_parts(
            cfg,
            aws_stores().await,
            Arc::new(wxdesk::support::clock::SystemClock),
        ))
    } else {
        let store = embedded_store(name);
        let cfg = config(&wx, &desk, &store, extra);
        let stores = Stores::open(&cfg.store).await.unwrap();
        Arc::new(wxdesk::Services::with_parts(
            cfg,
            stores,
            Arc::new(wxdesk::support::clock::SystemClock),
        ))
    };
    let base = start_local(svc.clone()).await;
    Rig {
        base,
        wx,
        desk,
        svc,
        http: wxdesk_tests::http(),
    }
}

async fn rig(name: &str) -> Rig {
    rig_with(name, false, "").await
}

impl Rig {
    /// A Mini Program's JSON text push in safe mode.
    async fn mp_push(&self, content: &str, msg_id: u64, ts: i64) -> reqwest::Response {
        let push = json!({"ToUserName":"gh_mp","FromUserName":"oMp","CreateTime":ts,
                          "MsgType":"text","Content":content,"MsgId":msg_id})
        .to_string();
        let (query, body) = safe_mode_push(MP_APPID, &push, true, ts, &format!("n{msg_id}"));
        self.http
            .post(format!("{}/wechat/{MP_APPID}?{query}", self.base))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn domain(&self) -> String {
        format!("{}/udesk/{APPID}/{GATEWAY_KEY}", self.base)
    }

    async fn form(&self, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.domain())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

#[tokio::test]
async fn documented_form_examples_reach_wechat_as_custom_send_json() {
    let rig = rig("forms").await;
    let cases = [
        (
            "touser=o2IGD0a1OvYAEBfPRa8t34Wc2nUo&msgtype=text&text[content]=123",
            json!({"touser":"o2IGD0a1OvYAEBfPRa8t34Wc2nUo","msgtype":"text","text":{"content":"123"}}),
        ),
        (
            "touser=oU&msgtype=image&image[media_id]=M1",
            json!({"touser":"oU","msgtype":"image","image":{"media_id":"M1"}}),
        ),
        (
            "touser=oU&msgtype=voice&voice[media_id]=M2",
            json!({"touser":"oU","msgtype":"voice","voice":{"media_id":"M2"}}),
        ),
        (
            "touser=oU&msgtype=video&video[media_id]=M3",
            json!({"touser":"oU","msgtype":"video","video":{"media_id":"M3"}}),
        ),
        (
            "touser=oU&msgtype=news&news[articles][0][title]=T&news[articles][0][description]=D\
             &news[articles][0][url]=http://u&news[articles][0][picurl]=http://p",
            json!({"touser":"oU","msgtype":"news","news":{"articles":[{"title":"T","description":"D","url":"http://u","picurl":"http://p"}]}}),
        ),
        (
            "touser=oU&msgtype=news&news[articles][][title]=T&news[articles][][description]=D\
             &news[articles][][url]=http://u&news[articles][][picurl]=http://p",
            json!({"touser":"oU","msgtype":"news","news":{"articles":[{"title":"T","description":"D","url":"http://u","picurl":"http://p"}]}}),
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let (status, answer) = rig.form(body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer, json!({"errcode":0,"errmsg":"ok"}), "{body}");
        assert_eq!(&rig.wx.sent()[i], want, "{body}");
    }
    // JSON bodies are accepted too (after the customer wrote again: WeChat allows 5 sends
    // per customer message).
    rig.wx.customer(APPID, "oU", wechat::Action::Message);
    let msg = json!({"touser":"oU","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[{"id":"1","content":"yes"}],"tail_content":"t"}});
    let r = rig
        .http
        .post(rig.domain())
        .body(msg.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rig.wx.sent().last().unwrap(), &msg);
    // One token served every send.
    assert_eq!(rig.wx.token_calls(), 1);
}

#[tokio::test]
async fn unconvertible_bodies_get_an_errcode_naming_the_field() {
    let rig = rig("badform").await;
    let (status, answer) = rig.form("touser=oU&msgtype=text").await;
    assert_eq!(status, 400);
    assert_eq!(answer["errcode"], 40035);
    assert!(
        answer["errmsg"].as_str().unwrap().contains("text"),
        "{answer}"
    );
    let (_, answer) = rig
        .form("touser=oU&msgtype=news&news[articles][0][url]=u")
        .await;
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .contains("news[articles][0][title]"),
        "{answer}"
    );
    assert_eq!(rig.wx.send_attempts(), 0);
    assert_eq!(rig.wx.server.hits(), 0, "WeChat is never called");
}

#[tokio::test]
async fn a_wrong_or_missing_gateway_key_is_refused() {
    let rig = rig("key").await;
    let body = "touser=oU&msgtype=text&text[content]=x";
    for url in [
        format!("{}/udesk/{APPID}/wrong-key-0123456789", rig.base),
        format!("{}/udesk/{APPID}/{GATEWAY_KEY}x", rig.base),
        format!("{}/udesk/wrong-key-0123456789?appid={APPID}", rig.base),
    ] {
        let r = rig.http.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), 401, "{url}");
        let v: Value = r.json().await.unwrap();
        assert_ne!(v["errcode"], 0);
        assert!(!v.to_string().contains(GATEWAY_KEY));
    }
    assert_eq!(rig.wx.server.hits(), 0, "nothing reached WeChat");
    // The `?appid=` form with the right key works.
    let r = rig
        .http
        .post(format!("{}/udesk/{GATEWAY_KEY}?appid={APPID}", rig.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rig.wx.sent().len(), 1);
}

/// Many senders and no token yet: exactly one of them fetches it.
async fn fifty_concurrent_sends_fetch_one_token(rig: Rig) {
    // A slow token endpoint makes everybody arrive while the first fetch is running.
    rig.wx.set_token_delay(Duration::from_millis(300));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let req = rig
                .http
                .post(rig.domain())
                .body(format!("touser=oU{i}&msgtype=text&text[content]=m{i}"));
            tokio::spawn(async move { req.send().await.unwrap().json::<Value>().await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap()["errcode"], 0);
    }
    assert_eq!(rig.wx.token_calls(), 1, "exactly one token fetch");
    assert_eq!(rig.wx.sent().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_one_token_fetch_embedded() {
    fifty_concurrent_sends_fetch_one_token(rig("fifty").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_one_token_fetch_dynamodb() {
    fifty_concurrent_sends_fetch_one_token(rig_with("fifty-aws", true, "").await).await;
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_and_the_call_retried_once() {
    let rig = rig("40001").await;
    let send = "touser=oU&msgtype=text&text[content]=hello";
    assert_eq!(rig.form(send).await.1["errcode"], 0);
    assert_eq!(rig.wx.token_calls(), 1);
    // WeChat stops accepting the stored token: one refresh, one retry, delivered.
    rig.wx.expire_all();
    let (_, answer) = rig.form(send).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(rig.wx.token_calls(), 2);
    assert_eq!(rig.wx.sent().len(), 2);
    assert_eq!(rig.wx.send_attempts(), 3);
    // A 40001 that persists after the retry is returned, not retried again.
    rig.wx
        .inject("/cgi-bin/message/custom/send", &[40001, 40001]);
    let (_, answer) = rig.form(send).await;
    assert_eq!(answer["errcode"], 40001, "{answer}");
    assert_eq!(rig.wx.token_calls(), 3, "one refresh only");
    assert_eq!(rig.wx.send_attempts(), 5, "one retry only");
}

#[tokio::test]
async fn ip_whitelist_and_bad_secret_errors_are_returned_without_a_refresh() {
    let rig = rig("40164").await;
    let send = "touser=oU&msgtype=text&text[content]=x";
    // On the token endpoint: returned as is, fetched once.
    rig.wx.inject("/cgi-bin/token", &[40164]);
    let (_, answer) = rig.form(send).await;
    assert_eq!(answer["errcode"], 40164, "{answer}");
    assert_eq!(rig.wx.token_calls(), 1);
    assert_eq!(rig.wx.send_attempts(), 0);
    // For a while the account fails fast with that refusal, asking WeChat nothing.
    let (_, again) = rig.form(send).await;
    assert!(again.to_string().contains("40164"), "{again}");
    assert_eq!(rig.wx.token_calls(), 1);
    // On an API call with a good token: no refresh, no retry.
    let rig = self::rig("40164-call").await;
    assert_eq!(rig.form(send).await.1["errcode"], 0);
    let tokens = rig.wx.token_calls();
    let attempts = rig.wx.send_attempts();
    rig.wx.inject("/cgi-bin/message/custom/send", &[40164]);
    let (_, answer) = rig.form(send).await;
    assert_eq!(answer["errcode"], 40164);
    assert_eq!(rig.wx.token_calls(), tokens, "40164 never refreshes");
    assert_eq!(rig.wx.send_attempts(), attempts + 1, "40164 is not retried");
    // -1 (system busy) is retried with backoff.
    rig.wx.inject("/cgi-bin/message/custom/send", &[-1, -1]);
    assert_eq!(rig.form(send).await.1["errcode"], 0);
    assert_eq!(rig.wx.send_attempts(), attempts + 4);
}

/// WeChat answers an Official Account's calls only from addresses on its IP allow-list
/// (40164, naming the address it saw). With `[wechat] proxy` the calls leave from the
/// proxy host's address, and only WeChat's calls do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_allow_list_refuses_us_and_accepts_the_proxy() {
    use wxdesk_tests::proxy::{self, PROXY_EGRESS};
    let send = "touser=oU&msgtype=text&text[content]=x";
    // Direct: WeChat sees 127.0.0.1, which is not on the list.
    let rig = rig("allow-list").await;
    rig.wx.allow_only(&[PROXY_EGRESS]);
    let (_, answer) = rig.form(send).await;
    assert_eq!(answer["errcode"], 40164, "{answer}");
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .contains("invalid ip 127.0.0.1")
    );
    assert_eq!(rig.wx.sent().len(), 0);
    // doctor names the address and where to add it.
    let checks = wxdesk::app::doctor::run(&rig.svc, Some(APPID)).await;
    let shown: String = checks.iter().map(|c| format!("{c}\n")).collect();
    assert!(shown.contains("add 127.0.0.1 in the WeChat admin console → Settings → Basic configuration → IP allow-list"), "{shown}");

    // Through the proxy: WeChat sees 127.0.0.2.
    let proxy = proxy::start().await;
    let (wx, desk) = (wechat::start().await, udesk_wechat().await);
    wx.allow_only(&[PROXY_EGRESS]);
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\nproxy = \"{}\"\n{FETCH_LOOPBACK}",
        wx.base(),
        proxy.url()
    );
    let text = config_text(
        &embedded_store("allow-list-proxy"),
        &desk.url("/weixin/chan"),
        &extra,
    );
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc.clone()).await;
    let r = wxdesk_tests::http()
        .post(format!("{base}/udesk/{APPID}/{GATEWAY_KEY}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(send)
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(wx.sent().len(), 1);
    assert!(proxy.carried() >= 1, "the calls went through the proxy");
    // Only WeChat's calls: the desk is reached directly.
    let carried = proxy.carried();
    let (q, push) = safe_mode_push(
        APPID,
        &text_push("hello", 7_700_001, now_secs()),
        false,
        now_secs(),
        "n1",
    );
    let pushed = wxdesk_tests::http()
        .post(format!("{base}/wechat/{APPID}?{q}"))
        .body(push)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    assert!(desk.hits() >= 1);
    assert_eq!(proxy.carried(), carried, "desk calls do not use the proxy");
}

fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..len).map(|i| (i * 7 % 251) as u8));
    b
}

async fn upload(rig: &Rig, media_type: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part(
        "media",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str("image/png")
            .unwrap(),
    );
    let r = rig
        .http
        .post(format!("{}?type={media_type}", rig.domain()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn media_round_trip(rig: Rig) {
    let bytes = png(150_000);
    let (status, answer) = upload(&rig, "image", "photo.png", bytes.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "image");
    let media_id = answer["media_id"].as_str().unwrap().to_owned();
    {
        let st = rig.wx.state.lock().unwrap();
        let (t, name, ct, got) = &st.uploads[0];
        assert_eq!(
            (t.as_str(), name.as_str(), ct.as_str()),
            ("image", "photo.png", "image/png")
        );
        assert_eq!(
            got.as_ref(),
            bytes.as_slice(),
            "WeChat got the file as sent"
        );
    }
    for round in 0..2 {
        // Udesk's virtual access_token is not WeChat's and is never sent on.
        let r = rig
            .http
            .get(format!(
                "{}?media_id={media_id}&access_token=VIRTUAL",
                rig.domain()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("attachment; filename=")
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    assert_eq!(
        rig.wx.state.lock().unwrap().media_get_calls,
        1,
        "the second download came from the store"
    );
    assert!(
        rig.wx
            .server
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|(uri, _)| !uri.contains("VIRTUAL"))
    );
}

/// The files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            _ => vec![e.path()],
        })
        .collect()
}

fn store_dir(rig: &Rig) -> std::path::PathBuf {
    match &rig.svc.config.store {
        wxdesk::config::StoreConfig::Embedded { path } => path.clone(),
        other => panic!("not embedded: {other:?}"),
    }
}

#[tokio::test]
async fn media_round_trip_through_the_local_directory() {
    let rig = rig("media").await;
    let dir = store_dir(&rig);
    media_round_trip(rig).await;
    // Review 2, §2: staged media was never deleted. An upload goes once WeChat has it.
    let uploads = files_under(&dir.join("media/upload"));
    assert!(uploads.is_empty(), "{uploads:?}");
    assert_eq!(
        files_under(&dir.join("media/media")).len(),
        2,
        "the download and its sidecar stay"
    );
}

/// Review 2, §2: files aged 10 days survived a restart of the embedded store. The local
/// worker sweeps staged media at start and every 10 minutes: past its 3-day life it goes,
/// and the oldest go while the directory is over `[media] max_staged_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_media_past_its_life_is_swept_at_start() {
    let dir = temp_dir("sweep-at-start");
    {
        // What an earlier run left.
        let media = wxdesk::store::embedded::EmbeddedMedia::open(&dir.join("media")).unwrap();
        for id in ["OLD", "FRESH1", "FRESH2"] {
            let staged = wxdesk::store::StagedMedia {
                bytes: vec![1u8; 1000].into(),
                content_type: "image/jpeg".into(),
                filename: format!("{id}.jpg"),
            };
            media
                .put(&format!("media/{APPID}/{id}"), &staged)
                .await
                .unwrap();
        }
    }
    let file = |id: &str| dir.join(format!("media/media/{APPID}/{id}"));
    let aged = |id: &str, days: u64| {
        let f = std::fs::File::options().write(true).open(file(id)).unwrap();
        let then = std::time::SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        f.set_modified(then).unwrap();
    };
    aged("OLD", 10);
    aged("FRESH1", 1);
    let (wx, desk) = (wechat::start().await, udesk_wechat().await);
    let store = format!("[store]\nbackend = \"embedded\"\npath = {dir:?}\n");
    let cfg = config(&wx, &desk, &store, "[media]\nmax_staged_bytes = 1500\n");
    let stores = Stores::open(&cfg.store).await.unwrap();
    let svc = Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ));
    let _base = start_local(svc).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (file("OLD").exists() || file("FRESH1").exists()) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!file("OLD").exists(), "10 days old: past its life");
    assert!(
        !file("FRESH1").exists(),
        "the older of two over the 1,500-byte cap"
    );
    assert!(file("FRESH2").exists());
    let left = files_under(&dir.join("media/media"));
    assert_eq!(left.len(), 2, "FRESH2 and its sidecar: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_round_trip_through_s3() {
    media_round_trip(rig_with("media-s3", true, "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_media_is_redirected_to_a_presigned_s3_url() {
    let rig = rig_with("large", true, "[media]\nmax_inline_bytes = 10000\n").await;
    let bytes = png(50_000);
    rig.wx.add_media("BIG_1", &bytes, "image/png");
    wxdesk::support::tls::install();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{}?media_id=BIG_1", rig.domain()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    let got = wxdesk_tests::get(&location).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn media_get_follows_video_url_and_passes_errcodes_through() {
    let rig = rig("video").await;
    let r = rig
        .http
        .get(format!("{}?media_id=VIDEO_1", rig.domain()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        b"\0\0\0\x18ftypmp42 stand-in video bytes"
    );
    let r = rig
        .http
        .get(format!("{}?media_id=NOPE", rig.domain()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"errcode":40007,"errmsg":"invalid media_id"}));
}

#[tokio::test]
async fn uploads_over_wechats_limits_are_refused_before_wechat() {
    let rig = rig("limits").await;
    let (status, answer) = upload(&rig, "thumb", "t.jpg", png(70_000)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["errcode"], 40006, "{answer}");
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
    jpeg.resize(70_000, 1);
    let (_, answer) = upload(&rig, "thumb", "t.jpg", jpeg).await;
    assert_eq!(answer["errcode"], 40006, "{answer}");
    let (_, answer) = upload(&rig, "video", "v.mp4", png(10)).await;
    assert_eq!(answer["errcode"], 40005, "{answer}");
    let (_, answer) = upload(&rig, "file", "v.bin", png(10)).await;
    assert_eq!(answer["errcode"], 40004, "{answer}");
    assert!(rig.wx.state.lock().unwrap().uploads.is_empty());
}

#[tokio::test]
async fn user_info_and_templates_pass_through() {
    let rig = rig("info").await;
    let v: Value = rig
        .http
        .get(format!(
            "{}?openid=o-NbF1HPuegFK5sa1psr7EEeSTSg&lang=zh_CN",
            rig.domain()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["openid"], "o-NbF1HPuegFK5sa1psr7EEeSTSg");
    assert_eq!(v["subscribe"], 1);
    let v: Value = rig
        .http
        .get(format!(
            "{}/template/get_all_private_template",
            rig.domain()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["template_list"][0]["template_id"],
        "iPk5sOIt5X_flOVKn5GrTFpncEYTojx6ddbt8WYoV5s"
    );
    // The documentation's template message.
    let msg = json!({
        "touser": "OPENID",
        "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        "url": "http://weixin.qq.com/download",
        "miniprogram": {"appid": "xiaochengxuappid12345", "pagepath": "index?foo=bar"},
        "data": {"first": {"value": "Congratulations on your successful purchase!", "color": "#173177"}}
    });
    let v: Value = rig
        .http
        .post(format!("{}/message/template/send", rig.domain()))
        .body(msg.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"errcode":0,"errmsg":"ok","msgid":200228332}));
    assert_eq!(rig.wx.state.lock().unwrap().template_sends[0], msg);
    // A `?appid=` simulated domain: Udesk appends the path after the query.
    let v: Value = rig
        .http
        .get(format!(
            "{}/udesk/{GATEWAY_KEY}?appid={APPID}/template/get_all_private_template",
            rig.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["template_list"].is_array(), "{v}");
}

#[tokio::test]
async fn an_unreachable_wechat_gives_errcode_json() {
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let store = embedded_store("down");
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = config_text(
        &store,
        &desk.url("/w"),
        &format!("[wechat]\napi_base = \"http://{dead}\"\ntimeout_ms = 500\n"),
    );
    drop(wx);
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc).await;
    let r = wxdesk_tests::http()
        .post(format!("{base}/udesk/{APPID}/{GATEWAY_KEY}"))
        .body("touser=oU&msgtype=text&text[content]=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errcode"], -1);
    assert!(v["errmsg"].as_str().unwrap().starts_with("wxdesk: "), "{v}");
}

#[tokio::test]
async fn mini_program_passive_replies_become_custom_sends() {
    let rig = rig("mp").await;
    let ts = now_secs();
    let r = rig.mp_push("mp hello", 7001, ts).await;
    assert_eq!(r.text().await.unwrap(), "success");
    assert_eq!(
        rig.wx.sent(),
        vec![json!({"touser":"oMp","msgtype":"text","text":{"content":"echo: mp hello"}})]
    );
    assert_eq!(rig.desk.hits(), 1);
    // transfer_customer_service is the one passive reply a Mini Program takes.
    let r = rig.mp_push("transfer", 7002, ts).await;
    let v: Value = r.json().await.unwrap();
    let plain = wxdesk::wechat::crypto::MsgCrypt::new(AES_KEY)
        .unwrap()
        .decrypt(v["Encrypt"].as_str().unwrap(), MP_APPID)
        .unwrap();
    let inner: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(inner["MsgType"], "transfer_customer_service");
    assert_eq!(rig.wx.sent().len(), 1);
}

#[tokio::test]
async fn the_scheduled_refresher_renews_only_when_due() {
    let rig = rig("refresher").await;
    let (report, ok) = wxdesk::app::refresher::refresh_all(&rig.svc).await;
    assert!(ok, "{report}");
    assert_eq!(report[APPID]["state"], "refreshed");
    let accounts = rig.svc.config.apps.len();
    assert_eq!(rig.wx.token_calls(), accounts, "one per account");
    let (report, _) = wxdesk::app::refresher::refresh_all(&rig.svc).await;
    assert_eq!(report[APPID]["state"], "fresh");
    assert_eq!(rig.wx.token_calls(), accounts);
    // A token close to expiry is renewed by the next pass.
    let short = rig_with("refresher-short", false, "").await;
    short.wx.state.lock().unwrap().expires_in = 600;
    wxdesk::app::refresher::refresh_all(&short.svc).await;
    let (report, _) = wxdesk::app::refresher::refresh_all(&short.svc).await;
    assert_eq!(report[APPID]["state"], "refreshed", "{report}");
    assert_eq!(short.wx.token_calls(), 2 * accounts);
}

#[tokio::test]
async fn stable_token_mode_uses_stable_token_and_forces_after_a_rejection() {
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let store = embedded_store("stable");
    let text = config_text(
        &store,
        &desk.url("/w"),
        &format!("[wechat]\napi_base = \"{}\"\n", wx.base()),
    )
    .replacen(
        "secret = \"test-secret\"",
        "secret = \"test-secret\"\nstable_token = true",
        1,
    );
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc).await;
    let send = || {
        wxdesk_tests::http()
            .post(format!("{base}/udesk/{APPID}/{GATEWAY_KEY}"))
            .body("touser=oU&msgtype=text&text[content]=x")
            .send()
    };
    assert_eq!(
        send().await.unwrap().json::<Value>().await.unwrap()["errcode"],
        0
    );
    wx.expire_all();
    assert_eq!(
        send().await.unwrap().json::<Value>().await.unwrap()["errcode"],
        0
    );
    let st = wx.state.lock().unwrap();
    assert_eq!(
        (st.token_calls, st.stable_calls, st.stable_force_calls),
        (0, 2, 1)
    );
}

/// Review 2, §4: while WeChat refused tokens (45009, 40164, -1) every request made its own
/// token call (30 requests → 103 calls). After a refused fetch the account fails fast for
/// a while (a minute for an allow-list or secret error, a few seconds after -1), with the
/// error that says what to fix.
#[tokio::test]
async fn a_refused_token_is_not_asked_for_again_at_once() {
    for (code, most_calls) in [(40164, 1), (-1, 3)] {
        let rig = rig(&format!("refused-{code}")).await;
        rig.wx.inject("/cgi-bin/token", &[code; 200]);
        let send = "touser=oU&msgtype=text&text[content]=hello";
        let mut answers = Vec::new();
        for _ in 0..30 {
            answers.push(rig.form(send).await.1.to_string());
        }
        assert!(
            rig.wx.token_calls() <= most_calls,
            "{code}: {} token calls for 30 requests",
            rig.wx.token_calls()
        );
        assert!(rig.wx.sent().is_empty());
        assert!(
            answers.iter().all(|a| a.contains(&code.to_string())),
            "every answer names the refusal: {answers:?}"
        );
    }
}

/// Review 2, §4: a desk got the AWS SDK's error text (table names, ARNs) when a store
/// failed. It now gets a generic errmsg; the log keeps the reason.
#[tokio::test]
async fn a_failing_store_is_not_described_to_the_desk() {
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let cfg = config(
        &wx,
        &desk,
        "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n",
        "",
    );
    let mut stores = aws_stores().await;
    stores.tokens = Arc::new(wxdesk::store::aws::AwsTokens::new(
        dynamodb().await,
        "wxdesk-private-table-name-0451".to_owned(),
    ));
    let svc = Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ));
    let base = start_local(svc).await;
    let r = wxdesk_tests::http()
        .post(format!("{base}/udesk/{APPID}/{GATEWAY_KEY}"))
        .body("touser=oU&msgtype=text&text[content]=hi")
        .send()
        .await
        .unwrap();
    let answer = r.text().await.unwrap();
    assert!(answer.contains("token store is unavailable"), "{answer}");
    assert!(
        !answer.contains("wxdesk-private-table-name-0451"),
        "{answer}"
    );
    assert!(
        !answer.contains("DynamoDB") && !answer.contains("ResourceNotFound"),
        "{answer}"
    );
}

/// The example config starts quietly: its account's AppSecret is a placeholder and its
/// desk is echo, so the schedule fetches no token for it and reports no failure (it
/// logged three errors a minute); a real account beside it is still refreshed.
#[tokio::test]
async fn the_example_config_schedules_no_token_it_cannot_get() {
    let wx = wechat::start().await;
    let example = |name: &str| {
        include_str!("../../../wxdesk.example.toml")
            .replace(
                "path = \".wxdesk-data\"",
                &format!("path = {:?}", temp_dir(name)),
            )
            .replace("https://api.weixin.qq.com", &wx.base())
    };
    let build = |text: String| async move {
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap()
    };
    let svc = build(example("example")).await;
    let (report, ok) = wxdesk::app::refresher::refresh_all(&svc).await;
    assert!(ok, "{report}");
    assert_eq!(
        report["wx0000000000000000"]["state"], "not scheduled",
        "{report}"
    );
    assert_eq!(wx.token_calls(), 0);
    // The same account with a real secret and a desk is refreshed as before.
    let real = example("example-real")
        .replace("replace-with-your-appsecret", wechat::APP_SECRET)
        .replace(
            "kind = \"echo\"",
            "kind = \"udesk_wechat\"\nurl = \"https://udesk.example/weixin/x\"",
        );
    let svc = build(real).await;
    let (report, ok) = wxdesk::app::refresher::refresh_all(&svc).await;
    assert!(ok, "{report}");
    assert_eq!(
        report["wx0000000000000000"]["state"], "refreshed",
        "{report}"
    );
}
