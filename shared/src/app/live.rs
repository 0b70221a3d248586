//! The config an install runs on, kept current without a restart. Where it comes from:
//! - `WXDESK_CONFIG_SECRET` (Lambda): a Secrets Manager secret holding the TOML document
//!   (as text, or gzip as a binary secret or base64 text for large installs: a secret
//!   holds 64 KB). Read at init and again every `WXDESK_CONFIG_REFRESH_SECS` (300);
//! - `WXDESK_CONFIG` / `WXDESK_CONFIG_FILE` (Lambda, tests, small setups), and the local
//!   server's `--config` file, re-read on SIGHUP.
//!
//! A new version that fails validation, or that moves `[store]`, is refused with a log
//! line and the previous one stays in force. No environment variable holds a secret.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use tracing::{error, info};

use crate::app::{InitError, Services};
use crate::config::{Config, ConfigError, StoreConfig};

/// How often a secret is read again by default.
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A config document larger than this is refused (after gunzip): a bound on what a
/// secret can make the process allocate.
const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// Where the config document comes from.
pub enum Source {
    /// Given whole (`WXDESK_CONFIG`, tests): never changes.
    Fixed,
    /// A file, read again on `reload`.
    File(PathBuf),
    /// A Secrets Manager secret (id or ARN).
    Secret {
        client: aws_sdk_secretsmanager::Client,
        id: String,
    },
}

/// The services of the current config version.
pub struct Live {
    current: RwLock<Arc<Services>>,
    source: Source,
    /// Deployments name their own tables: this `[store]` replaces every version's.
    store: Option<StoreConfig>,
    /// Read the source again after this (`None`: only on `reload`).
    every: Option<Duration>,
    next: Mutex<Instant>,
    /// What the running version was made from (a digest of the document).
    version: Mutex<String>,
    reloading: tokio::sync::Mutex<()>,
}

fn digest(text: &str) -> String {
    crate::support::hex::sha256_hex(text.as_bytes())
}

/// The document in a secret's bytes: TOML text, or gzip (raw or base64).
fn document(bytes: &[u8]) -> Result<String, String> {
    const GZIP: [u8; 2] = [0x1f, 0x8b];
    let raw;
    let bytes = if bytes.starts_with(b"H4sI") {
        raw = base64::engine::general_purpose::STANDARD
            .decode(bytes.trim_ascii())
            .map_err(|e| format!("base64: {e}"))?;
        raw.as_slice()
    } else {
        bytes
    };
    if bytes.starts_with(&GZIP) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        if out.len() > MAX_CONFIG_BYTES {
            return Err(format!("larger than {MAX_CONFIG_BYTES} bytes"));
        }
        return String::from_utf8(out).map_err(|_| "not UTF-8".into());
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8".into())
}

impl Source {
    /// The document as it is now.
    async fn read(&self) -> Result<Option<String>, String> {
        match self {
            Source::Fixed => Ok(None),
            Source::File(path) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Source::Secret { client, id } => {
                let out = client
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "GetSecretValue: {}",
                            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                        )
                    })?;
                let bytes: &[u8] = match (out.secret_string(), out.secret_binary()) {
                    (Some(s), _) => s.as_bytes(),
                    (None, Some(b)) => b.as_ref(),
                    (None, None) => return Err("the secret has no value".into()),
                };
                document(bytes).map(Some)
            }
        }
    }
}

impl Live {
    /// Services that never change (tests, tools).
    pub fn fixed(svc: Arc<Services>) -> Live {
        Self::new(svc, Source::Fixed, None, None, String::new())
    }

