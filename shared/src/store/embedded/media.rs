//! Staged media in a local directory (the embedded store's media): one file per object
//! and a JSON sidecar with its content type and file name, written privately (0600) and
//! atomically; objects are sent from their open file, and a sweep keeps the directory
//! within its life and size.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::http::{FileBody, MediaBody};
use crate::store::queue::unavailable;
use crate::store::{
    MEDIA_TTL, MediaStore, MediaSweep, OpenedMedia, StagedMedia, StoreError, safe_segment,
};
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

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || remove_object(&path))
            .await
            .map_err(unavailable)?
            .map_err(|e| StoreError::Unavailable(format!("media {key}: {e}")))
    }

    async fn sweep(&self, max_bytes: u64) -> Result<MediaSweep, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_dir(&dir, max_bytes, SystemTime::now()))
            .await
            .map_err(unavailable)?
            .map_err(|e| StoreError::Unavailable(format!("media sweep: {e}")))
    }

    async fn presign(&self, _key: &str, _ttl: Duration) -> Result<Option<String>, StoreError> {
        // The local server has no response-size limit: it serves the bytes itself.
        Ok(None)
    }
}

/// Deletes an object and its sidecar; absent ones are no error.
fn remove_object(path: &Path) -> std::io::Result<()> {
    for p in [path.to_owned(), meta_path(path)] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A temporary file or a sidecar without its object is a write in progress while it is
/// younger than this, and a crash's leftover after.
const STRAY_AFTER: Duration = Duration::from_secs(3600);

/// Keys are at most `media|upload/{appid}/{id}`: nothing deeper is looked at.
const MAX_DEPTH: usize = 4;

/// A file found by the sweep.
struct Found {
    path: PathBuf,
    len: u64,
    age: Duration,
}

fn collect(dir: &Path, depth: usize, now: SystemTime, out: &mut Vec<Found>) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(&entry.path(), depth + 1, now, out)?;
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            let modified = meta.modified().unwrap_or(now);
            out.push(Found {
                path: entry.path(),
                len: meta.len(),
                age: now.duration_since(modified).unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// What `MediaStore::sweep` does to a directory: objects past `MEDIA_TTL` go (the media
/// ids they copy are dead at WeChat), then the oldest objects while the rest is over
/// `max_bytes` (0 = no cap), then leftover temporary files and orphaned sidecars.
fn sweep_dir(root: &Path, max_bytes: u64, now: SystemTime) -> std::io::Result<MediaSweep> {
    let mut found = Vec::new();
    collect(root, 0, now, &mut found)?;
    let mut report = MediaSweep::default();
    let name = |f: &Found| {
        f.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned()
    };
    let (mut objects, others): (Vec<Found>, Vec<Found>) = found
        .into_iter()
        .partition(|f| !name(f).contains(".tmp-") && !name(f).ends_with(".meta.json"));
    objects.sort_by_key(|f| std::cmp::Reverse(f.age));
    let mut total: u64 = objects.iter().map(|f| f.len).sum();
    for f in &objects {
        let expired = f.age >= MEDIA_TTL;
        let over = max_bytes > 0 && total > max_bytes;
        if !(expired || over) {
            report.kept += 1;
            report.kept_bytes += f.len;
            continue;
        }
        remove_object(&f.path)?;
        total -= f.len;
        if expired {
            report.expired += 1;
        } else {
            report.over_cap += 1;
        }
    }
    for f in others.iter().filter(|f| f.age >= STRAY_AFTER) {
        let orphan = match name(f).strip_suffix(".meta.json") {
            Some(object) => !f.path.with_file_name(object).exists(),
            None => true,
        };
        if orphan && std::fs::remove_file(&f.path).is_ok() {
            report.strays += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(n: usize) -> StagedMedia {
        StagedMedia {
            bytes: vec![7u8; n].into(),
            content_type: "image/jpeg".into(),
            filename: "a.jpg".into(),
        }
    }

    fn age(path: &Path, by: Duration) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[tokio::test]
    async fn the_sweep_keeps_life_and_size() {
        let dir =
            std::env::temp_dir().join(format!("wxdesk-sweep-{}", crate::store::new_claim_id()));
        let store = EmbeddedMedia::open(&dir).unwrap();
        let hour = Duration::from_secs(3600);
        for (key, hours) in [
            ("media/wx1/old", 24 * 10),
            ("media/wx1/a", 3),
            ("media/wx1/b", 2),
            ("upload/wx1/c", 1),
        ] {
            store.put(key, &staged(1000)).await.unwrap();
            age(&store.path(key), hour * hours);
        }
        // A crash's leftover, and a write in progress.
        std::fs::write(dir.join("media/wx1/x.tmp-1"), b"half").unwrap();
        age(&dir.join("media/wx1/x.tmp-1"), hour * 2);
        std::fs::write(dir.join("media/wx1/y.tmp-2"), b"half").unwrap();
        let swept = store.sweep(2500).await.unwrap();
        assert_eq!(
            swept,
            MediaSweep {
                expired: 1,
                over_cap: 1,
                strays: 1,
                kept: 2,
                kept_bytes: 2000
            }
        );
        assert!(store.get("media/wx1/old").await.unwrap().is_none());
        assert!(
            !store.path("media/wx1/old").exists()
                && !meta_path(&store.path("media/wx1/old")).exists()
        );
        assert!(
            store.get("media/wx1/a").await.unwrap().is_none(),
            "the oldest goes first"
        );
        assert!(store.get("media/wx1/b").await.unwrap().is_some());
        assert!(store.get("upload/wx1/c").await.unwrap().is_some());
        assert!(dir.join("media/wx1/y.tmp-2").exists());
        // Nothing more to do; and a removed object is gone with its sidecar.
        assert_eq!(store.sweep(2500).await.unwrap().kept, 2);
        store.remove("upload/wx1/c").await.unwrap();
        store.remove("upload/wx1/c").await.unwrap();
        assert!(!meta_path(&store.path("upload/wx1/c")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
