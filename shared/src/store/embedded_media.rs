//! Staged media in a local directory (the embedded store's media): one file per object
//! and a JSON sidecar with its content type and file name, written privately (0600) and
//! atomically; objects are sent from their open file, and a sweep keeps the directory
//! within its life and size.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::queue::unavailable;
use super::{MEDIA_TTL, MediaStore, OpenedMedia, StagedMedia, StoreError, safe_segment};
use crate::http::{FileBody, MediaBody};
use crate::support::private_fs::{create_private_dir, private_dir, write_private};

/// Staged media in a local directory: one file per object and a small JSON sidecar with
/// its content type and file name. Objects older than `MEDIA_TTL` read as absent.
pub struct EmbeddedMedia {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MediaMeta {
    content_type: String,
    filename: String,
}

impl EmbeddedMedia {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        private_dir(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Keys are `a/b/c`; every segment is made safe, so no key escapes the directory.
    fn path(&self, key: &str) -> PathBuf {
        let mut p = self.dir.clone();
        for seg in key.split('/').filter(|s| !s.is_empty()) {
            p.push(safe_segment(seg));
        }
        p
    }

    /// A live object's content by `take` and its sidecar; None when absent or past its life.
    async fn read<T: Send + 'static>(
        &self,
        key: &str,
        take: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<Option<(T, MediaMeta)>, StoreError> {
        let path = self.path(key);
        if !Self::live(&path) {
            return Ok(None);
        }
        let read = tokio::task::spawn_blocking(move || {
            let content = take(&path)?;
            let meta = std::fs::read(meta_path(&path))?;
            Ok::<_, std::io::Error>((content, meta))
        })
        .await
        .map_err(unavailable)?;
        let (content, meta) = match read {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Unavailable(format!("media {key}: {e}"))),
        };
        let meta: MediaMeta = serde_json::from_slice(&meta)
            .map_err(|e| StoreError::Corrupt(format!("media {key}: {e}")))?;
        Ok(Some((content, meta)))
    }

    fn live(path: &Path) -> bool {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < MEDIA_TTL)
    }
}

fn tmp_path(p: &Path, unique: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".tmp-{unique}"));
    PathBuf::from(s)
}

fn meta_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".meta.json");
    PathBuf::from(s)
}

#[async_trait]
impl MediaStore for EmbeddedMedia {
    async fn put(&self, key: &str, media: &StagedMedia) -> Result<(), StoreError> {
        let path = self.path(key);
        let meta = serde_json::to_vec(&MediaMeta {
            content_type: media.content_type.clone(),
            filename: media.filename.clone(),
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let bytes = media.bytes.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                create_private_dir(parent)?;
            }
            // Write then rename, both files, each under a name no concurrent writer of the
            // same key shares: a reader never sees half a file, and two stagings of one
            // media_id cannot clobber each other's temporary file. The sidecar lands first,
            // so a visible object always has its metadata.
            let unique = crate::store::new_claim_id();
            let meta_final = meta_path(&path);
            let meta_tmp = tmp_path(&meta_final, &unique);
            write_private(&meta_tmp, &meta)?;
            std::fs::rename(&meta_tmp, &meta_final)?;
            let tmp = tmp_path(&path, &unique);
            write_private(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(unavailable)?
        .map_err(|e| StoreError::Unavailable(format!("media {key}: {e}")))
    }

    async fn get(&self, key: &str) -> Result<Option<StagedMedia>, StoreError> {
        let Some((bytes, meta)) = self.read(key, |path| std::fs::read(path)).await? else {
            return Ok(None);
        };
        Ok(Some(StagedMedia {
            bytes: bytes.into(),
            content_type: meta.content_type,
            filename: meta.filename,
        }))
    }

    async fn open(&self, key: &str) -> Result<Option<OpenedMedia>, StoreError> {
        let opened = self
            .read(key, |path| {
                let file = std::fs::File::open(path)?;
                let len = file.metadata()?.len();
                Ok(FileBody {
                    file: std::sync::Arc::new(file),
                    len,
                })
            })
            .await?;
        Ok(opened.map(|(file, meta)| OpenedMedia {
            body: MediaBody::File(file),
            content_type: meta.content_type,
            filename: meta.filename,
        }))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key);
        if !Self::live(&path) {
            return Ok(None);
        }
        Ok(std::fs::metadata(&path).ok().map(|m| m.len()))
    }

    async fn presign(&self, _key: &str, _ttl: Duration) -> Result<Option<String>, StoreError> {
        // The local server has no response-size limit: it serves the bytes itself.
        Ok(None)
    }
}
