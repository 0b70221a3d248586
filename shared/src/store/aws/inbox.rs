//! The inbox on DynamoDB (`store::InboxStore`): one item per entry, keyed `pk`, and the
//! entry's codec, shared with the outbox and state methods of the same table.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{TTL_ATTRIBUTE, is_condition_failed, n, refused_item, s, sdk_err};
use crate::store::{
    Claim, EntryState, InboxEntry, InboxStore, NewClaim, Outcome, Shelf, StoreError, rules,
};

#[derive(Clone)]
pub struct AwsStore {
    pub(super) ddb: Client,
    pub(super) dedup_table: String,
}

impl AwsStore {
    pub fn new(ddb: Client, dedup_table: impl Into<String>) -> Self {
        Self {
            ddb,
            dedup_table: dedup_table.into(),
        }
    }

    /// One conditional UpdateItem on an entry: false when the condition failed.
    pub(super) async fn update_if(
        &self,
        what: &str,
        key: &str,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(entry_names(&[update, condition])));
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err(what, e)),
        }
    }

    pub(super) async fn read(&self, key: &str) -> Result<Option<InboxEntry>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.dedup_table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        out.item().map(|i| entry_from_item(key, i)).transpose()
    }
}

/// The `#name` placeholders the expressions use, of every attribute of an inbox entry
/// (DynamoDB refuses a placeholder no expression uses).
pub(super) fn entry_names(exprs: &[&str]) -> HashMap<String, String> {
    [
        ("#appid", "appid"),
        ("#payload", "payload"),
        ("#state", "state"),
        ("#claim", "claim_id"),
        ("#lease", "lease_until"),
        ("#exp", TTL_ATTRIBUTE),
        ("#attempts", "attempts"),
        ("#answer", "answer"),
        ("#last_error", "last_error"),
        ("#grp", "grp"),
        ("#since", "since"),
        ("#outbox", "outbox"),
        ("#due", "due"),
    ]
    .into_iter()
    .filter(|(k, _)| {
        exprs.iter().any(|e| {
            e.match_indices(k).any(|(i, _)| {
                !e[i + k.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        })
    })
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub(super) fn entry_from_item(
    key: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<InboxEntry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("{key}: {what}"));
    let get_s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let get_n = |k: &str| -> Result<i64, StoreError> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| corrupt(&format!("missing number {k}")))?
            .parse()
            .map_err(|_| corrupt(&format!("bad number {k}")))
    };
    Ok(InboxEntry {
        key: key.to_owned(),
        appid: get_s("appid").unwrap_or_default(),
        payload: get_s("payload").unwrap_or_default(),
        state: get_s("state")
            .as_deref()
            .and_then(EntryState::parse)
            .ok_or_else(|| corrupt("bad state"))?,
        claim_id: get_s("claim_id").unwrap_or_default(),
        attempts: u32::try_from(get_n("attempts")?).map_err(|_| corrupt("bad attempts"))?,
        answer: get_s("answer"),
        last_error: get_s("last_error"),
        lease_until_ms: get_n("lease_until")?,
        expires_at: get_n(TTL_ATTRIBUTE)?,
        group: get_s("grp").unwrap_or_default(),
        since_ms: get_n("since").unwrap_or(0),
        queued: get_s("outbox").is_some_and(|o| o.ends_with(Shelf::Queued.as_str())),
    })
}

#[async_trait]
impl InboxStore for AwsStore {
    /// Rule `claim`, in at most two conditional writes: a key that is new or expired is
    /// won at attempt 1 (the common case, one write); a live entry that the rule lets a
    /// claim win (undelivered, or in flight with its lease run out) counts on from its
    /// attempts, conditioned on the state the first write's refusal showed.
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        let won = |attempt| Claim::Won {
            claim_id: c.claim_id.to_owned(),
            attempt,
        };
        let old = match self.claim_write(c, false).await? {
            Ok(attempt) => return Ok(won(attempt)),
            Err(old) => old,
        };
        if let Some(refused) = rules::claim_refused(old.as_ref(), c.now_ms) {
            return Ok(refused);
        }
        Ok(match self.claim_write(c, true).await? {
            Ok(attempt) => won(attempt),
            // It changed between the two writes: treating it as in flight never forwards
            // twice (WeChat retries).
            Err(old) => rules::claim_refused(old.as_ref(), c.now_ms).unwrap_or(Claim::InFlight),
        })
    }

    /// Rule `finish` (an empty claim id owns nothing, so it is refused before any write).
    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError> {
        if claim_id.is_empty() {
            return Ok(false);
        }
        let condition = "#claim = :claim AND (#state = :in_flight OR #state = :pending)";
        let mut values = vec![
            (":claim", s(claim_id)),
            (":empty", s("")),
            (":in_flight", s(EntryState::InFlight.as_str())),
            (":pending", s(EntryState::Pending.as_str())),
        ];
        let update = match outcome {
            Outcome::Answered(a) => {
                values.push((":state", s(EntryState::Answered.as_str())));
                values.push((":text", s(a)));
                // Rule `finish`: off every shelf.
                "SET #state = :state, #answer = :text, #claim = :empty REMOVE #outbox, #due"
                    .to_owned()
            }
            Outcome::Pending {
                error,
                due_ms,
                group,
                answer,
                expires_at,
                queued,
            } => {
                let shelf = if queued {
                    Shelf::Queued
                } else {
                    Shelf::Unqueued
                };
                let mut set = "SET #state = :pending, #last_error = :text, #claim = :empty, \
                     #lease = :due, #grp = :grp, #outbox = :outbox, #due = :due, #exp = :exp"
                    .to_owned();
                if let Some(a) = answer {
                    set.push_str(", #answer = :answer");
                    values.push((":answer", s(a)));
                }
                values.extend([
                    (":text", s(error)),
                    (":due", n(due_ms)),
                    (":grp", s(group)),
                    (":outbox", s(&shelf.partition(key))),
                    (":exp", n(expires_at)),
                ]);
                set
            }
            Outcome::Dead {
                why,
                expires_at,
                at_ms,
            } => {
                values.extend([
                    (":state", s(EntryState::Dead.as_str())),
                    (":text", s(why)),
                    (":outbox", s(&Shelf::Dead.partition(key))),
                    (":at", n(at_ms)),
                    (":exp", n(expires_at)),
                ]);
                // Rule `settle_dead`: the lease and the index's `due` both become the
                // death's time, as on the embedded store.
                "SET #state = :state, #last_error = :text, #claim = :empty, \
                 #outbox = :outbox, #due = :at, #lease = :at, #exp = :exp"
                    .to_owned()
            }
        };
        self.update_if("UpdateItem (finish)", key, &update, condition, values)
            .await
    }

    /// Rule `get`.
    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        Ok(rules::get(self.read(key).await?.as_ref(), now_ms))
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.ddb
            .delete_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem", e))?;
        Ok(())
    }
}

