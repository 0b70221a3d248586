//! The account registry on DynamoDB: one item per authorizer (`authorizer#{appid}`), each
//! method one conditional write encoding its rule of `store::rules`; and the install's data
//! key as a KMS envelope (the `datakey` item holds the key encrypted by the KMS key; it is
//! decrypted once per process, so opening any number of accounts costs one KMS call).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use tokio::sync::OnceCell;

use super::{is_condition_failed, n, s, sdk_err};
use crate::store::{Authorizer, RegistryStore, Standing, StoreError};
use crate::support::seal::Sealer;

const DATA_KEY_ITEM: &str = "datakey";

pub struct AwsRegistry {
    ddb: Client,
    table: String,
    /// The KMS client and key that wrap the data key; None: nothing can be sealed.
    kms: Option<(aws_sdk_kms::Client, String)>,
    sealer: OnceCell<Sealer>,
}

impl AwsRegistry {
    pub fn new(
        ddb: Client,
        table: impl Into<String>,
        kms: Option<(aws_sdk_kms::Client, String)>,
    ) -> Self {
        Self {
            ddb,
            table: table.into(),
            kms,
            sealer: OnceCell::new(),
        }
    }

    async fn item(&self, pk: &str) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem (registry)", e))?;
        Ok(out.item)
    }

    /// The data key: the stored envelope opened by KMS, or a new one made and stored
    /// (the first process to store it wins; the others open the winner's).
    async fn load_sealer(&self) -> Result<Sealer, StoreError> {
        let Some((kms, key_id)) = &self.kms else {
            return Err(StoreError::Unavailable(
                "store.kms_key (WXDESK_KMS_KEY) is not set: refresh tokens cannot be sealed".into(),
            ));
        };
        for _ in 0..2 {
            if let Some(item) = self.item(DATA_KEY_ITEM).await? {
                let blob = item
                    .get("blob")
                    .and_then(|v| v.as_b().ok())
                    .ok_or_else(|| StoreError::Corrupt("datakey: no blob".into()))?;
                let out = kms
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(Blob::new(blob.as_ref()))
                    .send()
                    .await
                    .map_err(|e| sdk_err("KMS Decrypt (data key)", e))?;
                return sealer_of(out.plaintext().map(|b| b.as_ref()));
            }
            let made = kms
                .generate_data_key()
                .key_id(key_id)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await
                .map_err(|e| sdk_err("KMS GenerateDataKey", e))?;
            let blob = made
                .ciphertext_blob()
                .ok_or_else(|| StoreError::Unavailable("KMS gave no ciphertext".into()))?;
            let put = self
                .ddb
                .put_item()
                .table_name(&self.table)
                .item("pk", s(DATA_KEY_ITEM))
                .item(
                    "blob",
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(blob.as_ref())),
                )
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match put {
                Ok(_) => return sealer_of(made.plaintext().map(|b| b.as_ref())),
                Err(e) if put_condition_failed(&e) => continue,
                Err(e) => return Err(sdk_err("PutItem (data key)", e)),
            }
        }
        Err(StoreError::Unavailable(
            "the data key could not be stored".into(),
        ))
    }
}

impl AwsRegistry {
    /// A stored authorizer's `attribute` set to `value` at `at_ms`, unless it changed later
    /// (the rules `authorizer_standing` and `authorizer_settings` as one conditional write);
    /// false when there is none or it changed later.
    async fn change(
        &self,
        appid: &str,
        attribute: &str,
        value: AttributeValue,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk(appid)))
            .update_expression("SET #attr = :value, changed_at = :at")
            .condition_expression("attribute_exists(pk) AND changed_at <= :at")
            .expression_attribute_names("#attr", attribute)
            .expression_attribute_values(":value", value)
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err("UpdateItem (authorizer)", e)),
        }
    }
}

fn put_condition_failed(
    e: &aws_sdk_dynamodb::error::SdkError<PutItemError, impl std::fmt::Debug>,
) -> bool {
    matches!(e, aws_sdk_dynamodb::error::SdkError::ServiceError(se)
        if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)))
}

