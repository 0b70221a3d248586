//! WeChat's release test (全网发布接入检测, "全网发布接入检测说明",
//! developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/operation/thirdparty/releases_instructions.html):
//! before a platform is released, WeChat authorizes its own test accounts to it and pushes
//! them through the platform's message URL. A text `TESTCOMPONENT_MSG_TYPE_TEXT` must get
//! the passive reply `TESTCOMPONENT_MSG_TYPE_TEXT_callback`; a text
//! `QUERY_AUTH_CODE:<code>` an empty answer within 5 s, the code exchanged with
//! `api_query_auth` and `<code>_from_api` sent to the sender by custom send with the
//! authorization's token; an event the passive reply `<event>from_callback`.
//!
//! Served only with `[component] release_test = true`, and only for WeChat's test accounts:
//! their other messages are answered `success` and reach no desk.

use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{info, warn};

use crate::config::{AppConfig, ComponentConfig};
use crate::context::Context;
use crate::http::{Request, Response};
use crate::source::wechat_push::Refusal;
use crate::wechat::message::{Kind, Message};
use crate::wechat::reply::passive_text;

/// WeChat's test Official Account and test Mini Program (the page above), in that order.
pub(crate) const TEST_ACCOUNTS: [&str; 2] = ["wx570bc396a51b8ff8", "wxd101a85aa106f53e"];

const TEXT_PROBE: &str = "TESTCOMPONENT_MSG_TYPE_TEXT";
const CODE_PREFIX: &str = "QUERY_AUTH_CODE:";

/// Whether `app`'s pushes are the release test's: a test account, served through a
/// platform whose `release_test` is on.
pub(crate) fn applies(app: &AppConfig) -> Option<&ComponentConfig> {
    app.platform
        .as_deref()
        .filter(|c| c.release_test && TEST_ACCOUNTS.contains(&app.appid.as_str()))
}

/// Serves a test account's push: opened as any push is, answered by `answer`, never
/// de-duplicated or forwarded.
pub(crate) async fn serve(
    ctx: &Context,
    c: &ComponentConfig,
    app: &AppConfig,
    req: &Request,
) -> Result<Response, Refusal> {
    let deadline = Instant::now() + WITHIN;
    crate::source::wechat_push::answer_with(ctx, app, req, |msg| async move {
        answer(ctx, c, app, &msg, deadline).await
    })
    .await
}

/// The answer to a test account's push (a passive reply, or empty for `success`), having
/// sent what the test expects by custom send before `deadline`.
async fn answer(
    ctx: &Context,
    c: &ComponentConfig,
    app: &AppConfig,
    msg: &Message,
    deadline: Instant,
) -> String {
    let now = ctx.clock.unix_secs();
    match &msg.kind {
        Kind::Event(e) => passive_text(msg, &format!("{}from_callback", e.name()), now),
        Kind::Text { content, .. } if content == TEXT_PROBE => {
            passive_text(msg, &format!("{TEXT_PROBE}_callback"), now)
        }
        Kind::Text { content, .. } => match content.strip_prefix(CODE_PREFIX) {
            Some(code) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let sent = tokio::time::timeout(left, from_api(ctx, c, app, msg, code)).await;
                match sent {
                    Ok(Ok(())) => {
                        info!(appid = %app.appid, "release test: the code's answer sent by custom send")
                    }
                    Ok(Err(why)) => {
                        warn!(appid = %app.appid, why, "release test: the code's answer was not sent")
                    }
                    Err(_) => {
                        warn!(appid = %app.appid, "release test: the code's answer was not sent in time")
                    }
                }
                String::new()
            }
            None => String::new(),
        },
        _ => String::new(),
    }
}

/// Exchanges the code (which stores the test account's authorization, as any shop's), then
/// sends `<code>_from_api` with the account's token.
async fn from_api(
    ctx: &Context,
    c: &ComponentConfig,
    app: &AppConfig,
    msg: &Message,
    code: &str,
) -> Result<(), String> {
    crate::source::component::authorize::take(ctx, c, code).await?;
    let text = json!({
        "touser": msg.from_user,
        "msgtype": "text",
        "text": { "content": format!("{code}_from_api") },
    });
    ctx.wechat
        .custom_send(app, &text)
        .await
        .map(|_| ())
        .map_err(|e| format!("custom send: {e}"))
}

/// How long the code's exchange and send may take at most (WeChat waits 5 s).
const WITHIN: Duration = Duration::from_millis(4000);
