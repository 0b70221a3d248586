//! Storage behind small traits, each with an embedded implementation (no server) and an
//! AWS one (DynamoDB, S3). Every key is namespaced by appid by its caller. The state
//! machines the stores keep are written once, in `rules`.

pub mod aws;
pub(crate) mod conversation;
#[cfg(feature = "local")]
pub mod embedded;
pub(crate) mod idempotency;
mod inbox;
mod media;
pub mod model;
mod not_configured;
pub mod queue;
mod registry;
pub mod rules;
mod tokens;

pub use inbox::{
    Claim, EntryState, InboxEntry, InboxStore, NewClaim, OutboxStore, Outcome, Shelf, StateStore,
    StateSwap, Taken,
};
pub(crate) use media::{MEDIA_TTL, safe_segment};
pub use media::{MediaStore, MediaSweep, OpenedMedia, StagedMedia};
pub(crate) use not_configured::NotConfigured;
pub(crate) use registry::authorizer_context;
pub use registry::{AccountSettings, Authorizer, RegistryStore, Standing};
pub use tokens::{Ticket, TokenRecord, TokenStore};
pub(crate) use tokens::{component_token_key, ticket_key};

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The embedded store's file is held by another process (a running wxdesk-local).
    #[error("{0} is in use by another process (a running wxdesk-local?)")]
    InUse(String),
}

/// The stores and the delivery queue, from one backend.
#[derive(Clone)]
pub struct Stores {
    pub inbox: Arc<dyn InboxStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub media: Arc<dyn MediaStore>,
    pub queue: Arc<dyn queue::JobQueue>,
    pub registry: Arc<dyn RegistryStore>,
}

impl Stores {
    /// No store at all, for a command that must not open one (the store is held by a
    /// running server): every call fails, naming `why`.
    pub fn none(why: &'static str) -> Stores {
        let none = Arc::new(NotConfigured(why));
        Stores {
            inbox: none.clone(),
            tokens: none.clone(),
            media: none.clone(),
            registry: none.clone(),
            queue: none,
        }
    }

    pub async fn open(config: &crate::config::StoreConfig) -> Result<Stores, StoreError> {
        Self::open_with(config, None).await
    }

    /// As `open`, on an AWS SDK config already loaded (Lambda init loads it once).
    pub(crate) async fn open_with(
        config: &crate::config::StoreConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Stores, StoreError> {
        Ok(match config {
            #[cfg(not(feature = "local"))]
            crate::config::StoreConfig::Embedded { .. } => {
                return Err(StoreError::Unavailable(
                    "this build has no embedded store: set [store] backend = \"aws\" (Lambda), or run wxdesk-local".into(),
                ));
            }
            #[cfg(feature = "local")]
            crate::config::StoreConfig::Embedded { path } => {
                let db = Arc::new(embedded::EmbeddedStore::open(path)?);
                Stores {
                    inbox: db.clone(),
                    tokens: db.clone(),
                    registry: db.clone(),
                    queue: Arc::new(embedded::EmbeddedQueue::new(db)),
                    media: Arc::new(embedded::EmbeddedMedia::open(&path.join("media"))?),
                }
            }
            crate::config::StoreConfig::Aws {
                dedup_table,
                tokens_table,
                media_bucket,
                queue_url,
                registry_table,
                kms_key,
            } => {
                let sdk = match sdk {
                    Some(sdk) => sdk.clone(),
                    None => aws::sdk_loader().load().await,
                };
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                Stores {
                    queue: match queue_url {
                        Some(url) => {
                            Arc::new(queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url))
                        }
                        None => Arc::new(NotConfigured("store.queue_url (WXDESK_QUEUE_URL)")),
                    },
                    inbox: Arc::new(aws::AwsStore::new(ddb.clone(), dedup_table)),
                    registry: match registry_table {
                        Some(t) => Arc::new(aws::AwsRegistry::new(
                            ddb.clone(),
                            t,
                            kms_key
                                .as_ref()
                                .map(|k| (aws_sdk_kms::Client::new(&sdk), k.clone())),
                        )),
                        None => Arc::new(NotConfigured(
                            "store.registry_table (WXDESK_REGISTRY_TABLE)",
                        )),
                    },
                    tokens: match tokens_table {
                        Some(t) => Arc::new(aws::AwsTokens::new(ddb, t)),
                        None => Arc::new(NotConfigured("store.tokens_table (WXDESK_TOKENS_TABLE)")),
                    },
                    media: match media_bucket {
                        Some(b) => {
                            // Custom endpoints (moto, MinIO, LocalStack) want path-style
                            // URLs; AWS itself takes virtual-hosted ones.
                            let custom = std::env::var_os("AWS_ENDPOINT_URL_S3")
                                .or_else(|| std::env::var_os("AWS_ENDPOINT_URL"))
                                .is_some();
                            let s3 = aws_sdk_s3::Client::from_conf(
                                aws_sdk_s3::config::Builder::from(&sdk)
                                    .force_path_style(custom)
                                    .build(),
                            );
                            Arc::new(aws::S3Media::new(s3, b))
                        }
                        None => Arc::new(NotConfigured("store.media_bucket (WXDESK_MEDIA_BUCKET)")),
                    },
                }
            }
        })
    }
}

/// How logs name an inbox entry: its keys hold openids, which logs never show. The first
/// 12 hex digits of the key's SHA-256; `entry_ref` of a known key finds its log lines.
pub(crate) fn entry_ref(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let appid = crate::support::keys::appid_of(key);
    format!("{appid}#{}", &crate::support::hex::hex_lower(&digest[..6]))
}

pub fn new_claim_id() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    crate::support::hex::hex_lower(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_refs_hide_the_openid() {
        let key = "wx1#msg#42#oCustomerOpenid0000000000001#1700000000";
        let r = entry_ref(key);
        assert!(r.starts_with("wx1#") && r.len() == 4 + 12, "{r}");
        assert!(!r.contains("oCustomer"));
        assert_eq!(r, entry_ref(key));
        assert_ne!(
            r,
            entry_ref("wx1#msg#43#oCustomerOpenid0000000000001#1700000000")
        );
    }
}
