//! The third-party platform's authorization events and component_access_token, against
//! the WeChat stand-in's Open Platform side: a ticket pushed to the events route (signed
//! and encrypted like WeChat's) is what the token is then fetched with; everything else
//! that reaches the route is refused.

use std::sync::Arc;

use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::signature::{msg_signature, push_signature};
use wxdesk_tests::open_platform::*;
use wxdesk_tests::*;

async fn platform_server(name: &str) -> (wechat::WechatStandIn, Arc<wxdesk::Services>, String) {
    let wx = wechat::start().await;
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\n{}",
        wx.base(),
        component_config()
    );
    let text = config_text(&embedded_store(name), "http://127.0.0.1:9/none", &extra);
    let (svc, base) = serve_config(&text).await;
    (wx, svc, base)
}

async fn post(base: &str, appid: &str, query: &str, body: String) -> (u16, String) {
    post_text(format!("{base}/component/{appid}/events?{query}"), body).await
}

#[tokio::test]
async fn a_pushed_ticket_gets_the_component_token_once() {
    let (wx, svc, base) = platform_server("component-ticket").await;
    // Before any ticket the platform cannot get a token, and says where tickets go.
    let check = wxdesk::app::doctor::component(&svc).await.unwrap();
    let why = check.result.unwrap_err();
    assert!(why.contains("/component/wxcomponent00001/events"), "{why}");
    assert_eq!(wx.state.lock().unwrap().platform.component_token_calls, 0);

    let ticket = wx.state.lock().unwrap().platform.mint_ticket();
    let (q, body) = platform_push(&ticket_event(&ticket, now_secs()), now_secs(), "n1");
    assert_eq!(
        post(&base, COMPONENT_APPID, &q, body).await,
        (200, "success".into())
    );
    let check = wxdesk::app::doctor::component(&svc).await.unwrap();
    assert!(check.result.is_ok(), "{check}");
    // The token is kept: a second caller gets it without asking WeChat again.
    assert!(
        wxdesk::app::doctor::component(&svc)
            .await
            .unwrap()
            .result
            .is_ok()
    );
    assert_eq!(wx.state.lock().unwrap().platform.component_token_calls, 1);
}

#[tokio::test]
async fn a_ticket_wechat_no_longer_takes_is_reported_with_its_fix() {
    let (wx, svc, base) = platform_server("component-61006").await;
    let ticket = wx.state.lock().unwrap().platform.mint_ticket();
    let (q, body) = platform_push(&ticket_event(&ticket, now_secs()), now_secs(), "n2");
    assert_eq!(post(&base, COMPONENT_APPID, &q, body).await.0, 200);
    wx.state.lock().unwrap().platform.expire_tickets();
    let why = wxdesk::app::doctor::component(&svc)
        .await
        .unwrap()
        .result
        .unwrap_err();
    assert!(
        why.contains("61006") && why.contains("authorization event URL"),
        "{why}"
    );
}

/// Who can reach the route with what: another platform's appid, a forged or stale
/// signature, a plaintext event, another key's ciphertext — none stores a ticket.
#[tokio::test]
async fn forged_stale_plain_or_foreign_events_are_refused() {
    let (wx, svc, base) = platform_server("component-refusals").await;
    let now = now_secs();
    let event = ticket_event("ticket@@@forged", now);
    let (q, body) = platform_push(&event, now, "n3");
    assert_eq!(
        post(&base, "wxsomeoneelse001", &q, body.clone()).await.0,
        404
    );
    let forged = q.replace("signature=", "signature=0");
    assert_eq!(
        post(&base, COMPONENT_APPID, &forged, body.clone()).await.0,
        401
    );
    let (stale_q, stale_body) = platform_push(&event, now - 3600, "n4");
    assert_eq!(
        post(&base, COMPONENT_APPID, &stale_q, stale_body).await.0,
        403
    );
    let plain = q.replace("&encrypt_type=aes", "");
    assert_eq!(
        post(&base, COMPONENT_APPID, &plain, event.clone()).await.0,
        403
    );
    // Signed with the platform's token but sealed with another key, or for another
    // receive-id: one answer, whatever failed inside.
    for (key, receive_id) in [(AES_KEY, COMPONENT_APPID), (COMPONENT_AES_KEY, APPID)] {
        let enc = MsgCrypt::new(key).unwrap().encrypt(&event, receive_id);
        let ts = now.to_string();
        let q = format!(
            "signature={}&timestamp={ts}&nonce=n5&encrypt_type=aes&msg_signature={}",
            push_signature(COMPONENT_TOKEN, &ts, "n5"),
            msg_signature(COMPONENT_TOKEN, &ts, "n5", &enc)
        );
        let body = format!("<xml><AppId>{COMPONENT_APPID}</AppId><Encrypt>{enc}</Encrypt></xml>");
        assert_eq!(
            post(&base, COMPONENT_APPID, &q, body).await,
            (400, "cannot decrypt".into())
        );
    }
    assert!(
        wxdesk::app::doctor::component(&svc)
            .await
            .unwrap()
            .result
            .is_err()
    );
    assert_eq!(wx.state.lock().unwrap().platform.component_token_calls, 0);
}

