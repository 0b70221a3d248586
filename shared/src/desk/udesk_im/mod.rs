//! Udesk's message interface (Udesk, "Method of Accessing WeChat via Messaging Interface", https://www.udeskglobal.com/doc/thirdparty/weixin): each customer message is POSTed as Udesk's XML to
//! `im_callback?number=&email=&timestamp=&sign=`; Udesk answers a status JSON
//! (`{status, turn, agent_name, msg}`) that becomes the customer's passive reply. Media are
//! staged first and handed to Udesk as URLs, so Udesk never needs a WeChat token. Agents
//! answer through `POST /udesk-im/{appid}` (`push`).

pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tracing::{info, warn};

use super::{Desk, DeskError, DeskReply};
use crate::config::{AppConfig, UdeskImConfig};
use crate::context::Context;
use crate::support::clock::Clock;
use crate::support::outbound;
use crate::wechat::api::WechatApi;
use crate::wechat::media::{Fetched, MediaLinks};
use crate::wechat::message::{Event, Kind, Message, shown_session_from};
use crate::wechat::xml::{Doc, Value as XmlValue};

pub(crate) struct UdeskIm {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cfg: UdeskImConfig,
    app: AppConfig,
    api: Arc<WechatApi>,
    links: Arc<MediaLinks>,
}

impl UdeskIm {
    pub(crate) fn new(ctx: &Context, app: &AppConfig, cfg: &UdeskImConfig) -> Self {
        Self {
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
            cfg: cfg.clone(),
            app: app.clone(),
            api: ctx.wechat.clone(),
            links: ctx.links.clone(),
        }
    }

    fn signed_url(&self, path_suffix: &str, now_secs: i64) -> String {
        let ts =
            crate::support::localtime::local_timestamp(now_secs, self.cfg.timezone.offset_secs());
        // What we know of a WeChat customer carries no phone number or email.
        format!(
            "{}{path_suffix}?{}",
            self.cfg.url.trim_end_matches('/'),
            sign::signed_query("", "", &ts, &self.cfg.key)
        )
    }

