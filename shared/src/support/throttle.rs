//! Log lines for refused requests, at most one per second per (route, reason): every
//! refusal used to log a line (2,000 refusals in 0.03 s wrote 340 KB), so a flood of
//! garbage filled the disk and buried what mattered. The line that is written says how
//! many like it were left out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(1);
/// Reasons are few and fixed, but some carry a parser's message: past this many keys,
/// every reason of a route shares one.
const MAX_KEYS: usize = 512;
/// A reason is keyed by its start only.
const KEY_REASON_LEN: usize = 48;

struct Seen {
    last: Instant,
    suppressed: u64,
}

static SEEN: Mutex<Option<HashMap<(&'static str, String), Seen>>> = Mutex::new(None);

/// Whether a refusal of `route` for `reason` should be logged now: Some(how many were
/// left out since the last line), or None to stay quiet.
pub(crate) fn log_refusal(route: &'static str, reason: &str) -> Option<u64> {
    let mut guard = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashMap::new);
    let mut key = (
        route,
        reason.chars().take(KEY_REASON_LEN).collect::<String>(),
    );
    if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
        key.1 = String::new();
    }
    let now = Instant::now();
    match seen.get_mut(&key) {
        Some(s) if now.duration_since(s.last) < EVERY => {
            s.suppressed += 1;
            None
        }
        Some(s) => {
            s.last = now;
            Some(std::mem::take(&mut s.suppressed))
        }
        None => {
            if seen.len() >= MAX_KEYS {
                // Every key is busy: forget the quiet ones.
                seen.retain(|_, s| now.duration_since(s.last) < EVERY);
            }
            seen.insert(
                key,
                Seen {
                    last: now,
                    suppressed: 0,
                },
            );
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_a_second_per_route_and_reason() {
        let route = "throttle-test";
        assert_eq!(super::log_refusal(route, "bad signature"), Some(0));
        for _ in 0..1999 {
            assert_eq!(super::log_refusal(route, "bad signature"), None);
        }
        assert_eq!(super::log_refusal(route, "another reason"), Some(0));
        std::thread::sleep(super::EVERY);
        assert_eq!(super::log_refusal(route, "bad signature"), Some(1999));
    }
}
