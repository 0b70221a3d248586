//! Conversation state on DynamoDB (`store::StateStore`): answered items of the inbox
//! table, each write one UpdateItem encoding its rule of `store::rules`.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::inbox::{AwsStore, entry_names};
use super::{n, refused_item, s, sdk_err};
use crate::store::{EntryState, StateStore, StateSwap, StoreError};

#[async_trait]
impl StateStore for AwsStore {
    /// Rule `state_entry`, unconditionally.
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

    /// Rule `put_first`.
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

    /// Rule `swap_state`.
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

    /// Rule `remove_if`.
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
                 REMOVE #last_error, #grp, #since, #outbox, #due";
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
