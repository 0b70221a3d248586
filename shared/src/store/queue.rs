//! The delivery queue: which pending inbox entries a worker should try, in each
//! customer's order. The entry stays the record of truth (state, attempts, errors, next
//! attempt); a job only points at it, so a job delivered twice, late or after the entry
//! settled does nothing (the worker's `take` is a conditional write).
//!
//! Two implementations: SQS FIFO (one message group per customer and direction, the
//! inbox key as deduplication id) and a table in the embedded store's redb file, which
//! keeps jobs across restarts and gives the same per-group order.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use super::aws::sdk_err;
use crate::support::hex::hex_lower;

/// One pending inbox entry to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The inbox key (`{appid}#...`).
    pub key: String,
    /// Jobs of one group run one at a time, in the order they were queued.
    pub group: String,
    /// The entry's `since_ms`: a replayed entry is a new job, not a duplicate of the old.
    #[serde(default)]
    pub generation: i64,
}

impl Job {
    pub fn appid(&self) -> &str {
        crate::support::keys::appid_of(&self.key)
    }
}

/// A job handed to a worker, with what the queue needs to settle it.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job: Job,
    pub receipt: String,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job; queueing one that is already queued is harmless.
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError>;
    /// Jobs to run now, waiting up to `wait` for one. A group's jobs come in order, and
    /// none while an earlier one of the group is leased or waiting for its retry.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, StoreError>;
    /// The job is settled: forget it.
    async fn done(&self, job: &Leased) -> Result<(), StoreError>;
    /// Run the job again after `delay`; its group waits behind it.
    async fn later(&self, job: &Leased, delay: Duration) -> Result<(), StoreError>;
    /// Give the job back at once, behind its group's earlier jobs (a follower of a job that
    /// must wait): it runs when they are settled.
    async fn release(&self, job: &Leased) -> Result<(), StoreError> {
        self.later(job, Duration::ZERO).await
    }
    /// Whether the queue answers (for `/readyz`).
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// SQS limits group and deduplication ids to 128 characters; openids stay out of them.
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex_lower(&h.finalize())
}

// ---------------------------------------------------------------------------------------
// SQS FIFO
// ---------------------------------------------------------------------------------------

pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }
}

/// An SQS message body as a job (the Lambda worker gets the same bodies in its event).
pub(crate) fn job_from_body(body: &str) -> Result<Job, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("queue message: {e}")))
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        let body = serde_json::to_string(job).map_err(unavailable)?;
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(&digest(&[&job.group])[..32])
            .message_deduplication_id(digest(&[&job.key, &job.generation.to_string()]))
            .send()
            .await
            .map_err(|e| sdk_err("SQS SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, StoreError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(|e| sdk_err("SQS ReceiveMessage", e))?;
        let mut jobs = Vec::new();
        for m in out.messages() {
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            match job_from_body(body) {
                Ok(job) => jobs.push(Leased {
                    job,
                    receipt: receipt.to_owned(),
                }),
                Err(e) => {
                    // Not ours to run: it goes to the dead-letter queue after its receives.
                    tracing::error!(error = %e, "queue message is not a job; left to the DLQ");
                }
            }
        }
        Ok(jobs)
    }

    async fn done(&self, job: &Leased) -> Result<(), StoreError> {
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&job.receipt)
            .send()
            .await
            .map_err(|e| sdk_err("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| sdk_err("SQS GetQueueAttributes", e))?;
        Ok(())
    }

    async fn later(&self, job: &Leased, delay: Duration) -> Result<(), StoreError> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&job.receipt)
            // SQS counts whole seconds, up to 12 hours.
            .visibility_timeout(delay.as_secs().clamp(1, 43_200) as i32)
            .send()
            .await
            .map_err(|e| sdk_err("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Visible again now: a FIFO queue hands out no job of a group while an earlier one
    /// is in flight, so the group's head (held back by `later`) still comes first.
    async fn release(&self, job: &Leased) -> Result<(), StoreError> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&job.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| sdk_err("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_name_their_account() {
        let job = Job {
            key: "wx1#msg#1#oA#2".into(),
            group: "wx1#in#oA".into(),
            generation: 0,
        };
        assert_eq!(job.appid(), "wx1");
        assert_eq!(
            job_from_body(&serde_json::to_string(&job).unwrap()).unwrap(),
            job
        );
        assert!(job_from_body("not json").is_err());
    }
}
