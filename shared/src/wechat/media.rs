//! Temporary media between WeChat and a desk, staged in the media store (S3 or a local
//! directory): downloads are cached under `media/{appid}/{media_id}` for the 3 days a
//! media_id lives; uploads are staged under `upload/{appid}/...`, checked against
//! WeChat's limits before WeChat sees them, and deleted once WeChat has them.

use serde_json::Value;
use tracing::{info, warn};

use crate::config::{AppConfig, AppKind};
use crate::store::{MediaStore, StagedMedia, StoreError, safe_segment};

use super::api::{Body, WechatApi};
use super::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("media store: {0}")]
    Store(#[from] StoreError),
    /// Refused before calling WeChat; `errcode` is the one WeChat would have given.
    #[error("{msg}")]
    Rejected { errcode: i64, msg: String },
}

impl MediaError {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            MediaError::Api(e) => e.to_json(),
            // A desk is a third party: it learns that our store failed, not how (bucket
            // names, ARNs); the reason is logged where the error is.
            MediaError::Store(_) => serde_json::json!({
                "errcode": -1,
                "errmsg": "wxdesk: the media store is unavailable; try again (the server log has the reason)",
            }),
            MediaError::Rejected { errcode, msg } => {
                serde_json::json!({"errcode": errcode, "errmsg": format!("wxdesk: {msg}")})
            }
        }
    }
}

fn rejected(errcode: i64, msg: impl Into<String>) -> MediaError {
    MediaError::Rejected {
        errcode,
        msg: msg.into(),
    }
}

/// WeChat's upload limits per type ("Adding temporary media",
/// https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html;
/// images kept at 2 MB, the lower of the two figures that page gives).
pub(crate) struct Limit {
    pub max_bytes: usize,
    pub formats: &'static [&'static str],
}

pub(crate) fn limit_for(media_type: &str, kind: AppKind) -> Option<Limit> {
    Some(match (media_type, kind) {
        ("image", _) => Limit {
            max_bytes: 2 * 1024 * 1024,
            formats: &["png", "jpeg", "gif"],
        },
        ("voice", AppKind::OfficialAccount) => Limit {
            max_bytes: 2 * 1024 * 1024,
            formats: &["amr", "mp3"],
        },
        ("video", AppKind::OfficialAccount) => Limit {
            max_bytes: 10 * 1024 * 1024,
            formats: &["mp4"],
        },
        ("thumb", AppKind::OfficialAccount) => Limit {
            max_bytes: 64 * 1024,
            formats: &["jpeg"],
        },
        _ => return None,
    })
}

/// The format from the first bytes (file names and content types lie).
pub(crate) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let b = bytes;
    Some(if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        "jpeg"
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        "gif"
    } else if b.starts_with(b"#!AMR") {
        "amr"
    } else if b.starts_with(b"ID3") || (b.len() > 1 && b[0] == 0xff && b[1] & 0xe0 == 0xe0) {
        "mp3"
    } else if b.len() > 11 && &b[4..8] == b"ftyp" {
        "mp4"
    } else {
        return None;
    })
}

pub(crate) fn mime_of(format: &str) -> &'static str {
    match format {
        "png" => "image/png",
        "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "amr" => "audio/amr",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

fn extension(format: &str) -> &str {
    match format {
        "jpeg" => "jpg",
        other => other,
    }
}

pub(crate) fn media_key(appid: &str, media_id: &str) -> String {
    format!("media/{}/{}", safe_segment(appid), safe_segment(media_id))
}

/// The file name in a `Content-Disposition` header, if any.
pub(crate) fn disposition_filename(header: &str) -> Option<String> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case("filename"))
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
    })
}

pub struct Media<'a> {
    pub api: &'a WechatApi,
    pub store: &'a dyn MediaStore,
}

/// Where a download is.
pub enum Fetched {
    /// In the store, too large to answer inline; `size` in bytes.
    Large {
        key: String,
        size: u64,
    },
    Inline(StagedMedia),
}

