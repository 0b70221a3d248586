//! Wall-clock time behind a trait, so that tests can replay recorded pushes at the time
//! they were signed.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    fn unix_ms(&self) -> i64;
    fn unix_secs(&self) -> i64 {
        self.unix_ms().div_euclid(1000)
    }
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> i64 {
        unix_ms()
    }
}

/// A settable clock for tests and replays.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn at_secs(secs: i64) -> Self {
        FixedClock(AtomicI64::new(secs * 1000))
    }
}

impl Clock for FixedClock {
    fn unix_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
