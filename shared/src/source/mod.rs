//! Inbound sources: requests from WeChat's side (a customer's message towards a desk, the
//! third-party platform's authorization events), and the signed-query check they share.

pub(crate) mod chatbot;
pub(crate) mod component;
pub(crate) mod wechat_push;

use crate::context::Context;
use crate::http::Request;
use crate::support::secret::Secret;
use crate::wechat::signature::{matches, push_signature};

/// The checks on a query WeChat signed, before any body is read: `signature`,
/// `timestamp` and `nonce` present, the timestamp within `[callback]
/// max_timestamp_skew_secs` of now, and the signature over `token`. The refusal's status
/// and reason otherwise (the same for an account's pushes and a platform's events).
pub(crate) fn signed_query(
    ctx: &Context,
    token: &Secret,
    req: &Request,
) -> Result<(), (u16, &'static str)> {
    let (Some(signature), Some(timestamp), Some(nonce)) = (
        req.query("signature"),
        req.query("timestamp"),
        req.query("nonce"),
    ) else {
        return Err((401, "missing signature, timestamp or nonce"));
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return Err((400, "timestamp is not a number"));
    };
    let skew = ctx.config.callback.max_timestamp_skew_secs;
    if skew > 0 && ctx.clock.unix_secs().abs_diff(ts) > skew {
        return Err((403, "timestamp too far from now (replayed or clock skew)"));
    }
    if !matches(&push_signature(token.expose(), timestamp, nonce), signature) {
        return Err((401, "signature mismatch"));
    }
    Ok(())
}
