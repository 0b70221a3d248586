//! The outbox's workers, which deliver queued jobs (`outbox::run`) with each account's
//! desk: the `deliver-worker` Lambda (SQS event source mapping with partial batch
//! responses, and the sweep on its EventBridge schedule), and the loop the local server
//! runs over its queue — redb's, or the same SQS queue when the local server uses the
//! aws store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::app::Services;
use crate::app::live::Live;
use crate::outbox::{self, Settle, sweep};
use crate::store::queue::{Leased, job_from_body};

/// How often the local server sweeps (the schedule's period on AWS).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs one group's jobs in order; once one must wait, the rest go back behind it.
async fn run_group(svc: &Services, jobs: Vec<Leased>) -> Vec<(Leased, Settle)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut blocked = false;
    for leased in jobs {
        let settle = if blocked {
            Settle::Behind
        } else {
            match svc.lookup(leased.job.appid()).await {
                Ok(account) => {
                    let target = account.as_deref().map(|a| outbox::Target {
                        app: &a.app,
                        desk: a.desk.as_ref(),
                        closed: a.why_closed(),
                    });
                    outbox::run(svc, target, &leased.job).await
                }
                // Not knowing the account is not its absence: the job waits (its entry
                // untouched), and the group behind it.
                Err(_) => Settle::Later(Duration::from_secs(svc.config.delivery.first_retry_secs)),
            }
        };
        blocked |= settle != Settle::Done;
        out.push((leased, settle));
    }
    out
}

/// Splits jobs by group, keeping each group's order.
fn by_group(jobs: Vec<Leased>) -> BTreeMap<String, Vec<Leased>> {
    let mut groups: BTreeMap<String, Vec<Leased>> = BTreeMap::new();
    for j in jobs {
        groups.entry(j.job.group.clone()).or_default().push(j);
    }
    groups
}

/// Settles a job with the queue the local worker polls.
async fn settle(svc: &Services, leased: &Leased, settle: Settle) {
    let result = match settle {
        Settle::Done => svc.queue.done(leased).await,
        Settle::Later(delay) => svc.queue.later(leased, delay).await,
        Settle::Behind => svc.queue.release(leased).await,
    };
    if let Err(e) = result {
        // The job comes back when its lease (visibility timeout) runs out.
        warn!(error = %e, "could not settle a job with the queue");
    }
}

/// How often the local worker sweeps staged media (S3 has a lifecycle rule instead).
pub(crate) const MEDIA_SWEEP_EVERY: Duration = Duration::from_secs(600);

async fn sweep_media(svc: &Services) {
    match svc
        .media_store
        .sweep(svc.config.media.max_staged_bytes)
        .await
    {
        Ok(s) if s.expired + s.over_cap + s.strays > 0 => info!(
            expired = s.expired,
            over_cap = s.over_cap,
            strays = s.strays,
            kept = s.kept,
            kept_bytes = s.kept_bytes,
            "staged media sweep"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "staged media sweep failed; trying again later"),
    }
}

