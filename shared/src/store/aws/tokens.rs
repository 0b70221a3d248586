//! The access_token authority on DynamoDB: one conditional UpdateItem per rule of
//! `store::rules` (`token_lease`, `token_replace`, `token_release`, `token_invalidate`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{is_condition_failed, n, s, sdk_err};
use crate::store::{StoreError, Ticket, TokenRecord, TokenStore, ticket_key};

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
            ("#ticket", "ticket"),
            ("#created", "created_at"),
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

    /// Rule `token_lease`.
    async fn try_lease(
        &self,
        appid: &str,
        owner: &str,
        seen_version: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        // Rule `token_lease`: no record is a record at version 0.
        let v = i64::try_from(seen_version).map_err(|_| StoreError::Corrupt("version".into()))?;
        let condition = if seen_version == 0 {
            "attribute_not_exists(pk) OR (#lease < :now AND #version = :seen)"
        } else {
            "#lease < :now AND #version = :seen"
        };
        let item = self
            .update(
                "UpdateItem (token lease)",
                appid,
                "SET #owner = :me, #lease = :until, #version = if_not_exists(#version, :zero), \
                 #token = if_not_exists(#token, :empty), #exp = if_not_exists(#exp, :zero)",
                condition,
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

    /// Rule `token_replace`.
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

    /// Rule `token_release`.
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

    /// Rule `token_invalidate`.
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

    /// Rule `ticket_put`.
    async fn put_ticket(&self, component_appid: &str, ticket: &Ticket) -> Result<bool, StoreError> {
        Ok(self
            .update(
                "UpdateItem (ticket)",
                &ticket_key(component_appid),
                "SET #ticket = :ticket, #created = :created",
                "attribute_not_exists(pk) OR #created < :created",
                &[
                    (":ticket", s(&ticket.ticket)),
                    (":created", n(ticket.created_at)),
                ],
            )
            .await?
            .is_some())
    }

    async fn ticket(&self, component_appid: &str) -> Result<Option<Ticket>, StoreError> {
        let key = ticket_key(component_appid);
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem (ticket)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let ticket = item.get("ticket").and_then(|v| v.as_s().ok()).cloned();
        let created = item
            .get("created_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        match (ticket, created) {
            (Some(ticket), Some(created_at)) => Ok(Some(Ticket { ticket, created_at })),
            _ => Err(StoreError::Corrupt(format!(
                "{key}: no ticket or created_at"
            ))),
        }
    }
}
