//! The account registry on the embedded store: authorizers in their own redb table, each
//! method one rule of `store::rules` applied to a record (`records`); and the data key in a key
//! file beside the database (`seal.key`, 32 random bytes, 0600), made on first use.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use async_trait::async_trait;
use redb::TableDefinition;

use super::EmbeddedStore;
use crate::store::{Authorizer, RegistryStore, Standing, StoreError, rules};
use crate::support::seal::Sealer;

const REGISTRY: TableDefinition<&str, &[u8]> = TableDefinition::new("registry");
const KEY_FILE: &str = "seal.key";

#[async_trait]
impl RegistryStore for EmbeddedStore {
    async fn put_authorizer(&self, a: &Authorizer) -> Result<bool, StoreError> {
        let a = a.clone();
        self.record_txn(REGISTRY, a.appid.clone(), move |cur| {
            rules::authorizer_put(cur, &a)
        })
        .await
    }

    async fn authorizer(&self, appid: &str) -> Result<Option<Authorizer>, StoreError> {
        self.record(REGISTRY, appid)
    }

    async fn set_standing(
        &self,
        appid: &str,
        standing: Standing,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.record_txn(REGISTRY, appid.to_owned(), move |cur| {
            rules::authorizer_standing(cur, standing, at_ms)
        })
        .await
    }

    async fn set_settings(
        &self,
        appid: &str,
        sealed: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let sealed = sealed.to_owned();
        self.record_txn(REGISTRY, appid.to_owned(), move |cur| {
            rules::authorizer_settings(cur, &sealed, at_ms)
        })
        .await
    }

    async fn authorizers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Authorizer>, StoreError> {
        self.records_after(REGISTRY, after, limit)
    }

    /// Read (or made) once per process, then cached.
    async fn sealer(&self) -> Result<Sealer, StoreError> {
        self.sealer
            .get_or_try_init(|| async { self.load_sealer() })
            .await
            .cloned()
    }
}

impl EmbeddedStore {
    fn load_sealer(&self) -> Result<Sealer, StoreError> {
        let path = self.dir.join(KEY_FILE);
        let fail = |e: std::io::Error| {
            StoreError::Unavailable(format!("data key {}: {e}", path.display()))
        };
        // Made once, never replaced: O_EXCL, so a key on disk is never overwritten.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match created {
            Ok(mut f) => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(fail)?;
                Ok(Sealer::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut key = [0u8; 32];
                let mut f = std::fs::File::open(&path).map_err(fail)?;
                f.read_exact(&mut key).map_err(fail)?;
                Ok(Sealer::new(&key))
            }
            Err(e) => Err(fail(e)),
        }
    }
}
