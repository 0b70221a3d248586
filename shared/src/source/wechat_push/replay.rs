//! Plain-mode signatures bound to their bodies. In plain mode WeChat's `signature` covers
//! the token, timestamp and nonce, never the body: a captured query (a push's, or the URL
//! verification's) would carry any body for as long as its timestamp is fresh. So each
//! accepted signature is bound, for that window, to the SHA-256 of its body (a GET
//! verification's to no body at all); the same signature with another body is refused.
//! WeChat's retries repeat the body exactly, so they pass. One conditional write per
//! plain-mode request; safe-mode pushes pay nothing (`msg_signature` covers the body).

use std::time::Duration;

use tracing::warn;

use crate::config::AppConfig;
use crate::context::Context;
use crate::http::Request;

/// The binding's share of WeChat's 5 s.
const BIND_WITHIN: Duration = Duration::from_millis(1000);
/// What a URL verification's signature is bound to: no body can hash to it.
const NO_BODY: &str = "verification";

/// Whether `req`'s signature may carry its body: true for the first body seen with it
/// and for that same body again. A store that cannot answer lets the request through
/// (logged): losing WeChat's messages would cost more than the replay window.
pub(crate) async fn bind(ctx: &Context, app: &AppConfig, req: &Request) -> bool {
    let Some(signature) = req.query("signature") else {
        return false;
    };
    let ts = req
        .query("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(0);
    let value = if req.method == http::Method::GET {
        NO_BODY.to_owned()
    } else {
        crate::support::hex::sha256_hex(&req.body)
    };
    let skew = ctx.config.callback.max_timestamp_skew_secs;
    if skew == 0 {
        // The freshness check is off (replaying recorded samples, a test setting): there
        // is no window to bind for.
        return true;
    }
    let now_ms = ctx.clock.unix_ms();
    // The signature is usable while its timestamp is within the skew: bound that long.
    let until = ts.max(now_ms / 1000) + skew as i64 + 1;
    let key = crate::support::keys::key(&app.appid, crate::support::keys::Kind::Sig, &[&signature]);
    let bound = ctx.inbox.put_first(&key, &app.appid, &value, until, now_ms);
    match tokio::time::timeout(BIND_WITHIN, bound).await {
        Ok(Ok(held)) => held == value,
        Ok(Err(e)) => {
            warn!(appid = %app.appid, error = %e, "cannot bind the push's signature to its body; accepted unbound");
            true
        }
        Err(_) => {
            warn!(appid = %app.appid, "binding the push's signature timed out; accepted unbound");
            true
        }
    }
}
