//! A customer's WeChat message as an IM message to the agent: text, media staged where an
//! agent's client can fetch it (else a readable line), and a pick from a menu the desk
//! offered as the answer the desk expects.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::warn;

use super::TencentIm;
use super::choice::Offered;
use crate::store::conversation;
use crate::wechat::AppKind;
use crate::wechat::media::{Fetched, media_key};
use crate::wechat::message::{Event, Kind, Message, shown_session_from};

/// What an agent reads when a Mini Program customer opens the chat.
pub(crate) fn entered_from(session_from: &str) -> String {
    let from = shown_session_from(session_from);
    if from.is_empty() {
        "[The customer opened the chat]".into()
    } else {
        format!("[The customer opened the chat from: {from}]")
    }
}

impl TencentIm {
    /// A staged copy of a WeChat media id: (URL, size, md5 as UUID).
    async fn staged(&self, media_id: &str, budget: Duration) -> Option<(String, usize, String)> {
        let media = self.links.media(&self.api);
        let fetched =
            tokio::time::timeout(budget, media.fetch(&self.app, media_id, u64::MAX)).await;
        let m = match fetched {
            Ok(Ok(Fetched::Inline(m))) => m,
            Ok(Ok(Fetched::Large { .. })) => return None,
            Ok(Err(e)) => {
                warn!(appid = %self.app.appid, error = %e, "could not stage the customer's media");
                return None;
            }
            Err(_) => {
                warn!(appid = %self.app.appid, "staging the customer's media took too long");
                return None;
            }
        };
        let url = self
            .links
            .url(
                &media_key(&self.app.appid, media_id),
                Duration::from_secs(7 * 24 * 3600),
            )
            .await
            .map_err(|e| warn!(appid = %self.app.appid, error = %e, "no URL for staged media"))
            .ok()?;
        use md5::{Digest, Md5};
        let uuid = crate::support::hex::hex_lower(&Md5::digest(&m.bytes));
        Some((url, m.bytes.len(), uuid))
    }

    /// The IM message body for a customer message.
    pub(super) async fn msg_body(&self, msg: &Message, budget: Duration) -> Value {
        let text = |t: String| json!([{ "MsgType": "TIMTextElem", "MsgContent": { "Text": t } }]);
        match &msg.kind {
            Kind::Text {
                content,
                bizmsgmenuid,
            } => match self.picked(msg, content, bizmsgmenuid.as_deref()).await {
                Some(answer) => answer,
                None => text(content.clone()),
            },
            Kind::Image { pic_url, media_id } => match self.staged(media_id, budget).await {
                Some((url, size, uuid)) => {
                    // Original, large and thumbnail: the same staged file.
                    let infos: Vec<Value> = [1, 2, 3]
                        .iter()
                        .map(|t| json!({ "Type": t, "Size": size, "Width": 0, "Height": 0, "URL": url }))
                        .collect();
                    json!([{ "MsgType": "TIMImageElem", "MsgContent": {
                        "UUID": uuid, "ImageFormat": 255, "ImageInfoArray": infos,
                    }}])
                }
                None => text(format!("[Image] {pic_url}")),
            },
            Kind::Voice {
                media_id,
                recognition,
                ..
            } => match self.staged(media_id, budget).await {
                Some((url, size, uuid)) => json!([{ "MsgType": "TIMSoundElem", "MsgContent": {
                    "Url": url, "UUID": uuid, "Size": size, "Second": 0, "Download_Flag": 2,
                }}]),
                None => text(format!(
                    "[Voice] {}",
                    recognition.as_deref().unwrap_or("(could not be fetched)")
                )),
            },
            Kind::Video { media_id, .. } | Kind::ShortVideo { media_id, .. } => {
                match self.staged(media_id, budget).await {
                    Some((url, size, uuid)) => {
                        json!([{ "MsgType": "TIMVideoFileElem", "MsgContent": {
                            "VideoUrl": url, "VideoUUID": uuid, "VideoSize": size, "VideoSecond": 0,
                            "VideoFormat": "mp4", "VideoDownloadFlag": 2,
                        }}])
                    }
                    None => text("[Video] (could not be fetched)".into()),
                }
            }
            Kind::Location {
                latitude,
                longitude,
                label,
                ..
            } => json!([{ "MsgType": "TIMLocationElem", "MsgContent": {
                "Desc": label,
                "Latitude": latitude.parse::<f64>().unwrap_or(0.0),
                "Longitude": longitude.parse::<f64>().unwrap_or(0.0),
            }}]),
            Kind::Link { title, url, .. } => text(format!("[Link] {title} {url}")),
            Kind::MiniProgramPage {
                title, page_path, ..
            } => text(format!("[Mini Program page] {title} {page_path}")),
            Kind::Event(Event::UserEnterTempSession { session_from }) => {
                text(entered_from(session_from))
            }
            Kind::Event(e) => text(format!("[{}]", e.name())),
            Kind::Unknown { msg_type } => text(format!("[{msg_type} message]")),
        }
    }

    /// The pick a text answers, if the customer has an open menu and this picks from it.
    /// Read only for a click (`bizmsgmenuid`) or, on a Mini Program, a bare number.
    async fn picked(
        &self,
        msg: &Message,
        content: &str,
        bizmsgmenuid: Option<&str>,
    ) -> Option<Value> {
        let numbered = self.app.kind == AppKind::MiniProgram;
        let looks_like_pick = bizmsgmenuid.is_some()
            || (numbered && content.trim().len() <= 2 && content.trim().parse::<u8>().is_ok());
        if !looks_like_pick {
            return None;
        }
        let (appid, openid) = (self.app.appid.as_str(), msg.from_user.as_str());
        let now = self.rest.clock.unix_ms();
        let open = conversation::open_choice(self.inbox.as_ref(), appid, openid, now)
            .await
            .map_err(|e| warn!(appid, error = %e, "open menu unreadable; the text goes as it is"))
            .ok()??;
        let offered = Offered::decode(&open)?;
        let option = offered.picked(content, bizmsgmenuid, numbered)?;
        let body = offered.answer_body(option);
        if let Err(e) = conversation::close_choice(self.inbox.as_ref(), appid, openid, &open).await
        {
            warn!(appid, error = %e, "could not close the answered menu");
        }
        Some(body)
    }
}
