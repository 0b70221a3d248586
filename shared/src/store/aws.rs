//! The AWS store: DynamoDB for the inbox (dedup) table. Correct across any number of Lambda
//! instances because every decision is a conditional write, never read-then-write.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{Claim, EntryState, InboxEntry, InboxStore, NewClaim, Outcome, StoreError, decide};

/// Attribute DynamoDB's TTL deletes on (lazily: reads check it too).
pub const TTL_ATTRIBUTE: &str = "expires_at";

#[derive(Clone)]
pub struct AwsStore {
    ddb: Client,
    dedup_table: String,
}

fn sdk_err<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
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

    /// Clients from the standard AWS environment (region, credentials, AWS_ENDPOINT_URL*).
    pub async fn from_env(dedup_table: &str) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&sdk), dedup_table)
    }

    pub fn dynamodb(&self) -> &Client {
        &self.ddb
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

/// Creates the inbox table as template.yaml declares it (for local runs and tests).
pub async fn create_dedup_table(ddb: &Client, table: &str) -> Result<(), StoreError> {
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
    })
}

#[async_trait]
impl InboxStore for AwsStore {
    async fn claim(&self, c: &NewClaim<'_>) -> Result<Claim, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(c.key))
            .update_expression(
                "SET #appid = :appid, #payload = :payload, #state = :in_flight, #claim = :claim, \
                 #lease = :lease, #exp = :exp, #attempts = if_not_exists(#attempts, :zero) + :one \
                 REMOVE #answer, #last_error",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR #exp <= :now_s OR #state = :undelivered \
                 OR (#state = :in_flight AND #lease < :now_ms)",
            )
            .expression_attribute_names("#appid", "appid")
            .expression_attribute_names("#payload", "payload")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#claim", "claim_id")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_names("#answer", "answer")
            .expression_attribute_names("#last_error", "last_error")
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
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
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
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                let old = match se.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                    _ => None,
                };
                let existing = match old {
                    Some(item) => Some(entry_from_item(c.key, &item)?),
                    None => self.read(c.key).await?,
                };
                // The condition failed, so the entry was live and owned a moment ago; if it
                // changed since, treating it as in flight never forwards twice.
                Ok(decide(existing.as_ref(), c.now_ms).unwrap_or(Claim::InFlight))
            }
            Err(e) => Err(sdk_err("UpdateItem (claim)", e)),
        }
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<bool, StoreError> {
        let (state, field, text) = match outcome {
            Outcome::Answered(a) => (EntryState::Answered, "answer", a),
            Outcome::Undelivered(r) => (EntryState::Undelivered, "last_error", r),
        };
        let result = self
            .ddb
            .update_item()
            .table_name(&self.dedup_table)
            .key("pk", s(key))
            .update_expression("SET #state = :state, #field = :text")
            .condition_expression("#claim = :claim AND #state = :in_flight")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#field", field)
            .expression_attribute_names("#claim", "claim_id")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":text", s(text))
            .expression_attribute_values(":claim", s(claim_id))
            .expression_attribute_values(":in_flight", s(EntryState::InFlight.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err("UpdateItem (finish)", e)),
        }
    }

    async fn get(&self, key: &str, now_ms: i64) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self
            .read(key)
            .await?
            .filter(|e| e.expires_at * 1000 > now_ms))
    }
}
