//! Staged media in S3 (`store::MediaStore`).

use std::time::Duration;

use async_trait::async_trait;

use super::sdk_err;
use crate::store::{MediaStore, StagedMedia, StoreError};

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
            crate::support::clock::unix_ms() - ms > crate::store::MEDIA_TTL.as_millis() as i64
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