    /// The documentation's channel test: `GET {url}/test?...` → `{"success": true}`.
    pub(crate) async fn check_channel(&self) -> Result<(), String> {
        let url = self.signed_url("/test", self.clock.unix_secs());
        let answer = outbound::send(
            self.http.get(url),
            Duration::from_secs(5),
            outbound::MAX_ANSWER_BYTES,
        )
        .await
        .map_err(|e| format!("cannot reach Udesk: {e}"))?;
        let v = answer
            .json()
            .ok_or_else(|| format!("Udesk answered HTTP {}, not JSON", answer.status))?;
        match v.get("success").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            _ => Err(format!(
                "Udesk says: {}",
                v.get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )),
        }
    }

    /// A staged copy of a WeChat media id and a URL Udesk can open, within `budget`.
    async fn media_url(&self, media_id: &str, budget: Duration) -> Option<String> {
        let media = self.links.media(&self.api);
        // max_inline 0: stage it and hand back only the key.
        let staged = tokio::time::timeout(budget, media.fetch(&self.app, media_id, 0)).await;
        let key = match staged {
            Ok(Ok(Fetched::Large { key, .. })) => key,
            Ok(Ok(Fetched::Inline(_))) => return None,
            Ok(Err(e)) => {
                warn!(appid = %self.app.appid, media_id, error = %e, "could not stage the customer's media; forwarding without a URL");
                return None;
            }
            Err(_) => {
                warn!(appid = %self.app.appid, media_id, "staging the customer's media took too long; forwarding without a URL");
                return None;
            }
        };
        match self
            .links
            .url(&key, Duration::from_secs(self.cfg.media_url_secs))
            .await
        {
            Ok(u) => Some(u),
            Err(e) => {
                warn!(appid = %self.app.appid, media_id, error = %e, "no URL for staged media");
                None
            }
        }
    }

    /// Udesk's XML for a customer message; `None` for events this desk does not take. A
    /// voice or video message whose media could not be staged is an error: without its
    /// URL the agent would get an empty message, and the customer's words would be lost.
    async fn body(&self, msg: &Message, budget: Duration) -> Result<Option<Doc>, DeskError> {
        let unstaged =
            || DeskError::NotForwarded("the customer's media could not be staged for Udesk".into());
        let mut d = Doc::default();
        d.push("FromUserName", XmlValue::text(&msg.from_user));
        d.push("Number", XmlValue::text(""));
        d.push("Email", XmlValue::text(""));
        let text = |d: &mut Doc, content: String| {
            d.push("Content", XmlValue::text(content));
            d.push("CreateTime", XmlValue::number(msg.create_time));
            d.push("MsgType", XmlValue::text("text"));
        };
        match &msg.kind {
            Kind::Text { content, .. } => text(&mut d, content.clone()),
            Kind::Image { pic_url, media_id } => {
                let url = self.media_url(media_id, budget).await;
                d.push("CreateTime", XmlValue::number(msg.create_time));
                d.push("MsgType", XmlValue::text("image"));
                d.push(
                    "PicUrl",
                    XmlValue::text(url.unwrap_or_else(|| pic_url.clone())),
                );
                d.push("MediaId", XmlValue::text(media_id));
            }
            Kind::Voice {
                media_id, format, ..
            } => {
                let url = self
                    .media_url(media_id, budget)
                    .await
                    .ok_or_else(unstaged)?;
                d.push("CreateTime", XmlValue::number(msg.create_time));
                d.push("MsgType", XmlValue::text("voice"));
                d.push("MediaId", XmlValue::text(media_id));
                d.push("Format", XmlValue::text(format));
                d.push("MediaUrl", XmlValue::text(url));
            }
            Kind::Video {
                media_id,
                thumb_media_id,
            }
            | Kind::ShortVideo {
                media_id,
                thumb_media_id,
            } => {
                let url = self
                    .media_url(media_id, budget)
                    .await
                    .ok_or_else(unstaged)?;
                d.push("CreateTime", XmlValue::number(msg.create_time));
                d.push("MsgType", XmlValue::text("video"));
                d.push("MediaId", XmlValue::text(media_id));
                d.push("ThumbMediaId", XmlValue::text(thumb_media_id));
                d.push("MediaUrl", XmlValue::text(url));
            }
            Kind::Event(ev) => {
                // Only the events named in event_texts reach Udesk, known or not.
                let Some(wording) = self.cfg.event_texts.get(ev.name()) else {
                    return Ok(None);
                };
                let wording = match ev {
                    // The developer's context (a product, an order) is the point of it.
                    Event::UserEnterTempSession { session_from }
                        if !session_from.trim().is_empty() =>
                    {
                        format!("{wording} ({})", shown_session_from(session_from))
                    }
                    _ => wording.clone(),
                };
                text(&mut d, wording);
            }
            // Udesk's interface has no other types: a readable text keeps the conversation.
            _ => text(&mut d, readable(msg)),
        }
        // Events have no MsgId; CreateTime would give two customers' events in one second
        // the same one. Udesk's MsgId is a 64-bit integer: one derived from the inbox key.
        let msg_id = msg
            .msg_id
            .clone()
            .unwrap_or_else(|| event_msg_id(&msg.dedup_key(&self.app.appid)).to_string());
        d.push("MsgId", XmlValue::number(msg_id));
        Ok(Some(d))
    }

    /// What the customer sees for Udesk's answer.
    fn customer_text(&self, answer: &Value) -> Result<Option<String>, String> {
        if answer.get("success").and_then(Value::as_bool) == Some(false) {
            return Err(format!(
                "Udesk refused the message: {}",
                answer
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            ));
        }
        let msg = answer
            .get("msg")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty());
        match answer.get("status").and_then(Value::as_str) {
            Some("queueing" | "queuing") => {
                let turn = answer
                    .get("turn")
                    .map(|t| t.as_i64().map_or_else(|| t.to_string(), |n| n.to_string()))
                    .unwrap_or_default();
                Ok(Some(
                    self.cfg
                        .queueing_text
                        .replace("{turn}", turn.trim_matches('"')),
                ))
            }
            Some("chatting") => Ok(msg.map(str::to_owned)),
            Some("offline") => Ok(Some(self.cfg.offline_text.clone())),
            Some("unknown") => Ok(Some(self.cfg.unknown_text.clone())),
            Some(other) => Err(format!("Udesk answered status {other:?}")),
            None => Err("Udesk's answer has no status".to_owned()),
        }
    }
}

