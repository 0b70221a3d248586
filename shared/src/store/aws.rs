//! The AWS stores: DynamoDB for the inbox (dedup) and tokens tables, S3 for media. Correct across any number of Lambda
//! instances because every decision is a conditional write, never read-then-write.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::{
    Claim, EntryState, InboxEntry, InboxStore, MediaStore, NewClaim, Outcome, Shelf, StagedMedia,
    StateSwap, StoreError, Taken, TokenRecord, TokenStore, decide, decide_take,
};

/// Attribute DynamoDB's TTL deletes on (lazily: reads check it too).
pub(crate) const TTL_ATTRIBUTE: &str = "expires_at";
/// The sparse global secondary index of the outbox: partition `outbox` =
/// `{appid}#{shelf}` (see `Shelf`), sort `due` (ms). Only entries on a shelf carry the two
/// attributes, so the index holds the outbox and nothing else.
pub const OUTBOX_INDEX: &str = "outbox";

/// The AWS SDK's config loader with our HTTPS client: rustls on ring, as everywhere else
/// (Cargo.toml says why). The SDK crates are built without their own default client, so a
/// config loaded any other way has none and every call would fail.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}

#[derive(Clone)]
pub struct AwsStore {
    ddb: Client,
    dedup_table: String,
}

/// An AWS call's failure as the store's (every SDK crate shares this error type).
pub(crate) fn sdk_err<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> StoreError {
    // DisplayErrorContext gives the service's own message, not just "service error".
    StoreError::Unavailable(format!(
        "{what}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
    ))
}

impl AwsStore {
    pub fn new(ddb: Client, dedup_table: impl Into<String>) -> Self {
        Self {
            ddb,
            dedup_table: dedup_table.into(),
        }
    }

