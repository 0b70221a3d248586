//! Everything a handler needs, built once at start-up (Lambda init or local server start)
//! and shared by every request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, DeskConfig, StoreConfig};
use crate::desk::{Desk, http_client, udesk_wechat::UdeskWechat};
use crate::store::{InboxStore, StoreError, aws::AwsStore, embedded::EmbeddedStore};
use crate::wechat::crypto::MsgCrypt;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// An account's decoded EncodingAESKeys: the current one and, during a rotation, the one
/// before it.
pub struct AppCrypto {
    pub current: MsgCrypt,
    pub previous: Option<MsgCrypt>,
}

pub struct Services {
    pub config: Config,
    pub inbox: Arc<dyn InboxStore>,
    pub clock: Arc<dyn Clock>,
    desks: HashMap<String, Arc<dyn Desk>>,
    crypto: HashMap<String, AppCrypto>,
}

impl Services {
    /// Builds services on the store the config names.
    pub async fn build(config: Config) -> Result<Services, InitError> {
        let inbox: Arc<dyn InboxStore> = match &config.store {
            StoreConfig::Embedded { path } => Arc::new(EmbeddedStore::open(path)?),
            StoreConfig::Aws { dedup_table, .. } => Arc::new(AwsStore::from_env(dedup_table).await),
        };
        Ok(Self::with_parts(config, inbox, Arc::new(SystemClock)))
    }

    /// Lambda init: config from WXDESK_CONFIG / WXDESK_CONFIG_FILE.
    pub async fn from_env() -> Result<Services, InitError> {
        Self::build(Config::from_env()?).await
    }

    pub fn with_parts(
        config: Config,
        inbox: Arc<dyn InboxStore>,
        clock: Arc<dyn Clock>,
    ) -> Services {
        let client = http_client();
        let mut desks: HashMap<String, Arc<dyn Desk>> = HashMap::new();
        let mut crypto = HashMap::new();
        for app in &config.apps {
            let desk: Arc<dyn Desk> = match &app.desk {
                DeskConfig::UdeskWechat { url } => {
                    Arc::new(UdeskWechat::new(client.clone(), url.clone()))
                }
            };
            desks.insert(app.appid.clone(), desk);
            // Keys were validated when the config was parsed.
            if let Some(current) = app
                .encoding_aes_key
                .as_ref()
                .and_then(|k| MsgCrypt::new(k.expose()).ok())
            {
                let previous = app
                    .previous_encoding_aes_key
                    .as_ref()
                    .and_then(|k| MsgCrypt::new(k.expose()).ok());
                crypto.insert(app.appid.clone(), AppCrypto { current, previous });
            }
        }
        Services {
            config,
            inbox,
            clock,
            desks,
            crypto,
        }
    }

    pub fn desk(&self, appid: &str) -> Option<&Arc<dyn Desk>> {
        self.desks.get(appid)
    }

    pub fn crypto(&self, appid: &str) -> Option<&AppCrypto> {
        self.crypto.get(appid)
    }
}
