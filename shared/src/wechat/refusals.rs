//! How long to stop asking WeChat for an account's access_token after it refused one.
//! While WeChat refuses (quota used up, this server's IP not on the allow-list, a wrong
//! appid or secret, a busy system), every request used to make its own token call (30
//! requests → 103 calls), which spends the daily quota and slows every request. After a
//! failed fetch the account fails fast instead, with the same error, until:
//! - 45009 (the daily quota): the quota resets, at 00:00 China time;
//! - 40164, 89503 (IP allow-list), 40013, 40125, 40243 (appid or secret): about a minute,
//!   so that a fixed allow-list or secret takes effect soon (a config reload clears it);
//! - anything else (-1, 5xx, no answer), after the fetch's own retries: a few seconds.

use std::collections::HashMap;
use std::sync::Mutex;

use super::error::ApiError;

/// Fix-it-yourself refusals: asked again after this.
const OPERATOR_FIX_MS: i64 = 60_000;
/// Transient failures that survived the fetch's retries.
const TRANSIENT_MS: i64 = 5_000;
/// China Standard Time, where WeChat's daily quota resets at midnight.
const CHINA_OFFSET_MS: i64 = 8 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Until when (ms since the epoch) a refusal seen at `now_ms` holds.
pub(crate) fn refused_until(e: &ApiError, now_ms: i64) -> i64 {
    match e.errcode() {
        45009 => {
            let local = now_ms + CHINA_OFFSET_MS;
            local - local.rem_euclid(DAY_MS) + DAY_MS - CHINA_OFFSET_MS
        }
        40164 | 89503 | 40013 | 40125 | 40243 => now_ms + OPERATOR_FIX_MS,
        _ => now_ms + TRANSIENT_MS,
    }
}

/// The accounts WeChat refused lately, with the error to answer meanwhile. Keyed by
/// configured appids only, so it is bounded by the config.
#[derive(Default)]
pub(crate) struct Refusals {
    by_appid: Mutex<HashMap<String, (i64, ApiError)>>,
}

impl Refusals {
    /// The refusal in force for `appid` at `now_ms`, if any.
    pub(crate) fn current(&self, appid: &str, now_ms: i64) -> Option<ApiError> {
        let map = self.by_appid.lock().ok()?;
        map.get(appid)
            .filter(|(until, _)| *until > now_ms)
            .map(|(until, e)| {
                let wait = format!("not asked again for {} s", (until - now_ms + 999) / 1000);
                match e {
                    // WeChat's own answer stays itself (its errcode for the desk, its
                    // address for the operator's hint), marked as remembered.
                    ApiError::Wechat {
                        errcode,
                        errmsg,
                        body,
                    } => ApiError::Wechat {
                        errcode: *errcode,
                        errmsg: format!("{errmsg} ({wait})"),
                        body: body.clone(),
                    },
                    ApiError::Token(why) => ApiError::Token(format!("{why} ({wait})")),
                    other => ApiError::Token(format!("{other} ({wait})")),
                }
            })
    }

    pub(crate) fn record(&self, appid: &str, e: &ApiError, now_ms: i64) {
        if let Ok(mut map) = self.by_appid.lock() {
            map.insert(appid.to_owned(), (refused_until(e, now_ms), e.clone()));
        }
    }

    pub(crate) fn clear(&self, appid: &str) {
        if let Ok(mut map) = self.by_appid.lock()
            && !map.is_empty()
        {
            map.remove(appid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wechat(code: i64) -> ApiError {
        ApiError::from_body(code, serde_json::json!({"errcode": code, "errmsg": "x"}))
    }

    #[test]
    fn the_quota_waits_for_midnight_in_china() {
        // 2026-12-01 15:30 UTC is 23:30 in China: the quota resets in 30 minutes.
        let now = 1_796_139_000_000;
        assert_eq!(refused_until(&wechat(45009), now), now + 30 * 60 * 1000);
        // 16:00 UTC is midnight in China: the next reset is a day away.
        let midnight = 1_796_140_800_000;
        assert_eq!(refused_until(&wechat(45009), midnight), midnight + DAY_MS);
        assert_eq!(refused_until(&wechat(40164), now), now + 60_000);
        assert_eq!(refused_until(&wechat(-1), now), now + 5_000);
    }

    #[test]
    fn a_refusal_holds_until_its_time_and_names_the_error() {
        let r = Refusals::default();
        r.record("wx1", &wechat(40164), 1000);
        let e = r.current("wx1", 2000).unwrap();
        assert!(e.to_string().contains("40164"), "{e}");
        assert!(r.current("wx1", 61_000).is_none());
        assert!(r.current("wx2", 2000).is_none());
        r.clear("wx1");
        assert!(r.current("wx1", 2000).is_none());
    }
}