    /// One conditional UpdateItem on an entry: false when the condition failed.
    async fn update_if(
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

    async fn read(&self, key: &str) -> Result<Option<InboxEntry>, StoreError> {
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

/// Creates the inbox table as template.yaml declares it, with its outbox index (for
/// local runs and tests).
pub async fn create_dedup_table(ddb: &Client, table: &str) -> Result<(), StoreError> {
    let bad = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(e.to_string());
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .map_err(bad)
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .map_err(bad)
    };
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("outbox", ScalarAttributeType::S)?)
        .attribute_definitions(attr("due", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(OUTBOX_INDEX)
                .key_schema(key("outbox", KeyType::Hash)?)
                .key_schema(key("due", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(bad)?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("CreateTable", e))?;
    enable_ttl(ddb, table).await
}

/// Creates the tokens table as template.yaml declares it (for local runs and tests).
pub async fn create_tokens_table(ddb: &Client, table: &str) -> Result<(), StoreError> {
    create_table(ddb, table).await
}

/// A table keyed by the string `pk`, billed per request.
async fn create_table(ddb: &Client, table: &str) -> Result<(), StoreError> {
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("CreateTable", e))?;
    Ok(())
}

async fn enable_ttl(ddb: &Client, table: &str) -> Result<(), StoreError> {
    ddb.update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("UpdateTimeToLive", e))?;
    Ok(())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The `#name` placeholders the expressions use, of every attribute of an inbox entry
/// (DynamoDB refuses a placeholder no expression uses).
fn entry_names(exprs: &[&str]) -> HashMap<String, String> {
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

fn entry_from_item(
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
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        // A message is listed in the outbox index while in flight (see NewClaim::group).
        let update = if c.group.is_empty() {
            "SET #appid = :appid, #payload = :payload, #state = :in_flight, #claim = :claim, \
             #lease = :lease, #exp = :exp, #attempts = if_not_exists(#attempts, :zero) + :one, \
             #since = :now_ms REMOVE #answer, #last_error, #grp, #outbox, #due"
        } else {
            "SET #appid = :appid, #payload = :payload, #state = :in_flight, #claim = :claim, \
             #lease = :lease, #exp = :exp, #attempts = if_not_exists(#attempts, :zero) + :one, \
             #since = :now_ms, #grp = :grp, #outbox = :outbox, #due = :lease \
             REMOVE #answer, #last_error"
        };
        let condition = "attribute_not_exists(pk) OR #exp <= :now_s OR #state = :undelivered \
                 OR (#state = :in_flight AND #lease < :now_ms)";
        let result = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(c.key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(entry_names(&[update, condition])))
            .expression_attribute_values(":appid", s(c.appid))
            .expression_attribute_values(":payload", s(c.payload))
            .expression_attribute_values(":in_flight", s(EntryState::InFlight.as_str()))
            .expression_attribute_values(":undelivered", s(EntryState::Undelivered.as_str()))
            .expression_attribute_values(":claim", s(c.claim_id))
            .expression_attribute_values(":lease", n(c.lease_until_ms))
            .expression_attribute_values(":exp", n(c.expires_at))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now_s", n(c.now_ms / 1000))
            .expression_attribute_values(":now_ms", n(c.now_ms))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let result = claim_values(c)
            .into_iter()
            .fold(result, |r, (k, v)| r.expression_attribute_values(k, v))
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempt = out
                    .attributes()
                    .and_then(|a| a.get("attempts"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Ok(Claim::Won {
                    claim_id: c.claim_id.to_owned(),
                    attempt,
                })
            }
            Err(e) => {
                let old = refused_item("UpdateItem (claim)", e)?;
                let existing = match old {
                    Some(item) => Some(entry_from_item(c.key, &item)?),
                    None => self.read(c.key).await?,
                };
                // The condition failed, so the entry was live and owned a moment ago; if it
                // changed since, treating it as in flight never forwards twice.
                Ok(decide(existing.as_ref(), c.now_ms).unwrap_or(Claim::InFlight))
            }
        }
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError> {
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

    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self
            .read(key)
            .await?
            .filter(|e| e.expires_at * 1000 > now_ms))
    }

    async fn put_state(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.state_update(key, appid, value, expires_at, None)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem", e))?;
        Ok(())
    }

    async fn put_first(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let written = self
            .state_update(key, appid, value, expires_at, Some(now_ms / 1000))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match written {
            Ok(_) => Ok(value.to_owned()),
            Err(e) => Ok(refused_item("UpdateItem (put_first)", e)?
                .and_then(|old| old.get("answer").and_then(|v| v.as_s().ok()).cloned())
                .unwrap_or_default()),
        }
    }

    async fn swap_state(&self, swap: &StateSwap<'_>) -> Result<bool, StoreError> {
        let now_s = n(swap.now_ms / 1000);
        let req = self.state_update(swap.key, swap.appid, swap.value, swap.expires_at, None);
        let req = match swap.expected {
            None => req
                .condition_expression("attribute_not_exists(pk) OR #exp <= :now_s")
                .expression_attribute_values(":now_s", now_s),
            Some(expected) => req
                .condition_expression("#answer = :expected AND #exp > :now_s")
                .expression_attribute_values(":expected", s(expected))
                .expression_attribute_values(":now_s", now_s),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => refused_item("UpdateItem (swap_state)", e).map(|_| false),
        }
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

    async fn remove_if(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let result = self
            .ddb
            .delete_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .condition_expression("#answer = :value")
            .expression_attribute_names("#answer", "answer")
            .expression_attribute_values(":value", s(value))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_err("DeleteItem (conditional)", e)),
        }
    }

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
                Ok(match decide_take(old.as_ref(), now_ms) {
                    // It changed between the write and this read: look again shortly.
                    Taken::Entry(_) => Taken::Busy,
                    other => other,
                })
            }
        }
    }

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
                if Shelf::of(&e) == Some(shelf) && e.expires_at * 1000 > now_ms {
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

/// The claim's values that only a message's claim has.
fn claim_values(c: &NewClaim<'_>) -> HashMap<String, AttributeValue> {
    let mut v = HashMap::new();
    if !c.group.is_empty() {
        v.insert(":grp".to_owned(), s(c.group));
        v.insert(":outbox".to_owned(), s(&Shelf::InFlight.partition(c.key)));
    }
    v
}

impl AwsStore {
    /// The UpdateItem writing a piece of state; with `free_at` (Unix seconds), only where
    /// no item lives or the one there has expired.
    fn state_update(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        free_at: Option<i64>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let update = "SET #appid = :appid, #payload = :empty, #state = :answered, #claim = :empty, \
                 #lease = :zero, #exp = :exp, #attempts = :zero, #answer = :value \
                 REMOVE #last_error";
        let req = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .update_expression(update)
            .set_expression_attribute_names(Some(entry_names(&[update])))
            .expression_attribute_values(":appid", s(appid))
            .expression_attribute_values(":empty", s(""))
            .expression_attribute_values(":answered", s(EntryState::Answered.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":exp", n(expires_at))
            .expression_attribute_values(":value", s(value));
        match free_at {
            Some(now_s) => req
                .condition_expression("attribute_not_exists(pk) OR #exp <= :now_s")
                .expression_attribute_values(":now_s", n(now_s)),
            None => req,
        }
    }
}

/// An UpdateItem whose condition failed: the item as it was (when the request asked for
/// `ReturnValuesOnConditionCheckFailure::AllOld`; None if there was none). Any other
/// failure is the store's error, named by `what`.
fn refused_item<R: std::fmt::Debug>(
    what: &str,
    e: SdkError<UpdateItemError, R>,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    match e {
        SdkError::ServiceError(se)
            if matches!(
                se.err(),
                UpdateItemError::ConditionalCheckFailedException(_)
            ) =>
        {
            match se.into_err() {
                UpdateItemError::ConditionalCheckFailedException(c) => Ok(c.item),
                _ => Ok(None),
            }
        }
        e => Err(sdk_err(what, e)),
    }
}

fn is_condition_failed(e: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> bool {
    matches!(e, SdkError::ServiceError(se) if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)))
}

/// access_tokens in their own DynamoDB table, one item per appid.
#[derive(Clone)]
pub struct AwsTokens {
    ddb: Client,
    table: String,
}

impl AwsTokens {
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
        }
    }

    /// A conditional update; `Ok(None)` when the condition failed.
    async fn update(
        &self,
        what: &str,
        appid: &str,
        set: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(appid))
            .update_expression(set)
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew);
        for (name, attr) in [
            ("#token", "token"),
            ("#exp", "expires_at_ms"),
            ("#version", "version"),
            ("#owner", "lease_owner"),
            ("#lease", "lease_until"),
        ] {
            if set.contains(name) || condition.contains(name) {
                req = req.expression_attribute_names(name, attr);
            }
        }
        for (k, v) in values {
            req = req.expression_attribute_values(*k, v.clone());
        }
        match req.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(sdk_err(what, e)),
        }
    }
}