impl Media<'_> {
    /// A media file by id: from the store when staged, else from WeChat (bytes, or the
    /// `video_url` it points to) and then staged. `max_inline` decides which come back
    /// as bytes and which only as a stored key.
    pub async fn fetch(
        &self,
        app: &AppConfig,
        media_id: &str,
        max_inline: u64,
    ) -> Result<Fetched, MediaError> {
        if media_id.is_empty() || media_id.len() > 256 {
            return Err(rejected(40007, "invalid media_id"));
        }
        let key = media_key(&app.appid, media_id);
        match self.store.size(&key).await {
            Ok(Some(size)) if size > max_inline => return Ok(Fetched::Large { key, size }),
            Ok(Some(_)) => match self.store.get(&key).await {
                Ok(Some(m)) => {
                    info!(appid = %app.appid, media_id, "media served from the store");
                    return Ok(Fetched::Inline(m));
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(appid = %app.appid, error = %e, "media store read failed; asking WeChat")
                }
            },
            Ok(None) => {}
            Err(e) => {
                warn!(appid = %app.appid, error = %e, "media store read failed; asking WeChat")
            }
        }
        let raw = self
            .api
            .send(
                app,
                http::Method::GET,
                "/cgi-bin/media/get",
                &[("media_id", media_id)],
                Body::None,
            )
            .await?;
        let (bytes, content_type, filename) = if raw.is_json() {
            // Not an error (that was caught by `send`): a video, as `{"video_url": ...}`.
            let v: Value = serde_json::from_slice(&raw.bytes)
                .map_err(|_| ApiError::Garbled("media/get answered unreadable JSON".into()))?;
            let url = v.get("video_url").and_then(Value::as_str).ok_or_else(|| {
                ApiError::Garbled("media/get answered JSON without video_url".into())
            })?;
            let video = self.api.fetch_video(url).await?;
            let ct = if video.content_type.is_empty()
                || video.content_type == "application/octet-stream"
            {
                "video/mp4".to_owned()
            } else {
                video.content_type
            };
            (video.bytes, ct, format!("{media_id}.mp4"))
        } else {
            let format = sniff(&raw.bytes);
            let ct = if raw.content_type.is_empty() {
                mime_of(format.unwrap_or("")).to_owned()
            } else {
                raw.content_type.clone()
            };
            let name = raw
                .content_disposition
                .as_deref()
                .and_then(disposition_filename)
                .unwrap_or_else(|| {
                    format!("{media_id}.{}", format.map(extension).unwrap_or("bin"))
                });
            (raw.bytes, ct, name)
        };
        let staged = StagedMedia {
            bytes,
            content_type,
            filename,
        };
        let size = staged.bytes.len() as u64;
        match self.store.put(&key, &staged).await {
            Ok(()) if size > max_inline => Ok(Fetched::Large { key, size }),
            Ok(()) => Ok(Fetched::Inline(staged)),
            // Staging is a cache for inline answers; a large one needs the store.
            Err(e) if size > max_inline => Err(e.into()),
            Err(e) => {
                warn!(appid = %app.appid, error = %e, "could not stage media; answering without it");
                Ok(Fetched::Inline(staged))
            }
        }
    }

    /// Checks a file against WeChat's limits, stages it, and adds it as temporary
    /// material; answers WeChat's JSON.
    pub async fn upload(
        &self,
        app: &AppConfig,
        media_type: &str,
        file: StagedMedia,
    ) -> Result<Value, MediaError> {
        let limit = limit_for(media_type, app.kind).ok_or_else(|| {
            rejected(
                40004,
                match app.kind {
                    AppKind::OfficialAccount => {
                        format!(
                            "invalid media type {media_type:?}: use image, voice, video or thumb"
                        )
                    }
                    AppKind::MiniProgram => {
                        format!("invalid media type {media_type:?}: mini programs take image only")
                    }
                },
            )
        })?;
        if file.bytes.is_empty() {
            return Err(rejected(41005, "the media part is empty"));
        }
        if file.bytes.len() > limit.max_bytes {
            return Err(rejected(
                40006,
                format!(
                    "{media_type} is {} bytes; WeChat takes at most {}",
                    file.bytes.len(),
                    limit.max_bytes
                ),
            ));
        }
        let format = sniff(&file.bytes).filter(|f| limit.formats.contains(f));
        let Some(format) = format else {
            return Err(rejected(
                40005,
                format!(
                    "{media_type} must be {} (the file's content is not)",
                    limit.formats.join(" or ")
                ),
            ));
        };
        let filename = match file.filename.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => format!("{stem}.{}", extension(format)),
            _ => format!("upload.{}", extension(format)),
        };
        let staged = StagedMedia {
            bytes: file.bytes,
            content_type: mime_of(format).to_owned(),
            filename: safe_segment(&filename),
        };
        let key = format!(
            "upload/{}/{}-{}",
            safe_segment(&app.appid),
            crate::store::new_claim_id(),
            staged.filename
        );
        // The staged copy is what was sent, kept while WeChat may not have it (a failed
        // upload stays for the sweep); WeChat is told even if staging fails, because the
        // agent is waiting.
        let staged_ok = match self.store.put(&key, &staged).await {
            Ok(()) => true,
            Err(e) => {
                warn!(appid = %app.appid, error = %e, "could not stage the upload; sending it anyway");
                false
            }
        };
        let v = self
            .api
            .call(
                app,
                http::Method::POST,
                "/cgi-bin/media/upload",
                &[("type", media_type)],
                Body::File {
                    field: "media",
                    filename: staged.filename.clone(),
                    content_type: staged.content_type.clone(),
                    bytes: staged.bytes.clone(),
                },
            )
            .await?;
        info!(appid = %app.appid, media_type, bytes = staged.bytes.len(), "media uploaded to WeChat");
        // WeChat has it now: the staged copy would only take room.
        if staged_ok && let Err(e) = self.store.remove(&key).await {
            warn!(appid = %app.appid, error = %e, "could not delete the staged upload; the sweep will");
        }
        Ok(v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "set media.public_base_url: the embedded store serves staged media through this server"
    )]
    NoBaseUrl,
}