impl AwsStore {
    /// One claim write: over a free key (none, or expired), attempt 1; over a live entry
    /// the claim may win, one attempt more. `Err` holds the entry that refused it.
    async fn claim_write(
        &self,
        c: &NewClaim<'_>,
        over_live: bool,
    ) -> Result<Result<u32, Option<InboxEntry>>, StoreError> {
        let attempts = if over_live {
            "#attempts = #attempts + :one"
        } else {
            "#attempts = :one"
        };
        // A message is listed in the outbox index while in flight (see NewClaim::group).
        let update = if c.group.is_empty() {
            format!(
                "SET #appid = :appid, #payload = :payload, #state = :in_flight, #claim = :claim, \
                 #lease = :lease, #exp = :exp, {attempts}, #since = :now_ms \
                 REMOVE #answer, #last_error, #grp, #outbox, #due"
            )
        } else {
            format!(
                "SET #appid = :appid, #payload = :payload, #state = :in_flight, #claim = :claim, \
                 #lease = :lease, #exp = :exp, {attempts}, #since = :now_ms, #grp = :grp, \
                 #outbox = :outbox, #due = :lease REMOVE #answer, #last_error"
            )
        };
        let condition = if over_live {
            "#exp > :now_s AND (#state = :undelivered OR (#state = :in_flight AND #lease <= :now_ms))"
        } else {
            "attribute_not_exists(pk) OR #exp <= :now_s"
        };
        let mut values = claim_values(c);
        if over_live {
            values.insert(":undelivered".into(), s(EntryState::Undelivered.as_str()));
        }
        let result = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(c.key))
            .update_expression(&update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(entry_names(&[&update, condition])))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Ok(out
                .attributes()
                .and_then(|a| a.get("attempts"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1))),
            Err(e) => {
                let old = refused_item("UpdateItem (claim)", e)?;
                Ok(Err(old.map(|i| entry_from_item(c.key, &i)).transpose()?))
            }
        }
    }
}

/// The claim's expression values.
fn claim_values(c: &NewClaim<'_>) -> HashMap<String, AttributeValue> {
    let mut v: HashMap<String, AttributeValue> = [
        (":appid", s(c.appid)),
        (":payload", s(c.payload)),
        (":in_flight", s(EntryState::InFlight.as_str())),
        (":claim", s(c.claim_id)),
        (":lease", n(c.lease_until_ms)),
        (":exp", n(c.expires_at)),
        (":one", n(1)),
        (":now_s", n(c.now_ms / 1000)),
        (":now_ms", n(c.now_ms)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if !c.group.is_empty() {
        v.insert(":grp".to_owned(), s(c.group));
        v.insert(":outbox".to_owned(), s(&Shelf::InFlight.partition(c.key)));
    }
    v
}
