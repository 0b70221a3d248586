//! Retrying with exponential back-off and full jitter: the one place that decides how long
//! to wait and how often to try.

use std::future::Future;
use std::time::Duration;

/// Exponential backoff with full jitter: a random wait in [base·2^(n-1)/2, base·2^(n-1)].
pub(crate) fn backoff(attempt: u32, base: Duration) -> Duration {
    let top = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let half = top / 2;
    half + Duration::from_micros(rand::random_range(0..=half.as_micros().max(1) as u64))
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, fails with an error
/// `retryable` refuses, or `attempts` are used up, waiting `backoff(n, base)` between
/// attempts; `on_retry` hears of each failure that is tried again.
pub(crate) async fn retry<T, E, Fut>(
    attempts: u32,
    base: Duration,
    mut op: impl FnMut(u32) -> Fut,
    retryable: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(u32, &E),
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op(attempt).await {
            Err(e) if attempt < attempts && retryable(&e) => {
                on_retry(attempt, &e);
                tokio::time::sleep(backoff(attempt, base)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        for n in 1..10 {
            let d = backoff(n, base);
            let top = base * (1 << (n - 1).min(6));
            assert!(d >= top / 2 && d <= top, "{n}: {d:?}");
        }
    }

    #[tokio::test]
    async fn retries_only_what_is_retryable_and_only_so_often() {
        let mut seen = Vec::new();
        let r: Result<(), u32> = retry(
            3,
            Duration::from_millis(1),
            |n| async move { Err(n) },
            |_| true,
            |n, _| seen.push(n),
        )
        .await;
        assert_eq!((r, seen), (Err(3), vec![1, 2]));
        let r: Result<(), u32> = retry(
            3,
            Duration::from_millis(1),
            |n| async move { Err(n) },
            |e| *e != 1,
            |_, _| {},
        )
        .await;
        assert_eq!(r, Err(1));
        let r: Result<u32, u32> = retry(
            3,
            Duration::from_millis(1),
            |n| async move { if n < 2 { Err(n) } else { Ok(n) } },
            |_| true,
            |_, _| {},
        )
        .await;
        assert_eq!(r, Ok(2));
    }
}
