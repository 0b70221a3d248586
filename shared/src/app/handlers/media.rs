//! `GET /media/{key}?expires=&sig=`: staged media on the embedded store, for desks
//! holding a signed link.

use tracing::warn;

use crate::app::Services;
use crate::http::{Request, Response, Route};

fn link_key(req: &Request) -> &str {
    req.path.split_once("/media/").map(|(_, k)| k).unwrap_or("")
}

/// What the head check proved: a link signed by this server, not expired. Only `check`
/// makes one.
pub(crate) struct Signed(());

/// The link's signature and expiry, before anything else.
pub(crate) fn check(
    svc: &Services,
    _: Option<&crate::app::accounts::Account>,
    _: &Route,
    req: &Request,
) -> Result<Signed, Response> {
    let expires = req.query("expires").and_then(|e| e.parse::<i64>().ok());
    let sig = req.query("sig").unwrap_or("");
    let now_secs = svc.clock.unix_secs();
    match expires {
        Some(exp) if svc.links.verify(link_key(req), exp, sig, now_secs) => Ok(Signed(())),
        _ => {
            warn!("staged media: bad or expired link");
            Err(Response::text(
                403,
                "this media link is invalid or has expired",
            ))
        }
    }
}

/// Serves a link `check` has passed, from the object's file as the client reads.
pub(crate) async fn serve(svc: &Services, _: Signed, req: &Request) -> Response {
    match svc.links.open(link_key(req)).await {
        Ok(Some(m)) => Response::media(m.content_type, m.body),
        Ok(None) => Response::text(404, "this media is no longer staged"),
        Err(e) => {
            warn!(error = %e, "staged media: store read failed");
            Response::text(503, "media store unavailable")
        }
    }
}