/// A ticket pushed and taken, so that the platform has its component token.
async fn with_ticket(wx: &wechat::WechatStandIn, base: &str) {
    let ticket = wx.state.lock().unwrap().platform.mint_ticket();
    let (q, body) = platform_push(&ticket_event(&ticket, now_secs()), now_secs(), "nt");
    assert_eq!(post(base, COMPONENT_APPID, &q, body).await.0, 200);
}

/// The authorization page's link, as a browser reads it from the page.
async fn authorization_link(base: &str) -> String {
    let r = get(format!("{base}/component/{COMPONENT_APPID}/authorize"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let href = html
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or_else(|| panic!("no link in {html}"));
    href.replace("&amp;", "&")
}

#[tokio::test]
async fn a_shop_authorizes_on_the_page_and_withdraws_by_event() {
    let (wx, svc, base) = platform_server("component-authorize").await;
    with_ticket(&wx, &base).await;
    let link = authorization_link(&base).await;
    assert!(link.starts_with("https://mp.weixin.qq.com/cgi-bin/componentloginpage?"));
    let back = format!("{ENTRY_BASE}/component/{COMPONENT_APPID}/authorized");
    assert!(
        link.contains(&format!("redirect_uri={}", urlencoding(&back))),
        "{link}"
    );
    let shop = "wxshop0000000001";
    let code = wx
        .state
        .lock()
        .unwrap()
        .platform
        .authorize(&link, shop, &[1, 15])
        .expect("WeChat's page takes the link");
    let r = get(format!(
        "{base}/component/{COMPONENT_APPID}/authorized?auth_code={code}&expires_in=3600"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(shop));

    let stored = svc
        .registry
        .authorizer(shop)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.standing, wxdesk::store::Standing::Authorized);
    assert_eq!(stored.permissions, [1, 15]);
    let refresh = wx.state.lock().unwrap().platform.refresh_tokens[shop].clone();
    assert!(
        !stored.sealed_refresh_token.contains(&refresh),
        "sealed at rest"
    );
    let opened = svc
        .registry
        .sealer()
        .await
        .unwrap()
        .open(&stored.sealed_refresh_token, &format!("authorizer#{shop}"))
        .unwrap();
    assert!(opened.matches(&refresh));

    // The shop withdraws: WeChat's event closes the account.
    let withdrawn = format!(
        "<xml><AppId>{COMPONENT_APPID}</AppId><CreateTime>{}</CreateTime><InfoType>unauthorized</InfoType>\
         <AuthorizerAppid>{shop}</AuthorizerAppid></xml>",
        now_secs() + 1
    );
    let (q, body) = platform_push(&withdrawn, now_secs() + 1, "nu");
    assert_eq!(
        post(&base, COMPONENT_APPID, &q, body).await,
        (200, "success".into())
    );
    let after = svc.registry.authorizer(shop).await.unwrap().unwrap();
    assert_eq!(after.standing, wxdesk::store::Standing::Withdrawn);
}

#[tokio::test]
async fn the_authorized_event_alone_stores_the_shop() {
    let (wx, svc, base) = platform_server("component-event-auth").await;
    with_ticket(&wx, &base).await;
    let link = authorization_link(&base).await;
    let shop = "wxshop0000000002";
    let code = wx
        .state
        .lock()
        .unwrap()
        .platform
        .authorize(&link, shop, &[2])
        .unwrap();
    let event = format!(
        "<xml><AppId>{COMPONENT_APPID}</AppId><CreateTime>{}</CreateTime><InfoType>authorized</InfoType>\
         <AuthorizerAppid>{shop}</AuthorizerAppid><AuthorizationCode>{code}</AuthorizationCode>\
         <AuthorizationCodeExpiredTime>{}</AuthorizationCodeExpiredTime><PreAuthCode>p</PreAuthCode></xml>",
        now_secs(),
        now_secs() + 3600
    );
    let (q, body) = platform_push(&event, now_secs(), "na");
    assert_eq!(
        post(&base, COMPONENT_APPID, &q, body).await,
        (200, "success".into())
    );
    let stored = svc
        .registry
        .authorizer(shop)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.permissions, [2]);
}

/// Anyone can open the pages: a made-up code stores nothing, a platform without an entry
/// domain has no pages, and an expired component token is renewed once on the way.
#[tokio::test]
async fn made_up_codes_store_nothing_and_expired_tokens_are_renewed() {
    let (wx, svc, base) = platform_server("component-authorize-refusals").await;
    with_ticket(&wx, &base).await;
    let r = get(format!(
        "{base}/component/{COMPONENT_APPID}/authorized?auth_code=queryauthcode@@@made-up"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 502);
    let r = get(format!("{base}/component/{COMPONENT_APPID}/authorized"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(wx.state.lock().unwrap().platform.query_auth_calls, 1);
    let r = get(format!("{base}/component/wxsomeoneelse001/authorize"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let calls = wx.state.lock().unwrap().platform.component_token_calls;
    wx.state.lock().unwrap().platform.expire_component_tokens();
    let link = authorization_link(&base).await;
    assert!(link.contains("pre_auth_code=preauthcode"), "{link}");
    assert_eq!(
        wx.state.lock().unwrap().platform.component_token_calls,
        calls + 1
    );
    let _ = svc;

    // Without an entry domain WeChat would refuse the page: there is none.
    let text = config_text(
        &embedded_store("component-no-entry"),
        "http://127.0.0.1:9/none",
        &format!(
            "[wechat]\napi_base = \"{}\"\n{}",
            wx.base(),
            component_config().replace(&format!("public_base_url = \"{ENTRY_BASE}\"\n"), "")
        ),
    );
    let bare = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let bare_base = start_local(bare).await;
    for page in ["authorize", "authorized?auth_code=x"] {
        let r = get(format!("{bare_base}/component/{COMPONENT_APPID}/{page}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{page}");
    }
}

fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The shop `shop` withdraws: WeChat takes none of its tokens any more, and pushes
/// `unauthorized` to the platform (a second after now, so that it is the latest change).
async fn withdraw(wx: &wechat::WechatStandIn, base: &str, shop: &str) {
    wx.state.lock().unwrap().platform.withdraw(shop);
    let at = now_secs() + 1;
    let event = format!(
        "<xml><AppId>{COMPONENT_APPID}</AppId><CreateTime>{at}</CreateTime><InfoType>unauthorized</InfoType>\
         <AuthorizerAppid>{shop}</AuthorizerAppid></xml>"
    );
    let (q, body) = platform_push(&event, at, &format!("nw{shop}"));
    assert_eq!(
        post(base, COMPONENT_APPID, &q, body).await,
        (200, "success".into())
    );
}

/// The shop `shop` authorizes through the page and WeChat's redirect.
async fn authorize_shop(wx: &wechat::WechatStandIn, base: &str, shop: &str) {
    let link = authorization_link(base).await;
    let code = wx
        .state
        .lock()
        .unwrap()
        .platform
        .authorize(&link, shop, &[1])
        .unwrap();
    let r = get(format!(
        "{base}/component/{COMPONENT_APPID}/authorized?auth_code={code}"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
}

/// An authorized shop's token comes from api_authorizer_token with the refresh token the
/// registry holds sealed; once WeChat refuses that refresh token, the account is marked,
/// doctor says what to do, and WeChat is not asked again.
#[tokio::test]
async fn an_authorized_shop_gets_tokens_until_its_refresh_token_is_refused() {
    let (wx, svc, base) = platform_server("component-authorizer-token").await;
    with_ticket(&wx, &base).await;
    let shop = "wxshop0000000003";
    authorize_shop(&wx, &base, shop).await;
    // Tokens that expire at once: every check fetches one.
    wx.state.lock().unwrap().platform.authorizer_expires_in = 1;
    let calls = || wx.state.lock().unwrap().platform.authorizer_token_calls;
    for round in 1..=2 {
        let check = wxdesk::app::doctor::authorizer(&svc, shop).await.unwrap();
        assert!(check.result.is_ok(), "{check}");
        assert_eq!(calls(), round);
    }
    assert_eq!(
        wxdesk::app::doctor::run(&svc, Some(shop)).await.len(),
        1,
        "doctor --app takes an authorized shop"
    );
    let calls_before = calls();

    wx.state.lock().unwrap().platform.revoke_refresh_token(shop);
    let why = wxdesk::app::doctor::authorizer(&svc, shop)
        .await
        .unwrap()
        .result
        .unwrap_err();
    assert!(
        why.contains("61023") && why.contains("authorize the platform again"),
        "{why}"
    );
    let rec = svc.registry.authorizer(shop).await.unwrap().unwrap();
    assert_eq!(rec.standing, wxdesk::store::Standing::RefreshRejected);
    assert_eq!(calls(), calls_before + 1);
    let why = wxdesk::app::doctor::authorizer(&svc, shop)
        .await
        .unwrap()
        .result
        .unwrap_err();
    assert!(why.contains("refresh_rejected"), "{why}");
    assert_eq!(calls(), calls_before + 1, "not asked again");

    // A new authorization brings the account back, with a new refresh token.
    authorize_shop(&wx, &base, shop).await;
    let check = wxdesk::app::doctor::authorizer(&svc, shop).await.unwrap();
    assert!(check.result.is_ok(), "{check}");
}

/// A platform whose authorized shops all go to one Udesk channel (`[component.desk]`).
async fn platform_with_desk(
    name: &str,
) -> (
    wechat::WechatStandIn,
    StandIn,
    Arc<wxdesk::Services>,
    String,
) {
    platform_with(name, "").await
}

/// As `platform_with_desk`, with more `[component]` keys.
async fn platform_with(
    name: &str,
    component_keys: &str,
) -> (
    wechat::WechatStandIn,
    StandIn,
    Arc<wxdesk::Services>,
    String,
) {
    let wx = wechat::start().await;
    let desk = udesk_wechat().await;
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\n{}{component_keys}[component.desk]\nkind = \"udesk_wechat\"\nurl = \"{}\"\n",
        wx.base(),
        component_config(),
        desk.url("/weixin/shops")
    );
    let text = config_text(&embedded_store(name), "http://127.0.0.1:9/none", &extra);
    let (svc, base) = serve_config(&text).await;
    (wx, desk, svc, base)
}

/// A customer's text to the shop, as WeChat pushes it to the platform's message URL.
async fn shop_push(
    base: &str,
    path_platform: &str,
    shop: &str,
    content: &str,
    id: u64,
) -> (u16, String) {
    let plain = format!(
        "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[oShopCustomer1]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{id}</MsgId></xml>",
        now_secs()
    );
    push_plain(base, path_platform, shop, &plain, id).await
}

/// `plain` pushed for `shop` at the platform's message URL.
async fn push_plain(
    base: &str,
    path_platform: &str,
    shop: &str,
    plain: &str,
    id: u64,
) -> (u16, String) {
    let now = now_secs();
    let (q, body) = authorizer_push("gh_shop", plain, now, &format!("np{id}"));
    post_text(
        format!("{base}/wechat/component/{path_platform}/{shop}?{q}"),
        body,
    )
    .await
}

/// The evidence the issue asks for, in one run: ticket → component token → a shop
/// authorizes → its customer's push (encrypted for the platform) reaches the platform's
/// desk and the passive reply goes back encrypted for the platform → the agent's message
/// through the shop's own gateway key goes out with the shop's authorizer token →
/// `unauthorized` closes every route of the account.
#[tokio::test]
async fn an_authorized_shop_is_served_until_it_withdraws() {
    let (wx, desk, svc, base) = platform_with_desk("component-serve").await;
    with_ticket(&wx, &base).await;
    let shop = "wxshop0000000010";
    // Before the shop authorizes, its URL is unknown like any other.
    assert_eq!(
        shop_push(&base, COMPONENT_APPID, shop, "hi", 1).await.0,
        404
    );
    authorize_shop(&wx, &base, shop).await;

    let (status, reply) = shop_push(&base, COMPONENT_APPID, shop, "hello", 2).await;
    assert_eq!(status, 200, "{reply}");
    let got = desk.requests.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].1.contains("hello") && got[0].1.contains("oShopCustomer1"));
    // The passive reply is encrypted with the platform's key, for the platform's appid.
    let opened = opened_reply(&reply);
    assert!(opened.contains("echo: hello"), "{opened}");

    // The same push at the account's direct URL, or under another platform: unknown.
    assert_eq!(
        shop_push(&base, "wxsomeoneelse001", shop, "x", 3).await.0,
        404
    );
    let now = now_secs();
    let r = http()
        .post(format!(
            "{base}/wechat/{shop}?{}",
            platform_push("<xml/>", now, "nd").0
        ))
        .body("<xml/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The agent answers through the shop's own gateway key (made at its authorization).
    // `wxdesk-local urls` lists its URLs like any account's.
    let account = svc.account(shop).await.expect("served");
    let listed: Vec<String> = wxdesk::app::urls::account_urls(&account.app, "https://api")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        listed[0],
        format!("{shop} WeChat push URL: https://api/wechat/component/{COMPONENT_APPID}/{shop}")
    );
    let key = listed[1]
        .rsplit('/')
        .next()
        .expect("the Udesk domain has the shop's key")
        .to_owned();
    assert!(key.len() >= 32 && key != GATEWAY_KEY, "{listed:?}");
    let send = |key: String| {
        let url = format!("{base}/udesk/{shop}/{key}");
        async move {
            http()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("touser=oShopCustomer1&msgtype=text&text[content]=agent%20here")
                .send()
                .await
                .unwrap()
        }
    };
    let r = send(key.clone()).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    {
        let s = wx.state.lock().unwrap();
        let used = s.sent_with.last().expect("sent");
        assert_eq!(
            s.platform.authorizer_of(used),
            Some(shop),
            "the shop's token"
        );
        assert_eq!(s.sent.last().unwrap()["text"]["content"], "agent here");
    }
    // Another account's key opens nothing of the shop's.
    assert_eq!(send(GATEWAY_KEY.to_owned()).await.status(), 401);

    // The shop withdraws: WeChat takes none of its tokens, and the event closes it.
    withdraw(&wx, &base, shop).await;
    assert_eq!(
        shop_push(&base, COMPONENT_APPID, shop, "again", 4).await.0,
        404
    );
    assert_eq!(send(key.clone()).await.status(), 404);
    assert_eq!(
        desk.requests.lock().unwrap().len(),
        1,
        "nothing more reached the desk"
    );
    let checks = wxdesk::app::doctor::run(&svc, Some(shop)).await;
    let shown: Vec<String> = checks.iter().map(ToString::to_string).collect();
    assert!(
        checks
            .iter()
            .any(|c| c.name == "standing"
                && c.result.as_ref().is_err_and(|e| e.contains("withdrawn"))),
        "{shown:?}"
    );
}

/// The encrypted passive reply in `answer`, opened with the platform's key.
fn opened_reply(answer: &str) -> String {
    let enc = answer
        .split("<Encrypt><![CDATA[")
        .nth(1)
        .and_then(|r| r.split("]]>").next())
        .unwrap_or_else(|| panic!("not encrypted: {answer}"));
    MsgCrypt::new(COMPONENT_AES_KEY)
        .unwrap()
        .decrypt(enc, COMPONENT_APPID)
        .unwrap()
}

/// WeChat's release test (全网发布接入检测) with `release_test = true`: its test Official
/// Account's text probe gets the passive `_callback` reply, its `QUERY_AUTH_CODE:` text an
/// empty answer and `<code>_from_api` by custom send with the code's authorizer token, its
/// event `<event>from_callback`; none reaches the desk. Switched off (the default), the
/// test account is an unknown account like any other.
#[tokio::test]
async fn the_release_test_passes_with_its_switch_and_only_then() {
    const TEST_OA: &str = "wx570bc396a51b8ff8";
    let (wx, desk, _svc, base) = platform_with("component-release", "release_test = true\n").await;
    with_ticket(&wx, &base).await;
    let code = wx.state.lock().unwrap().platform.release_test_code(TEST_OA);
    let text = |content: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_3c884a361561]]></ToUserName><FromUserName><![CDATA[oTestFan001]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
             <MsgId>{}</MsgId></xml>",
            now_secs(),
            content.len()
        )
    };
    let (status, answer) = push_plain(
        &base,
        COMPONENT_APPID,
        TEST_OA,
        &text("TESTCOMPONENT_MSG_TYPE_TEXT"),
        1,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let reply = opened_reply(&answer);
    assert!(
        reply.contains("<Content><![CDATA[TESTCOMPONENT_MSG_TYPE_TEXT_callback]]></Content>"),
        "{reply}"
    );
    assert!(
        reply.contains("<ToUserName><![CDATA[oTestFan001]]>"),
        "{reply}"
    );

    let (status, answer) = push_plain(
        &base,
        COMPONENT_APPID,
        TEST_OA,
        &text(&format!("QUERY_AUTH_CODE:{code}")),
        2,
    )
    .await;
    assert_eq!((status, answer.as_str()), (200, "success"));
    {
        let s = wx.state.lock().unwrap();
        let sent = s.sent.last().expect("the code's answer was sent");
        assert_eq!(sent["touser"], "oTestFan001");
        assert_eq!(sent["text"]["content"], format!("{code}_from_api"));
        let token = s.sent_with.last().unwrap();
        assert_eq!(
            s.platform.authorizer_of(token),
            Some(TEST_OA),
            "the code's token"
        );
    }

    let event = format!(
        "<xml><ToUserName><![CDATA[gh_3c884a361561]]></ToUserName><FromUserName><![CDATA[oTestFan001]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event>\
         <Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>119.3</Precision></xml>",
        now_secs()
    );
    let (status, answer) = push_plain(&base, COMPONENT_APPID, TEST_OA, &event, 3).await;
    assert_eq!(status, 200, "{answer}");
    assert!(opened_reply(&answer).contains("<Content><![CDATA[LOCATIONfrom_callback]]></Content>"));
    assert!(
        desk.requests.lock().unwrap().is_empty(),
        "no test message reaches the desk"
    );

    // Off (the default): WeChat's test account is not served.
    let (_wx, _desk, _svc, off) = platform_with_desk("component-release-off").await;
    let (status, _) = push_plain(
        &off,
        COMPONENT_APPID,
        TEST_OA,
        &text("TESTCOMPONENT_MSG_TYPE_TEXT"),
        4,
    )
    .await;
    assert_eq!(status, 404);
}

const PLATFORM_KEY: &str = "platform-gateway-key-0123456789";

/// A platform whose shops share one Tencent IM app (`[component.desk]`), whose one
/// callback URL is the platform's (`[component] gateway_key`); WeChat retries after 1 s.
async fn shared_im_platform(
    name: &str,
) -> (
    wechat::WechatStandIn,
    wxdesk_tests::tim::TimStandIn,
    Arc<wxdesk::Services>,
    String,
) {
    let (wx, im, svc, base, _) = shared_im_platform_flaky(name).await;
    (wx, im, svc, base)
}

/// As `shared_im_platform`, with a registry whose account reads a test can make fail,
/// and stored accounts read again after a second.
async fn shared_im_platform_flaky(
    name: &str,
) -> (
    wechat::WechatStandIn,
    wxdesk_tests::tim::TimStandIn,
    Arc<wxdesk::Services>,
    String,
    Arc<FlakyRegistry>,
) {
    use wxdesk_tests::tim::{self, ADMIN, CALLBACK_TOKEN, SDKAPPID, SECRET_KEY};
    let wx = wechat::start().await;
    let im = tim::start().await;
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\n[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n{}\
         gateway_key = \"{PLATFORM_KEY}\"\n\
         [component.desk]\nkind = \"tencent_im\"\nsdkappid = {SDKAPPID}\nsecret_key = \"{SECRET_KEY}\"\n\
         admin = \"{ADMIN}\"\nagents = [\"agent1\"]\napi_base = \"{}\"\ncallback_token = \"{CALLBACK_TOKEN}\"\n\
         [registry]\ncache_secs = 1\n",
        wx.base(),
        component_config(),
        im.server.url("")
    );
    let text = config_text(&embedded_store(name), "http://127.0.0.1:9/none", &extra);
    let config = wxdesk::Config::parse(&text).unwrap();
    let mut stores = wxdesk::store::Stores::open(&config.store).await.unwrap();
    let flaky = FlakyRegistry::over(stores.registry.clone());
    stores.registry = flaky.clone();
    let svc = Arc::new(wxdesk::Services::with_parts(
        config,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ));
    let base = start_local(svc.clone()).await;
    (wx, im, svc, base, flaky)
}

/// The notices the agents got from wxdesk (undelivered), as (agent, text).
fn im_notices(im: &wxdesk_tests::tim::TimStandIn) -> Vec<(String, String)> {
    im.state
        .lock()
        .unwrap()
        .sends
        .iter()
        .filter(|s| s["CloudCustomData"] == r#"{"wxdesk":"undelivered"}"#)
        .map(|s| {
            (
                s["To_Account"].as_str().unwrap_or("").to_owned(),
                s["MsgBody"][0]["MsgContent"]["Text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// One Tencent IM app serves every shop and its console takes one callback URL: the
/// platform's. Each agent message goes out for the shop its customer wrote to, with that
/// shop's token; one for a customer no shop knows is not sent, and the agent is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_im_app_answers_every_shop_through_the_platforms_callback() {
    use wxdesk_tests::tim::{self, CALLBACK_TOKEN, SDKAPPID};
    let (wx, im, _svc, base, flaky) = shared_im_platform_flaky("component-shared-im").await;
    with_ticket(&wx, &base).await;
    let (a, b) = ("wxshop0000000031", "wxshop0000000032");
    authorize_shop(&wx, &base, a).await;
    authorize_shop(&wx, &base, b).await;
    let plain = |customer: &str, id: u64| {
        format!(
            "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{customer}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>\
             <MsgId>{id}</MsgId></xml>",
            now_secs()
        )
    };
    assert_eq!(
        push_plain(&base, COMPONENT_APPID, a, &plain("oCustomerOfA", 1), 1)
            .await
            .0,
        200
    );
    assert_eq!(
        push_plain(&base, COMPONENT_APPID, b, &plain("oCustomerOfB", 2), 2)
            .await
            .0,
        200
    );
    wx.customer(a, "oCustomerOfA", wechat::Action::Message);
    wx.customer(b, "oCustomerOfB", wechat::Action::Message);

    let callback = |to: &'static str, key: &'static str| {
        let url = format!(
            "{base}/tim/{COMPONENT_APPID}/{PLATFORM_KEY}?{}",
            tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs())
        );
        async move {
            let body = tim::after_send(
                "agent1",
                to,
                key,
                serde_json::json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("for {to}")}}]),
            );
            http()
                .post(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A customer imported long ago, whose account record has expired since.
    im.state
        .lock()
        .unwrap()
        .imported
        .insert("oNobodysCustomer".into());
    assert_eq!(callback("oCustomerOfB", "8001_1_1572870301").await, 200);
    assert_eq!(callback("oNobodysCustomer", "8002_1_1572870301").await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while (wx.sent().is_empty() || im_notices(&im).is_empty())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    {
        let s = wx.state.lock().unwrap();
        assert_eq!(s.sent.len(), 1, "{:?}", s.sent);
        assert_eq!(s.sent[0]["touser"], "oCustomerOfB");
        assert_eq!(
            s.platform.authorizer_of(&s.sent_with[0]),
            Some(b),
            "B's own token"
        );
    }
    let told = im_notices(&im);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.contains("which shop"), "{told:?}");

    // While the registry cannot be read, B's account is not known: the message is sent
    // for no other account, and the agent is told to send it again.
    flaky.set_down(true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(callback("oCustomerOfB", "8003_1_1572870301").await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while im_notices(&im).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let told = im_notices(&im);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].1.contains("could not read its accounts"),
        "{told:?}"
    );
    assert_eq!(wx.state.lock().unwrap().sent.len(), 1, "nothing more sent");
    flaky.set_down(false);
    // The platform's route takes only its own key.
    let wrong = http()
        .post(format!(
            "{base}/tim/{COMPONENT_APPID}/not-the-platform-key-0000?{}",
            tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs())
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

/// When a shop withdraws, an agent message still queued for its customer is not delivered
/// later and not dropped: the agent is told, in their conversation, that it did not go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_shops_queued_agent_message_is_told_back() {
    use wxdesk_tests::tim::{self, CALLBACK_TOKEN, SDKAPPID};
    const CUSTOMER: &str = "oShopCustomer1";
    let (wx, im, svc, base) = shared_im_platform("component-withdraw-queue").await;
    with_ticket(&wx, &base).await;
    let shop = "wxshop0000000020";
    authorize_shop(&wx, &base, shop).await;
    // The customer writes: imported into IM, and WeChat lets the shop answer them.
    assert_eq!(
        shop_push(&base, COMPONENT_APPID, shop, "hello", 1).await.0,
        200
    );
    wx.customer(shop, CUSTOMER, wechat::Action::Message);

    // WeChat is failing for a moment, so the agent's answer waits in the outbox.
    wx.inject("/cgi-bin/message/custom/send", &[-1, -1, -1]);
    let account = svc.account(shop).await.unwrap();
    let tim_url = wxdesk::app::urls::account_urls(&account.app, &base)
        .iter()
        .map(ToString::to_string)
        .find(|u| u.contains("/tim/"))
        .and_then(|u| u.split(": ").nth(1).map(str::to_owned))
        .expect("the shop's Tencent IM callback URL");
    let q = tim::callback_query(SDKAPPID, CALLBACK_TOKEN, now_secs());
    let body = tim::after_send(
        "agent1",
        CUSTOMER,
        "7001_1_1572870301",
        serde_json::json!([{"MsgType": "TIMTextElem", "MsgContent": {"Text": "your order shipped"}}]),
    );
    let r = http()
        .post(format!("{tim_url}?{q}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The shop withdraws before WeChat recovers.
    withdraw(&wx, &base, shop).await;

    let told = || {
        im.state
            .lock()
            .unwrap()
            .sends
            .iter()
            .filter(|s| s["CloudCustomData"] == r#"{"wxdesk":"undelivered"}"#)
            .map(|s| {
                (
                    s["To_Account"].to_string(),
                    s["MsgBody"][0]["MsgContent"]["Text"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    while told().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let told = told();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].0.contains("agent1"), "{told:?}");
    assert!(told[0].1.contains("withdrew its authorization"), "{told:?}");
    assert!(
        !wx.sent()
            .iter()
            .any(|s| s["text"]["content"] == "your order shipped"),
        "never delivered after the withdrawal"
    );
}

/// Anyone can post to the platform's message URL with any appid: without the platform's
/// signature nothing is read from the registry and nothing is cached (a flood of made-up
/// appids costs no store reads); a signed push for an unknown appid is read once and then
/// answered from the cache.
#[tokio::test]
async fn unsigned_pushes_for_made_up_shops_read_nothing() {
    let (_wx, _desk, svc, base) = platform_with_desk("component-unsigned").await;
    for i in 0..20 {
        let r = http()
            .post(format!(
                "{base}/wechat/component/{COMPONENT_APPID}/wxmadeup{i:08}?signature=0&timestamp={}&nonce=n&encrypt_type=aes&msg_signature=0",
                now_secs()
            ))
            .body("<xml><Encrypt>x</Encrypt></xml>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert_eq!(
        svc.cached_accounts(),
        0,
        "no registry read for an unsigned push"
    );
    assert_eq!(
        shop_push(&base, COMPONENT_APPID, "wxmadeup99999999", "hi", 1)
            .await
            .0,
        404
    );
    assert_eq!(
        svc.cached_accounts(),
        1,
        "a signed push for an unknown shop: read once"
    );
}

/// A Mini Program shop is served as one: WeChat's `api_get_authorizer_info` says so at its
/// authorization (with its name), and the desk's reply, which a Mini Program would drop as
/// a passive reply, goes to the customer by custom send with the shop's token.
#[tokio::test]
async fn a_mini_program_shop_is_served_as_one() {
    let (wx, desk, svc, base) = platform_with_desk("component-mini-program").await;
    with_ticket(&wx, &base).await;
    let shop = "wxshopmp00000041";
    wx.mini_program(shop);
    authorize_shop(&wx, &base, shop).await;
    let account = svc.account(shop).await.expect("served");
    assert_eq!(account.app.kind, wxdesk::config::AppKind::MiniProgram);
    assert_eq!(account.app.name.as_deref(), Some("Shop wxshopmp00000041"));

    wx.customer(shop, "oShopCustomer1", wechat::Action::Message);
    let (status, answer) = shop_push(&base, COMPONENT_APPID, shop, "hello mp", 1).await;
    assert_eq!((status, answer.as_str()), (200, "success"));
    assert_eq!(desk.requests.lock().unwrap().len(), 1);
    let s = wx.state.lock().unwrap();
    let sent = s.sent.last().expect("the desk's reply by custom send");
    assert_eq!(sent["touser"], "oShopCustomer1");
    assert_eq!(sent["text"]["content"], "echo: hello mp");
    assert_eq!(
        s.platform.authorizer_of(s.sent_with.last().unwrap()),
        Some(shop)
    );
}