/// URLs a desk can open for staged media: presigned S3 URLs, or, on the embedded store,
/// `{public_base_url}/media/{key}?expires=&sig=` served by the local server and signed with
/// HMAC-SHA256.
pub struct MediaLinks {
    store: std::sync::Arc<dyn MediaStore>,
    base: Option<String>,
    key: Vec<u8>,
    clock: std::sync::Arc<dyn crate::support::clock::Clock>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl MediaLinks {
    /// Without `[media] url_key` links are signed with a random key of this process, the
    /// same for every config version: a reload keeps the links desks already hold valid
    /// (a restart does not; set url_key for links that outlive it).
    pub fn new(
        store: std::sync::Arc<dyn MediaStore>,
        base: Option<String>,
        key: Option<&crate::config::Secret>,
        clock: std::sync::Arc<dyn crate::support::clock::Clock>,
    ) -> Self {
        let key = match key {
            Some(k) => k.expose().as_bytes().to_vec(),
            None => process_key().to_vec(),
        };
        Self {
            store,
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
            key,
            clock,
        }
    }

    pub fn store(&self) -> &dyn MediaStore {
        self.store.as_ref()
    }

    /// Media staging through WeChat's API into this store.
    pub fn media<'a>(&'a self, api: &'a WechatApi) -> Media<'a> {
        Media {
            api,
            store: self.store.as_ref(),
        }
    }

    /// A staged object by the key of a link whose signature `verify` accepted.
    pub async fn open(&self, key: &str) -> Result<Option<crate::store::OpenedMedia>, StoreError> {
        self.store.open(key).await
    }

    fn sig(&self, key: &str, expires: i64) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => return String::new(),
        };
        mac.update(format!("{key}\n{expires}").as_bytes());
        crate::support::hex::hex_lower(&mac.finalize().into_bytes())
    }

    /// A URL for a staged object, valid for `ttl`.
    pub async fn url(&self, key: &str, ttl: std::time::Duration) -> Result<String, LinkError> {
        if let Some(u) = self.store.presign(key, ttl).await? {
            return Ok(u);
        }
        let base = self.base.as_deref().ok_or(LinkError::NoBaseUrl)?;
        let expires = self.clock.unix_secs() + ttl.as_secs() as i64;
        let path: String = key
            .split('/')
            .map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
            .collect::<Vec<_>>()
            .join("/");
        Ok(format!(
            "{base}/media/{path}?expires={expires}&sig={}",
            self.sig(key, expires)
        ))
    }

    /// Whether a local media URL's signature holds and it has not expired.
    pub fn verify(&self, key: &str, expires: i64, sig: &str, now_secs: i64) -> bool {
        expires >= now_secs && crate::config::Secret::new(self.sig(key, expires)).matches(sig)
    }
}

/// The random link key of this process (see `MediaLinks::new`).
fn process_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::fill(&mut k[..]);
        k
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 2, §4: without `[media] url_key` a config reload (new services) made every
    /// link a desk held invalid.
    #[test]
    fn links_outlive_a_reload_without_a_url_key() {
        let links = || {
            MediaLinks::new(
                std::sync::Arc::new(crate::store::NotConfigured("media")),
                Some("http://x".into()),
                None,
                std::sync::Arc::new(crate::support::clock::SystemClock),
            )
        };
        let (before, after) = (links(), links());
        let sig = before.sig("wx1/m1", 2_000_000_000);
        assert!(after.verify("wx1/m1", 2_000_000_000, &sig, 1_900_000_000));
        let keyed = MediaLinks::new(
            std::sync::Arc::new(crate::store::NotConfigured("media")),
            None,
            Some(&crate::config::Secret::new("a-configured-url-key")),
            std::sync::Arc::new(crate::support::clock::SystemClock),
        );
        assert!(!keyed.verify("wx1/m1", 2_000_000_000, &sig, 1_900_000_000));
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("jpeg"));
        assert_eq!(sniff(b"GIF89a..."), Some("gif"));
        assert_eq!(sniff(b"#!AMR\n"), Some("amr"));
        assert_eq!(sniff(b"ID3\x03"), Some("mp3"));
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42rest"), Some("mp4"));
        assert_eq!(sniff(b"<html>"), None);
    }

    #[test]
    fn limits_per_kind() {
        assert!(limit_for("thumb", AppKind::OfficialAccount).is_some());
        assert!(limit_for("voice", AppKind::MiniProgram).is_none());
        assert!(limit_for("image", AppKind::MiniProgram).is_some());
        assert!(limit_for("file", AppKind::OfficialAccount).is_none());
    }

    #[test]
    fn reads_disposition() {
        assert_eq!(
            disposition_filename("attachment; filename=\"MEDIA_ID.jpg\"").as_deref(),
            Some("MEDIA_ID.jpg")
        );
        assert_eq!(disposition_filename("inline").as_deref(), None);
        assert_eq!(media_key("wx1", "a/../b"), "media/wx1/a_.._b");
    }
}
