//! Staged media: what passes through between WeChat and the desks (S3, or a local
//! directory).

use async_trait::async_trait;

use super::StoreError;

/// Staged media: the bytes with what a browser needs to show or save them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedMedia {
    pub bytes: bytes::Bytes,
    pub content_type: String,
    pub filename: String,
}

/// A staged object ready to send: its bytes, or its open file where the store has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedMedia {
    pub body: crate::http::MediaBody,
    pub content_type: String,
    pub filename: String,
}

/// Where media passes through: S3, or a local directory. Objects older than `MEDIA_TTL`
/// are gone (an S3 lifecycle rule; checked on read locally).
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put(&self, key: &str, media: &StagedMedia) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<StagedMedia>, StoreError>;
    /// An object to send: the local directory opens its file (sent as the client reads
    /// it), other stores read it whole.
    async fn open(&self, key: &str) -> Result<Option<OpenedMedia>, StoreError> {
        Ok(self.get(key).await?.map(|m| OpenedMedia {
            body: crate::http::MediaBody::Bytes(m.bytes),
            content_type: m.content_type,
            filename: m.filename,
        }))
    }
    /// The object's size, without its bytes.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Deletes an object; an absent one is no error.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes what is past `MEDIA_TTL` and then, oldest first, what is over `max_bytes`.
    /// S3 needs none (its lifecycle rule expires objects after 3 days).
    async fn sweep(&self, _max_bytes: u64) -> Result<MediaSweep, StoreError> {
        Ok(MediaSweep::default())
    }
    /// A short-lived URL to fetch the object directly, where the store has one.
    async fn presign(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError>;
}

/// What a media sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaSweep {
    /// Objects deleted for their age.
    pub expired: usize,
    /// Objects deleted, oldest first, to bring the store under its size cap.
    pub over_cap: usize,
    /// Leftover temporary files and sidecars deleted.
    pub strays: usize,
    /// What is left.
    pub kept: usize,
    pub kept_bytes: u64,
}

/// WeChat media ids live 3 days; nothing staged outlives them.
pub(crate) const MEDIA_TTL: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// A media key's last segment made safe for a file name and an S3 key.
pub(crate) fn safe_segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    match out.trim_start_matches('.') {
        "" => "_".to_owned(),
        t => t.to_owned(),
    }
}