fn token_from_item(
    appid: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<TokenRecord, StoreError> {
    let num = |k: &str| -> Result<i64, StoreError> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("token {appid}: bad {k}")))
    };
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    Ok(TokenRecord {
        token: text("token"),
        expires_at_ms: num("expires_at_ms")?,
        version: u64::try_from(num("version")?)
            .map_err(|_| StoreError::Corrupt(format!("token {appid}: bad version")))?,
        lease_owner: text("lease_owner"),
        lease_until_ms: num("lease_until")?,
    })
}

#[async_trait]
impl TokenStore for AwsTokens {
    async fn get(&self, appid: &str) -> Result<Option<TokenRecord>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(appid))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem (token)", e))?;
        out.item().map(|i| token_from_item(appid, i)).transpose()
    }

    async fn try_lease(
        &self,
        appid: &str,
        owner: &str,
        seen_version: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let v = i64::try_from(seen_version).map_err(|_| StoreError::Corrupt("version".into()))?;
        let item = self
            .update(
                "UpdateItem (token lease)",
                appid,
                "SET #owner = :me, #lease = :until, #version = if_not_exists(#version, :zero), \
                 #token = if_not_exists(#token, :empty), #exp = if_not_exists(#exp, :zero)",
                "attribute_not_exists(pk) OR (#lease < :now AND #version = :seen)",
                &[
                    (":me", s(owner)),
                    (":until", n(until_ms)),
                    (":now", n(now_ms)),
                    (":seen", n(v)),
                    (":zero", n(0)),
                    (":empty", s("")),
                ],
            )
            .await?;
        Ok(item.is_some())
    }

    async fn replace(
        &self,
        appid: &str,
        owner: &str,
        version: u64,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let v = i64::try_from(version).map_err(|_| StoreError::Corrupt("version".into()))?;
        Ok(self
            .update(
                "UpdateItem (token replace)",
                appid,
                "SET #token = :token, #exp = :exp, #version = :next, #owner = :empty, #lease = :zero",
                "#version = :v AND #owner = :me",
                &[
                    (":token", s(token)),
                    (":exp", n(expires_at_ms)),
                    (":next", n(v + 1)),
                    (":v", n(v)),
                    (":me", s(owner)),
                    (":empty", s("")),
                    (":zero", n(0)),
                ],
            )
            .await?
            .is_some())
    }

    async fn release(&self, appid: &str, owner: &str) -> Result<(), StoreError> {
        self.update(
            "UpdateItem (token release)",
            appid,
            "SET #owner = :empty, #lease = :zero",
            "#owner = :me",
            &[(":me", s(owner)), (":empty", s("")), (":zero", n(0))],
        )
        .await?;
        Ok(())
    }

    async fn invalidate(&self, appid: &str, token: &str) -> Result<bool, StoreError> {
        Ok(self
            .update(
                "UpdateItem (token invalidate)",
                appid,
                "SET #exp = :zero",
                "#token = :token AND #exp > :zero",
                &[(":token", s(token)), (":zero", n(0))],
            )
            .await?
            .is_some())
    }
}

