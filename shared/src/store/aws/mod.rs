//! The AWS stores: DynamoDB for the inbox (dedup) and tokens tables, S3 for media. Correct
//! across any number of Lambda instances because every decision is a conditional write,
//! never read-then-write. Each method's condition and update expressions encode the rule
//! of `store::rules` its doc names; the store contract test checks them against it.

mod inbox;
mod media;
mod outbox;
mod registry;
mod state;
mod tokens;

pub use inbox::AwsStore;
pub use media::S3Media;
pub use registry::AwsRegistry;
pub use tokens::AwsTokens;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::StoreError;

/// Attribute DynamoDB's TTL deletes on (lazily: reads check it too).
pub(crate) const TTL_ATTRIBUTE: &str = "expires_at";
/// The sparse global secondary index of the outbox: partition `outbox` =
/// `{appid}#{shelf}` (see `Shelf`), sort `due` (ms). Only entries on a shelf carry the two
/// attributes, so the index holds the outbox and nothing else.
pub(crate) const OUTBOX_INDEX: &str = "outbox";

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

/// Creates the registry table as template.yaml declares it (for local runs and tests).
pub async fn create_registry_table(ddb: &Client, table: &str) -> Result<(), StoreError> {
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

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An UpdateItem whose condition failed: the item as it was (when the request asked for
/// `ReturnValuesOnConditionCheckFailure::AllOld`; None if there was none). Any other
/// failure is the store's error, named by `what`.
pub(super) fn refused_item<R: std::fmt::Debug>(
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

pub(super) fn is_condition_failed(e: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> bool {
    matches!(e, SdkError::ServiceError(se) if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)))
}