    fn new(
        svc: Arc<Services>,
        source: Source,
        store: Option<StoreConfig>,
        every: Option<Duration>,
        version: String,
    ) -> Live {
        Live {
            current: RwLock::new(svc),
            source,
            store,
            next: Mutex::new(Instant::now() + every.unwrap_or_default()),
            every,
            version: Mutex::new(version),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads `source` and builds the first services on the store it names (or `store`).
    pub async fn start(
        source: Source,
        store: Option<StoreConfig>,
        every: Option<Duration>,
    ) -> Result<Live, InitError> {
        Self::start_with(source, store, every, None).await
    }

    async fn start_with(
        source: Source,
        store: Option<StoreConfig>,
        every: Option<Duration>,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Live, InitError> {
        let text = source
            .read()
            .await
            .map_err(InitError::Secret)?
            .ok_or(ConfigError::NotSet)?;
        let config = Config::parse_with_store(&text, store.clone())?;
        let svc = Services::build_with(config, sdk).await?;
        Ok(Self::new(
            Arc::new(svc),
            source,
            store,
            every,
            digest(&text),
        ))
    }

    /// The local server: `svc` built from `text`, read from the file at `path`, which
    /// `reload` reads again.
    pub fn from_file(svc: Arc<Services>, path: PathBuf, text: &str) -> Live {
        Self::new(svc, Source::File(path), None, None, digest(text))
    }

    /// Lambda init, from the environment (see the module's documentation).
    pub(crate) async fn from_env() -> Result<Live, InitError> {
        let store = Config::store_from_env();
        if let Ok(id) = std::env::var("WXDESK_CONFIG_SECRET")
            && !id.is_empty()
        {
            let every = std::env::var("WXDESK_CONFIG_REFRESH_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(DEFAULT_REFRESH, Duration::from_secs);
            // One SDK config for the secret and the stores.
            let sdk = crate::store::aws::sdk_loader().load().await;
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            let source = Source::Secret { client, id };
            return Self::start_with(source, store, Some(every), Some(&sdk)).await;
        }
        if let Ok(text) = std::env::var("WXDESK_CONFIG") {
            let svc = Services::build(Config::parse_with_store(&text, store)?).await?;
            return Ok(Self::fixed(Arc::new(svc)));
        }
        match std::env::var("WXDESK_CONFIG_FILE") {
            Ok(path) => Self::start(Source::File(path.into()), store, None).await,
            Err(_) => Err(ConfigError::NotSet.into()),
        }
    }

    /// The services in force.
    pub fn current(&self) -> Arc<Services> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The services in force, after reading the source again if it is due. One caller
    /// reads; the others go on with the current version meanwhile.
    pub async fn fresh(&self) -> Arc<Services> {
        let due = self.every.is_some()
            && self
                .next
                .lock()
                .map(|n| Instant::now() >= *n)
                .unwrap_or(false);
        if due && let Ok(_guard) = self.reloading.try_lock() {
            if let Some(every) = self.every
                && let Ok(mut n) = self.next.lock()
            {
                *n = Instant::now() + every;
            }
            match self.load().await {
                Ok(true) => info!("config: a new version is in force"),
                Ok(false) => {}
                Err(e) => {
                    error!(error = %e, "config: the new version is refused; the previous one stays in force")
                }
            }
        }
        self.current()
    }

    /// Reads the source now (SIGHUP): true when a new version is in force; an error says
    /// why a new version was refused (the previous one stays).
    pub async fn reload(&self) -> Result<bool, String> {
        let _guard = self.reloading.lock().await;
        self.load().await
    }

    async fn load(&self) -> Result<bool, String> {
        let Some(text) = self.source.read().await? else {
            return Ok(false);
        };
        let version = digest(&text);
        if self.version.lock().map(|v| *v == version).unwrap_or(false) {
            return Ok(false);
        }
        let config =
            Config::parse_with_store(&text, self.store.clone()).map_err(|e| e.to_string())?;
        let old = self.current();
        if config.store != old.config.store {
            return Err("[store] changed: that needs a restart".into());
        }
        let next = Arc::new(old.rebuild(config));
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        if let Ok(mut v) = self.version.lock() {
            *v = version;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn documents_come_as_text_gzip_or_base64_gzip() {
        let toml = "[store]\nbackend = \"embedded\"\n";
        assert_eq!(document(toml.as_bytes()).unwrap(), toml);
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(toml.as_bytes()).unwrap();
        let gz = z.finish().unwrap();
        assert_eq!(document(&gz).unwrap(), toml);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        assert!(b64.starts_with("H4sI"));
        assert_eq!(document(b64.as_bytes()).unwrap(), toml);
        assert!(document(b"H4sI!!!").is_err());
        assert!(document(&[0xff, 0xfe]).is_err());
    }
}
