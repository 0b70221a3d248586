//! JSON records in a redb table of the embedded store (tokens, tickets, authorizers): one
//! read, and one rule of `store::rules` applied in one write transaction (redb serialises
//! them, so a read-check-write inside one is atomic like a conditional write).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EmbeddedStore;
use crate::store::StoreError;
use crate::store::queue::unavailable;

pub(super) type Records = TableDefinition<'static, &'static str, &'static [u8]>;

/// The record under `key`.
fn read<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(unavailable)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("record {key}: {e}"))),
        None => Ok(None),
    }
}

impl EmbeddedStore {
    /// The record under `key` of `table` (none while the table was never written).
    pub(super) fn record<T: DeserializeOwned>(
        &self,
        table: Records,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        match txn.open_table(table) {
            Ok(t) => read(&t, key),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Up to `limit` records of `table` in key order, from after `after` (a page).
    pub(super) fn records_after<T: DeserializeOwned>(
        &self,
        table: Records,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in t
            .range::<&str>((from, std::ops::Bound::Unbounded))
            .map_err(unavailable)?
            .take(limit)
        {
            let (k, v) = row.map_err(unavailable)?;
            let rec = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("record {}: {e}", k.value())))?;
            out.push(rec);
        }
        Ok(out)
    }

    /// `rule` applied to the record under `key` of `table` in its own write transaction;
    /// true when it wrote.
    pub(super) async fn record_txn<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        table: Records,
        key: String,
        rule: impl FnOnce(Option<&T>) -> Option<T> + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.write_txn(move |txn| {
            let mut t = txn.open_table(table).map_err(unavailable)?;
            let current = read(&t, &key)?;
            let Some(rec) = rule(current.as_ref()) else {
                return Ok(false);
            };
            let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            t.insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(true)
        })
        .await
    }
}
