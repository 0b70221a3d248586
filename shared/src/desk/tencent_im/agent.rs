//! An agent's message from the after-send callback, as what the customer gets: IM
//! elements become WeChat custom messages (media fetched under the guarded fetch and
//! uploaded to WeChat where it takes them, else a link), and TUIKit's custom messages
//! what they mean (a menu, a card, the end of the session), never raw JSON.

use serde_json::Value;
use tracing::warn;

use super::choice::Offered;
use super::tuikit::{self, Custom};
use crate::config::AppConfig;
use crate::context::Context;
use crate::store::StagedMedia;
use crate::wechat::AppKind;
use crate::wechat::dialogue::EVENTS;
use crate::wechat::kf::KfMessage;
use crate::wechat::media::{limit_for, sniff};
use serde_json::json;

/// How long a menu stays answerable: WeChat's 48-hour window for answering a customer.
pub(crate) const MENU_OPEN_SECS: i64 = 48 * 3600;
/// Elements of one agent message turned into customer messages; the rest are summarised.
pub(crate) const MAX_ELEMENTS: usize = 10;

/// What an agent's IM message says to the customer: its parts as WeChat custom messages,
/// and the waiter event it signals, if any.
pub(crate) struct AgentMessage {
    pub parts: Vec<KfMessage>,
    pub event: Option<&'static str>,
    /// The menu the parts offer, kept until the customer picks from it.
    pub offered: Option<Offered>,
    /// The desk ended the session (TUIKit's end or timeout).
    pub ends: bool,
    /// Elements that are meant to show the customer nothing (hidden plugin messages):
    /// no parts is then no failure.
    pub quiet: bool,
}

/// An after-send callback's `MsgBody` for the customer. A TIMCustomElem whose Data names a
/// waiter event (`waiterQuit`, ...) signals that event, with Desc as the text; an element
/// WeChat cannot show becomes a note; past `MAX_ELEMENTS` a note counts the rest.
pub(crate) async fn customer_parts(
    ctx: &Context,
    app: &AppConfig,
    openid: &str,
    switched: bool,
    body: &Value,
) -> AgentMessage {
    let elems = body
        .get("MsgBody")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut m = AgentMessage {
        parts: Vec::new(),
        event: switched.then_some("waiterSwitch"),
        offered: None,
        ends: false,
        quiet: false,
    };
    if elems.len() > MAX_ELEMENTS {
        warn!(appid = %app.appid, elements = elems.len(), "agent message with too many elements; the rest are summarised");
    }
    for elem in elems.iter().take(MAX_ELEMENTS) {
        let data = elem
            .pointer("/MsgContent/Data")
            .and_then(Value::as_str)
            .unwrap_or("");
        let custom = elem.get("MsgType").and_then(Value::as_str) == Some("TIMCustomElem");
        if custom && let Some(e) = EVENTS.iter().find(|e| **e == data) {
            m.event = Some(e);
            // The signal itself is not for the customer's eyes; its Desc is.
            let desc = elem
                .pointer("/MsgContent/Desc")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !desc.is_empty() {
                m.parts.push(KfMessage::text(openid, desc));
            }
            continue;
        }
        if custom && let Some(c) = tuikit::parse(data) {
            tuikit_part(app, openid, c, &mut m);
            continue;
        }
        if let Some(kf) = to_custom(ctx, app, openid, elem).await {
            m.parts.push(kf);
        }
    }
    if elems.len() > MAX_ELEMENTS {
        m.parts.push(KfMessage::text(
            openid,
            &format!(
                "[{} more parts of this message cannot be shown here]",
                elems.len() - MAX_ELEMENTS
            ),
        ));
    }
    let agent = body
        .get("From_Account")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(kf) = app.desk.tencent_im().and_then(|c| c.kf_accounts.get(agent)) {
        for part in &mut m.parts {
            part.kf_account = Some(kf.clone());
        }
    }
    m
}

/// One of TUIKit's custom messages, as what it means to the customer.
fn tuikit_part(app: &AppConfig, openid: &str, c: Custom, m: &mut AgentMessage) {
    // Mini Programs cannot receive msgmenu; the Dialogue Platform turns it into links.
    let numbered = app.kind == AppKind::MiniProgram && app.chatbot.is_none();
    match c {
        // Typing comes online-only and is served by the callback; here it shows nothing.
        Custom::Typing(_) | Custom::Hidden => m.quiet = true,
        Custom::Branch(menu) | Custom::Rating(menu) if menu.options.is_empty() => {
            m.parts.push(KfMessage::text(openid, &menu.head));
        }
        Custom::Branch(menu) => offer(m, openid, Offered::new(menu, false), numbered),
        Custom::Rating(menu) => offer(m, openid, Offered::new(menu, true), numbered),
        Custom::Card {
            title,
            description,
            picture,
            url,
        } => m
            .parts
            .push(card(app, openid, &title, &description, &picture, &url)),
        Custom::End => {
            m.ends = true;
            m.quiet = true;
            m.event = Some("waiterQuit");
        }
    }
}

