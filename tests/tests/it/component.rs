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
    let svc = Arc::new(
        wxdesk::Services::build(wxdesk::Config::parse(&text).unwrap())
            .await
            .unwrap(),
    );
    let base = start_local(svc.clone()).await;
    (wx, svc, base)
}

async fn post(base: &str, appid: &str, query: &str, body: String) -> (u16, String) {
    let r = http()
        .post(format!("{base}/component/{appid}/events?{query}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
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