/// A positive decimal below 2^63 from a message's inbox key: distinct for distinct keys
/// (a 63-bit hash), the same for WeChat's retries of one event.
fn event_msg_id(key: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().unwrap_or_default()) >> 1;
    n.max(1)
}

/// A text rendering of a message Udesk's interface has no type for.
fn readable(msg: &Message) -> String {
    let f = |n: &str| msg.doc.text(n);
    match msg.msg_type() {
        "location" => format!(
            "[Location] {} ({}, {})",
            f("Label"),
            f("Location_X"),
            f("Location_Y")
        ),
        "link" => format!("[Link] {} {}", f("Title"), f("Url")),
        "miniprogrampage" => format!("[Mini Program page] {} {}", f("Title"), f("PagePath")),
        other => format!("[{other} message]"),
    }
}

#[async_trait]
impl Desk for UdeskIm {
    async fn check(&self) -> Result<String, String> {
        self.check_channel()
            .await
            .map(|()| "Udesk's channel test answered success".into())
    }

    async fn forward(
        &self,
        msg: &Message,
        _xml: &str,
        timeout: Duration,
    ) -> Result<DeskReply, DeskError> {
        let started = Instant::now();
        // Media staging gets at most half the time; Udesk needs the rest.
        let Some(body) = self.body(msg, timeout / 2).await? else {
            info!(appid = %self.app.appid, event = msg.event().map(|e| e.name()), "event not forwarded to Udesk (not in event_texts)");
            return Ok(DeskReply::Empty);
        };
        let left = timeout.saturating_sub(started.elapsed());
        let url = self.signed_url("", self.clock.unix_secs());
        let req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body.to_xml());
        let answer = outbound::send(req, left, outbound::MAX_ANSWER_BYTES).await?;
        if !(200..300).contains(&answer.status) {
            return Err(DeskError::Status(answer.status));
        }
        let answer = answer
            .json()
            .ok_or_else(|| DeskError::UnexpectedAnswer("Udesk's answer is not JSON".into()))?;
        let agent = answer
            .get("agent_name")
            .and_then(Value::as_str)
            .map(|a| a.trim().chars().take(32).collect::<String>())
            .filter(|a| !a.is_empty());
        match self.customer_text(&answer) {
            Ok(Some(text)) => {
                let xml = crate::wechat::reply::passive_text(msg, &text, self.clock.unix_secs());
                Ok(match agent {
                    Some(agent) => DeskReply::Said { xml, agent },
                    None => DeskReply::Passive(xml),
                })
            }
            Ok(None) => Ok(DeskReply::Empty),
            Err(why) => Err(DeskError::Refused(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_msg_id;
    use crate::wechat::message::Message;

    /// Two customers' events in the same second: Udesk's MsgId is a 64-bit integer per
    /// message, so each gets its own (from the inbox key), not the shared CreateTime.
    #[test]
    fn two_customers_events_in_one_second_have_distinct_msg_ids() {
        let event = |who: &str| {
            Message::parse(&format!(
                "<xml><ToUserName>gh</ToUserName><FromUserName>{who}</FromUserName><CreateTime>1700000000</CreateTime>\
                 <MsgType>event</MsgType><Event>subscribe</Event><EventKey></EventKey></xml>"
            ))
            .unwrap()
        };
        let ids = [
            event_msg_id(&event("oA").dedup_key("wxA")),
            event_msg_id(&event("oB").dedup_key("wxA")),
        ];
        assert_ne!(ids[0], ids[1]);
        assert!(ids.iter().all(|i| *i > 0 && *i < 1 << 63), "{ids:?}");
        assert!(ids.iter().all(|i| *i != 1_700_000_000));
        assert_eq!(
            ids[0],
            event_msg_id(&event("oA").dedup_key("wxA")),
            "a retry keeps its id"
        );
    }
}