/// The local server's worker: polls the queue and runs up to `[delivery] concurrency`
/// groups at once, until `stop` resolves (jobs already running finish first).
pub async fn every(live: Arc<Live>, stop: impl std::future::Future<Output = ()>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        live.current().config.delivery.concurrency,
    ));
    let mut running = tokio::task::JoinSet::new();
    let mut sweep_tick = tokio::time::interval(SWEEP_EVERY);
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: a restart clears what aged while the server was down.
    let mut media_tick = tokio::time::interval(MEDIA_SWEEP_EVERY);
    media_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        while running.try_join_next().is_some() {}
        // The config in force (it may be reloaded).
        let svc = live.current();
        let free = limit.available_permits();
        tokio::select! {
            _ = &mut stop => break,
            _ = sweep_tick.tick() => {
                let swept = sweep::sweep(&svc).await;
                if swept.queued > 0 || swept.failed > 0 {
                    info!(queued = swept.queued, failed = swept.failed, "outbox sweep");
                }
                continue;
            }
            _ = media_tick.tick() => {
                sweep_media(&svc).await;
                continue;
            }
            received = async {
                if free == 0 {
                    // Wait for a running group to finish.
                    let _ = limit.clone().acquire_owned().await;
                    return Ok(Vec::new());
                }
                svc.queue.receive(free.min(10), Duration::from_secs(1)).await
            } => match received {
                Ok(jobs) => {
                    for (_, group) in by_group(jobs) {
                        let Ok(permit) = limit.clone().acquire_owned().await else {
                            return;
                        };
                        let svc = svc.clone();
                        running.spawn(async move {
                            for (leased, s) in run_group(&svc, group).await {
                                settle(&svc, &leased, s).await;
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    error!(error = %e, "outbox: cannot read the queue; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
}

/// Receives one batch (waiting up to `wait`), runs it and settles it with the queue;
/// returns how many jobs ran. For tools and tests that drive the worker step by step.
pub async fn run_once(svc: &Arc<Services>, wait: Duration) -> usize {
    let jobs = match svc.queue.receive(10, wait).await {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, "outbox: cannot read the queue");
            return 0;
        }
    };
    let n = jobs.len();
    for (_, group) in by_group(jobs) {
        for (leased, s) in run_group(svc, group).await {
            settle(svc, &leased, s).await;
        }
    }
    n
}

/// One SQS record of a Lambda event, as a leased job.
fn record_job(record: &Value) -> Result<(String, Leased), String> {
    let s = |k: &str| record.get(k).and_then(Value::as_str);
    let id = s("messageId").ok_or("record without messageId")?.to_owned();
    let receipt = s("receiptHandle").unwrap_or_default().to_owned();
    let job = job_from_body(s("body").unwrap_or("")).map_err(|e| e.to_string())?;
    Ok((id, Leased { job, receipt }))
}

/// The deliver-worker's answer to one SQS batch: the ids of the records to try again
/// (ReportBatchItemFailures). A job that waits is held back with ChangeMessageVisibility
/// for its back-off, and the group's later records with it, so the group keeps its order.
pub async fn handle_sqs_batch(svc: &Arc<Services>, records: &[Value]) -> Value {
    let mut failures = Vec::new();
    let mut jobs = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for r in records {
        match record_job(r) {
            Ok((id, leased)) => {
                ids.insert(leased.receipt.clone(), id);
                jobs.push(leased);
            }
            Err(e) => {
                // Tried again until maxReceiveCount, then kept in the dead-letter queue.
                error!(error = %e, "queue record is not a job");
                if let Some(id) = r.get("messageId").and_then(Value::as_str) {
                    failures.push(id.to_owned());
                }
            }
        }
    }
    let mut running = tokio::task::JoinSet::new();
    for group in by_group(jobs).into_values() {
        let svc = svc.clone();
        running.spawn(async move { run_group(&svc, group).await });
    }
    let mut results = Vec::new();
    while let Some(done) = running.join_next().await {
        match done {
            Ok(settled) => results.extend(settled),
            Err(e) => {
                // Which jobs it held is unknown: try the whole batch again (a job whose
                // entry is settled is dropped by its take) rather than let SQS delete it.
                error!(error = %e, "a delivery task failed; the batch is tried again");
                return batch_failures(
                    records
                        .iter()
                        .filter_map(|r| r.get("messageId").and_then(Value::as_str)),
                );
            }
        }
    }
    // Each group's head first: its followers go back only once it is held back.
    for (leased, s) in results {
        let held = match s {
            Settle::Done => continue,
            Settle::Later(delay) => svc.queue.later(&leased, delay).await,
            Settle::Behind => svc.queue.release(&leased).await,
        };
        if let Err(e) = held {
            warn!(error = %e, "could not hold the job back; it returns after the queue's visibility timeout");
        }
        if let Some(id) = ids.get(&leased.receipt) {
            failures.push(id.clone());
        }
    }
    batch_failures(failures.iter().map(String::as_str))
}

/// A partial batch response: the records SQS is to deliver again.
fn batch_failures<'a>(ids: impl Iterator<Item = &'a str>) -> Value {
    let items: Vec<Value> = ids.map(|id| json!({ "itemIdentifier": id })).collect();
    json!({ "batchItemFailures": items })
}

/// The `deliver-worker` function's main: an SQS batch is delivered; any other event (the
/// EventBridge schedule) runs the sweep.
pub(crate) async fn run_lambda() -> Result<(), lambda_http::Error> {
    crate::app::lambda::run_events(|svc, event| async move {
        Ok(match event.get("Records").and_then(Value::as_array) {
            Some(records) => handle_sqs_batch(&svc, records).await,
            None => {
                let swept = sweep::sweep(&svc).await;
                info!(queued = swept.queued, failed = swept.failed, "outbox sweep");
                json!({ "queued": swept.queued, "failed": swept.failed })
            }
        })
    })
    .await
}