fn sealer_of(plain: Option<&[u8]>) -> Result<Sealer, StoreError> {
    let key: [u8; 32] = plain
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("the data key is not 32 bytes".into()))?;
    Ok(Sealer::new(&key))
}

fn pk(appid: &str) -> String {
    format!("authorizer#{appid}")
}

/// The attributes an authorization writes (the settings are written only where there are
/// none yet: rule `authorizer_put` keeps stored ones).
fn put_values(a: &Authorizer) -> [(&'static str, AttributeValue); 6] {
    let perms = a
        .permissions
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>();
    [
        (":appid", s(&a.appid)),
        (":component", s(&a.component)),
        (":refresh", s(&a.sealed_refresh_token)),
        (":permissions", s(&perms.join(","))),
        (":standing", s(a.standing.as_str())),
        (":at", n(a.changed_at_ms)),
    ]
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Authorizer, StoreError> {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("authorizer: no {k}")))
    };
    let permissions = text("permissions")?
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| StoreError::Corrupt("authorizer: permissions".into()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Authorizer {
        appid: text("appid")?,
        component: text("component")?,
        sealed_refresh_token: text("sealed_refresh_token")?,
        permissions,
        sealed_settings: item
            .get("sealed_settings")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        standing: Standing::parse(&text("standing")?)
            .ok_or_else(|| StoreError::Corrupt("authorizer: standing".into()))?,
        changed_at_ms: item
            .get("changed_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("authorizer: changed_at".into()))?,
    })
}

#[async_trait]
impl RegistryStore for AwsRegistry {
    /// Rule `authorizer_put`: one conditional update, which keeps stored settings.
    async fn put_authorizer(&self, a: &Authorizer) -> Result<bool, StoreError> {
        // Every name aliased: several are DynamoDB reserved words (`permissions`).
        let mut update = "SET #appid = :appid, #component = :component, \
             #refresh = :refresh, #permissions = :permissions, \
             #standing = :standing, #at = :at"
            .to_owned();
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk(&a.appid)))
            .condition_expression("attribute_not_exists(pk) OR #at <= :at");
        for (k, v) in put_values(a) {
            req = req.expression_attribute_values(k, v);
        }
        for (alias, name) in [
            ("#appid", "appid"),
            ("#component", "component"),
            ("#refresh", "sealed_refresh_token"),
            ("#permissions", "permissions"),
            ("#standing", "standing"),
            ("#at", "changed_at"),
        ] {
            req = req.expression_attribute_names(alias, name);
        }
        if let Some(settings) = &a.sealed_settings {
            update.push_str(", #settings = if_not_exists(#settings, :settings)");
            req = req
                .expression_attribute_names("#settings", "sealed_settings")
                .expression_attribute_values(":settings", s(settings));
        }
        match req.update_expression(update).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err("UpdateItem (authorizer)", e)),
        }
    }

    async fn authorizer(&self, appid: &str) -> Result<Option<Authorizer>, StoreError> {
        self.item(&pk(appid))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    /// Rule `authorizer_standing`.
    async fn set_standing(
        &self,
        appid: &str,
        standing: Standing,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.change(appid, "standing", s(standing.as_str()), at_ms)
            .await
    }

    /// Rule `authorizer_settings`.
    async fn set_settings(
        &self,
        appid: &str,
        sealed: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.change(appid, "sealed_settings", s(sealed), at_ms)
            .await
    }

    /// A Scan in the table's own order (not by appid): `after` is the last appid of the
    /// previous page, where the scan goes on.
    async fn authorizers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Authorizer>, StoreError> {
        let mut out = Vec::new();
        let mut start = after.map(|a| HashMap::from([("pk".to_owned(), s(&pk(a)))]));
        while out.len() < limit {
            let page = self
                .ddb
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", s("authorizer#"))
                .limit((limit - out.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_err("Scan (registry)", e))?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        Ok(out)
    }

    async fn sealer(&self) -> Result<Sealer, StoreError> {
        self.sealer
            .get_or_try_init(|| self.load_sealer())
            .await
            .cloned()
    }
}