/// Staged media in an S3 bucket. The bucket's lifecycle rule deletes objects after three
/// days; reads check the age too, because lifecycle deletion is lazy.
#[derive(Clone)]
pub struct S3Media {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Media {
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }
}

fn too_old(last_modified: Option<&aws_sdk_s3::primitives::DateTime>) -> bool {
    last_modified
        .and_then(|t| t.to_millis().ok())
        .is_some_and(|ms| {
            crate::support::clock::unix_ms() - ms > super::MEDIA_TTL.as_millis() as i64
        })
}

/// Non-ASCII file names travel percent-encoded in S3 metadata (which is ASCII-only).
const FILENAME_META: &str = "filename";

#[async_trait]
impl MediaStore for S3Media {
    async fn put(&self, key: &str, media: &StagedMedia) -> Result<(), StoreError> {
        let filename: String = form_urlencoded::byte_serialize(media.filename.as_bytes()).collect();
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&media.content_type)
            .metadata(FILENAME_META, filename)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                media.bytes.clone(),
            ))
            .send()
            .await
            .map_err(|e| sdk_err("PutObject", e))?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers 204 for a key that is not there.
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_err("DeleteObject", e))
    }

    async fn get(&self, key: &str) -> Result<Option<StagedMedia>, StoreError> {
        use aws_sdk_s3::operation::get_object::GetObjectError;
        let out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(aws_sdk_s3::error::SdkError::ServiceError(se))
                if matches!(se.err(), GetObjectError::NoSuchKey(_)) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(sdk_err("GetObject", e)),
        };
        if too_old(out.last_modified()) {
            return Ok(None);
        }
        let content_type = out
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let filename = out
            .metadata()
            .and_then(|m| m.get(FILENAME_META))
            .map(|f| {
                form_urlencoded::parse(format!("f={f}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("GetObject body: {e}")))?
            .into_bytes();
        Ok(Some(StagedMedia {
            bytes,
            content_type,
            filename,
        }))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) if too_old(o.last_modified()) => Ok(None),
            Ok(o) => Ok(o.content_length().and_then(|l| u64::try_from(l).ok())),
            Err(aws_sdk_s3::error::SdkError::ServiceError(se))
                if matches!(se.err(), HeadObjectError::NotFound(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_err("HeadObject", e)),
        }
    }

    async fn presign(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Unavailable(format!("presign: {e}")))?;
        let req = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| sdk_err("presign GetObject", e))?;
        Ok(Some(req.uri().to_owned()))
    }
}
