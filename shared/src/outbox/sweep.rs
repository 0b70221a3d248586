//! The sweep: queues what nobody else would deliver. Run every minute (an EventBridge
//! schedule on AWS, a timer in the local server). It reads two shelves of each account
//! through the outbox index, never the whole table:
//! - pending entries whose job could not be queued (the queue was down when they were
//!   deferred);
//! - in-flight messages whose handler died before recording an outcome (a killed
//!   process, a Lambda frozen or timed out mid-delivery), once their lease has run out;
//! - queued entries overdue by `LOST_AFTER` (their job went to the dead-letter queue after
//!   SQS's 1000 receives, or was lost): queued once more. A copy of a job that still
//!   exists costs one receive; the worker's take settles it.

use std::time::Duration;

use tracing::{info, warn};

use crate::context::Context;
use crate::store::{Shelf, entry_ref};

/// Entries looked at per account and shelf in one pass; the next pass takes the rest.
const PER_PASS: usize = 500;
/// An in-flight entry is left to its handler (and WeChat's own retries) this long after
/// its lease ran out.
const GRACE: Duration = Duration::from_secs(5);
/// A queued entry this far past its next attempt has lost its job.
const LOST_AFTER: Duration = Duration::from_secs(900);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub queued: usize,
    pub failed: usize,
}

/// One pass over every account.
pub async fn sweep(ctx: &Context) -> Swept {
    let mut done = Swept::default();
    let now = ctx.clock.unix_ms();
    for app in &ctx.config.apps {
        for shelf in [Shelf::Unqueued, Shelf::InFlight, Shelf::Queued] {
            let entries = match ctx.inbox.outbox(&app.appid, shelf, PER_PASS, now).await {
                Ok(e) => e,
                Err(e) => {
                    warn!(appid = %app.appid, error = %e, "sweep: cannot read the outbox");
                    done.failed += 1;
                    continue;
                }
            };
            for e in entries {
                let wait = match shelf {
                    Shelf::InFlight => GRACE,
                    Shelf::Queued => LOST_AFTER,
                    _ => Duration::ZERO,
                };
                if e.lease_until_ms + wait.as_millis() as i64 > now {
                    continue;
                }
                if !super::enqueue(ctx, &e.key, &e.group, e.since_ms).await {
                    done.failed += 1;
                    continue;
                }
                if shelf == Shelf::Unqueued
                    && let Err(err) = ctx.inbox.mark_queued(&e.key).await
                {
                    // Queued twice at worst: the worker's take settles the duplicate.
                    warn!(entry = %entry_ref(&e.key), error = %err, "sweep: could not mark the entry queued");
                }
                info!(appid = %app.appid, entry = %entry_ref(&e.key), shelf = shelf.as_str(), "sweep: queued an entry nobody was delivering");
                done.queued += 1;
            }
        }
    }
    done
}