fn offer(m: &mut AgentMessage, openid: &str, offered: Offered, numbered: bool) {
    m.parts.push(offered.to_kf(openid, numbered));
    m.offered = Some(offered);
}

/// A product card: an article on Official Accounts, a link card on Mini Programs, a
/// line of text where the card has no http(s) link (or, on a Mini Program, no picture).
fn card(
    app: &AppConfig,
    openid: &str,
    title: &str,
    description: &str,
    picture: &str,
    url: &str,
) -> KfMessage {
    let web = |u: &str| u.starts_with("https://") || u.starts_with("http://");
    let title = if title.is_empty() { url } else { title };
    let kf = |msgtype: &str, content: Value| KfMessage {
        touser: openid.to_owned(),
        msgtype: msgtype.into(),
        content,
        kf_account: None,
        link: Some(url.to_owned()),
    };
    match (web(url), app.kind) {
        (true, AppKind::MiniProgram) if web(picture) => kf(
            "link",
            json!({ "title": title, "description": description, "url": url, "thumb_url": picture }),
        ),
        (true, AppKind::OfficialAccount) => kf(
            "news",
            json!({ "articles": [{ "title": title, "description": description, "url": url, "picurl": picture }] }),
        ),
        _ => KfMessage::text(
            openid,
            &format!("[{title}] {description} {url}").replace("  ", " "),
        ),
    }
}

/// One IM element as a WeChat custom message.
async fn to_custom(
    ctx: &Context,
    app: &AppConfig,
    openid: &str,
    elem: &Value,
) -> Option<KfMessage> {
    let c = elem.get("MsgContent").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let text = |t: String| Some(KfMessage::text(openid, &t));
    match elem.get("MsgType").and_then(Value::as_str).unwrap_or("") {
        "TIMTextElem" => text(s(&c, "Text")),
        "TIMImageElem" => {
            let infos = c
                .get("ImageInfoArray")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let url = infos
                .iter()
                .find(|i| i.get("Type").and_then(Value::as_i64) == Some(1))
                .or(infos.first())
                .map(|i| s(i, "URL"))
                .unwrap_or_default();
            Some(media_or_link(ctx, app, openid, "image", &url, "Image").await)
        }
        "TIMSoundElem" => {
            Some(media_or_link(ctx, app, openid, "voice", &s(&c, "Url"), "Voice message").await)
        }
        "TIMVideoFileElem" => {
            Some(media_or_link(ctx, app, openid, "video", &s(&c, "VideoUrl"), "Video").await)
        }
        "TIMFileElem" => text(format!("[File] {} {}", s(&c, "FileName"), s(&c, "Url"))),
        "TIMLocationElem" => text(format!(
            "[Location] {} ({}, {})",
            s(&c, "Desc"),
            c.get("Latitude").map(Value::to_string).unwrap_or_default(),
            c.get("Longitude").map(Value::to_string).unwrap_or_default()
        )),
        // A custom message no one here knows: its Desc, else a note (never the raw Data).
        "TIMCustomElem" => match s(&c, "Desc") {
            desc if desc.trim().is_empty() => {
                text("[The agent sent a message that cannot be shown here]".into())
            }
            desc => text(desc),
        },
        "TIMFaceElem" => text("[Sticker]".into()),
        other => {
            // The customer sees that something was sent, rather than nothing at all.
            let shown: String = other
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect();
            warn!(appid = %app.appid, msg_type = %shown, "IM element type not handled; sending a readable note");
            text(format!(
                "[The agent sent a {shown} message, which cannot be shown here]"
            ))
        }
    }
}

/// The agent's media as a WeChat media message, or a text with its link where WeChat
/// does not take it.
async fn media_or_link(
    ctx: &Context,
    app: &AppConfig,
    openid: &str,
    media_type: &str,
    url: &str,
    label: &str,
) -> KfMessage {
    match upload(ctx, app, media_type, url).await {
        Some(media_id) => KfMessage::media(openid, media_type, &media_id).with_link(url),
        None => KfMessage::text(openid, &format!("[{label}] {url}")),
    }
}

/// Fetches an agent's media (guarded: IM hosts only, WeChat's size limit for the type) and
/// adds it to WeChat as temporary material, where WeChat takes its type and format;
/// `None` means "send a link instead".
async fn upload(ctx: &Context, app: &AppConfig, media_type: &str, url: &str) -> Option<String> {
    let limit = limit_for(media_type, app.kind)?;
    let (content_type, bytes) = match ctx.im_media.get(url, limit.max_bytes).await {
        Ok(r) => r,
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "could not fetch the agent's media; sending a link");
            return None;
        }
    };
    sniff(&bytes)?;
    let file = StagedMedia {
        bytes,
        content_type,
        filename: url
            .rsplit('/')
            .next()
            .unwrap_or("media")
            .split('?')
            .next()
            .unwrap_or("media")
            .to_owned(),
    };
    match ctx.media().upload(app, media_type, file).await {
        Ok(v) => v.get("media_id").and_then(Value::as_str).map(str::to_owned),
        Err(e) => {
            warn!(appid = %app.appid, error = %e, "WeChat did not take the agent's media; sending a link");
            None
        }
    }
}
