//! `GET /media/{key}?expires=&sig=`: staged media on the embedded store, for desks
//! holding a signed link.

use tracing::warn;

use crate::http::{Request, Response};
use crate::wechat::media::MediaLinks;

fn link_key(req: &Request) -> &str {
    req.path.split_once("/media/").map(|(_, k)| k).unwrap_or("")
}

/// The link's signature and expiry, before anything else.
pub(crate) fn authenticate(
    links: &MediaLinks,
    req: &Request,
    now_secs: i64,
) -> Result<(), Response> {
    let expires = req.query("expires").and_then(|e| e.parse::<i64>().ok());
    let sig = req.query("sig").unwrap_or("");
    match expires {
        Some(exp) if links.verify(link_key(req), exp, sig, now_secs) => Ok(()),
        _ => {
            warn!("staged media: bad or expired link");
            Err(Response::text(
                403,
                "this media link is invalid or has expired",
            ))
        }
    }
}

/// Serves a link `authenticate` has passed, from the object's file as the client reads.
pub async fn serve(links: &MediaLinks, req: &Request) -> Response {
    match links.open(link_key(req)).await {
        Ok(Some(m)) => Response::media(m.content_type, m.body),
        Ok(None) => Response::text(404, "this media is no longer staged"),
        Err(e) => {
            warn!(error = %e, "staged media: store read failed");
            Response::text(503, "media store unavailable")
        }
    }
}
