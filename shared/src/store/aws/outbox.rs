//! The outbox's shelves on DynamoDB (`store::OutboxStore`): the sparse `outbox` index of
//! the inbox table, each method encoding its rule of `store::rules`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::inbox::{AwsStore, entry_from_item, entry_names};
use super::{OUTBOX_INDEX, n, refused_item, s, sdk_err};
use crate::store::{EntryState, InboxEntry, OutboxStore, Shelf, StoreError, Taken, rules};

#[async_trait]
impl OutboxStore for AwsStore {
    /// Rule `take`.
    async fn take(
        &self,
        key: &str,
        claim_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Taken, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .update_expression(TAKE_UPDATE)
            .condition_expression(TAKE_CONDITION)
            .set_expression_attribute_names(Some(entry_names(&[TAKE_UPDATE, TAKE_CONDITION])))
            .expression_attribute_values(":in_flight", s(EntryState::InFlight.as_str()))
            .expression_attribute_values(":outbox", s(&Shelf::Queued.partition(key)))
            .expression_attribute_values(":claim", s(claim_id))
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s(EntryState::Pending.as_str()))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":now_s", n(now_ms / 1000))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes() {
                Some(item) => Ok(Taken::Entry(entry_from_item(key, item)?)),
                None => Err(StoreError::Corrupt(format!("{key}: take returned no item"))),
            },
            Err(e) => {
                let old = refused_item("UpdateItem (take)", e)?;
                let old = old.map(|i| entry_from_item(key, &i)).transpose()?;
                // None: it changed between the write and this read: look again shortly.
                Ok(rules::take_refused(old.as_ref(), now_ms).unwrap_or(Taken::Busy))
            }
        }
    }

    /// Rule `listed`, in rule `due`'s order (the index's sort key).
    async fn outbox(
        &self,
        appid: &str,
        shelf: Shelf,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .query()
                .table_name(&self.dedup_table)
                .index_name(OUTBOX_INDEX)
                .key_condition_expression("#outbox = :v")
                .expression_attribute_names("#outbox", "outbox")
                .expression_attribute_values(":v", s(&format!("{appid}#{}", shelf.as_str())))
                .limit(limit.clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_err("Query (outbox index)", e))?;
            for item in page.items() {
                let key = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let e = entry_from_item(&key, item)?;
                // The index is eventually consistent: the entry may have moved on.
                if rules::listed(&e, shelf, now_ms) {
                    out.push(e);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() || out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Rule `revive`.
    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.update_if(
            "UpdateItem (revive)",
            key,
            "SET #state = :pending, #claim = :empty, #lease = :now_ms, #since = :now_ms, \
             #outbox = :outbox, #due = :now_ms",
            "(#state = :pending OR #state = :dead) AND #exp > :now_s",
            vec![
                (":pending", s(EntryState::Pending.as_str())),
                (":dead", s(EntryState::Dead.as_str())),
                (":empty", s("")),
                (":now_ms", n(now_ms)),
                (":now_s", n(now_ms / 1000)),
                (":outbox", s(&Shelf::Unqueued.partition(key))),
            ],
        )
        .await
    }

    /// Rule `mark_queued`.
    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        self.update_if(
            "UpdateItem (mark queued)",
            key,
            "SET #outbox = :queued",
            "#state = :pending AND #outbox = :unqueued",
            vec![
                (":queued", s(&Shelf::Queued.partition(key))),
                (":unqueued", s(&Shelf::Unqueued.partition(key))),
                (":pending", s(EntryState::Pending.as_str())),
            ],
        )
        .await
        .map(|_| ())
    }
}

const TAKE_UPDATE: &str = "SET #state = :pending, #claim = :claim, #lease = :lease, \
     #attempts = #attempts + :one, #outbox = :outbox, #due = :lease";
const TAKE_CONDITION: &str = "(#state = :pending OR (#state = :in_flight AND attribute_exists(#grp))) \
     AND #lease <= :now_ms AND #exp > :now_s";
