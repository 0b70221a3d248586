//! The route table: every route declared once (its path patterns as template.yaml writes
//! them, its methods, the Lambda function serving it, its body limit, its head check and
//! handler). The local server and the Lambda dispatch both serve from it, and a test holds
//! template.yaml to it.
//!
//! A route runs as: its head check (path key, signature, time window, account, method),
//! whose refusal is the whole answer; then its body, read within the route's limit; then
//! its handler, given the check's proof.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::app::Services;
use crate::app::handlers;
use crate::http::{MAX_DESK_BODY, MAX_UPLOAD_BODY, Request, Response, Route, RouteKind, is_upload};
use crate::support::throttle::log_refusal;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a route's body comes from: the Lambda event holds it already; the local server
/// reads it from the connection, only after the head check passed.
pub(crate) trait BodySource: Send {
    /// The body of `head` within `limit` bytes, or the answer refusing it.
    fn read<'a>(
        &'a mut self,
        route: &'a Route,
        head: &'a Request,
        limit: usize,
    ) -> BoxFuture<'a, Result<Bytes, Response>>;
}

/// A body already in memory (API Gateway's event): refused past the limit.
pub(crate) struct InMemory(pub Bytes);

impl BodySource for InMemory {
    fn read<'a>(
        &'a mut self,
        route: &'a Route,
        _: &'a Request,
        limit: usize,
    ) -> BoxFuture<'a, Result<Bytes, Response>> {
        let body = std::mem::take(&mut self.0);
        Box::pin(async move {
            if body.len() > limit {
                return Err(too_large(route, limit, "over the limit"));
            }
            Ok(body)
        })
    }
}

/// The answer to a body over its route's limit (logged, sparingly).
pub(crate) fn too_large(route: &Route, limit: usize, why: &'static str) -> Response {
    if let Some(suppressed) = log_refusal("body", why) {
        tracing::warn!(appid = %route.appid, limit, suppressed, "request body {why}");
    }
    Response::text(413, "body too large")
}

/// The largest body a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLimit {
    /// WeChat's pushes: `[callback] max_body_bytes`.
    Push,
    /// A desk's JSON or form request.
    Desk,
    /// A desk's request, or a Udesk media upload (`POST ...?type=`).
    DeskOrUpload,
    /// No body at all.
    None,
}

impl BodyLimit {
    fn bytes(self, svc: &Services, route: &Route, req: &Request) -> usize {
        match self {
            BodyLimit::Push => svc.config.callback.max_body_bytes,
            BodyLimit::DeskOrUpload if is_upload(route.kind, &req.method, &req.query) => {
                MAX_UPLOAD_BODY
            }
            BodyLimit::Desk | BodyLimit::DeskOrUpload => MAX_DESK_BODY,
            BodyLimit::None => 0,
        }
    }
}

/// A route's whole run: head check, body, handler.
pub(crate) type Runner = for<'a> fn(
    &'a Arc<Services>,
    &'a Route,
    Request,
    &'a mut dyn BodySource,
) -> BoxFuture<'a, Response>;

/// One route, declared once.
pub(crate) struct RouteDecl {
    pub kind: RouteKind,
    /// The paths it serves: literal segments, `{appid}` (an account's, checked by
    /// `support::ids`), `{key}` (a secret path segment) and a last `{rest}` (one segment
    /// or more). API Gateway stage segments before the first literal are tolerated.
    pub paths: &'static [&'static str],
    /// The Lambda function that serves it, None: the local server only.
    pub lambda: Option<Lambda>,
    pub body: BodyLimit,
    pub run: Runner,
}

/// A route's function in template.yaml: its `WXDESK_FUNCTION`, and its HttpApi event.
pub(crate) struct Lambda {
    pub function: &'static str,
    pub path: &'static str,
    /// `ANY`, `GET` or `POST`, as template.yaml writes it.
    pub method: &'static str,
}

/// The account a request names, read before its head check (a stored one through the
/// registry cache): the path's `{appid}`, or Udesk's `?appid=`. None for routes that
/// name none, and for an account whose routes are closed (withdrawn, disabled); an error
/// while the registry cannot be read (answered 503, so that the sender tries again: a
/// 404 would tell it the account is gone).
async fn account_named(
    svc: &Services,
    route: &Route,
    req: &Request,
) -> Result<Option<Arc<crate::app::accounts::Account>>, crate::app::accounts::Unreadable> {
    match route.kind {
        RouteKind::ComponentEvents
        | RouteKind::ComponentAuthorize
        | RouteKind::ComponentAuthorized
        | RouteKind::StagedMedia => Ok(None),
        RouteKind::TimCallback => match svc.platform_account(&route.appid) {
            Some(platform) => Ok(Some(platform)),
            None => svc.serving(&route.appid).await,
        },
        _ if route.appid.is_empty() => match handlers::udesk::named_in_query(route.kind, req) {
            Some(appid) => svc.serving(&appid).await,
            None => Ok(None),
        },
        RouteKind::ComponentPush => {
            // The platform's signature first: an unsigned push for a made-up appid costs
            // no registry read and takes no cache slot (the head check refuses it).
            let signed = svc.config.component.as_ref().is_some_and(|c| {
                c.appid.as_str() == route.platform
                    && crate::source::signed_query(svc, &c.token, req).is_ok()
            });
            if !signed {
                return Ok(None);
            }
            Ok(match svc.serving(&route.appid).await? {
                Some(a) => Some(a),
                // WeChat's test accounts, during the platform's release test only.
                None => svc.release_test_account(&route.platform, &route.appid),
            })
        }
        _ => svc.serving(&route.appid).await,
    }
}

/// A runner from a head check and the handler taking its proof.
macro_rules! gated {
    ($check:path => $serve:path) => {
        |svc, route, mut req, body| {
            Box::pin(async move {
                let Ok(account) = account_named(svc, route, &req).await else {
                    return Response::text(503, "accounts unavailable; try again");
                };
                let proof = match $check(svc, account.as_deref(), route, &req) {
                    Ok(proof) => proof,
                    // A typed refusal becomes its protocol's answer (and its log line).
                    Err(refused) => return refused.into(),
                };
                let limit = decl(route.kind).body.bytes(svc, route, &req);
                req.body = match body.read(route, &req, limit).await {
                    Ok(b) => b,
                    Err(refused) => return refused,
                };
                crate::http::Answer::answer($serve(svc, proof, &req).await)
            })
        }
    };
}

/// Every route.
pub(crate) static ROUTES: [RouteDecl; 13] = [
    RouteDecl {
        kind: RouteKind::WechatCallback,
        paths: &["/wechat/{appid}"],
        lambda: Some(Lambda {
            function: "wechat-callback",
            path: "/wechat/{appid}",
            method: "ANY",
        }),
        body: BodyLimit::Push,
        run: gated!(handlers::wechat::check => handlers::wechat::serve),
    },
    RouteDecl {
        kind: RouteKind::ComponentPush,
        paths: &["/wechat/component/{platform}/{appid}"],
        lambda: Some(Lambda {
            function: "component-push",
            path: "/wechat/component/{platform}/{appid}",
            method: "POST",
        }),
        body: BodyLimit::Push,
        run: gated!(handlers::wechat::check => handlers::wechat::serve),
    },
    RouteDecl {
        kind: RouteKind::UdeskGateway,
        paths: &["/udesk/{appid}/{key}", "/udesk/{key}"],
        lambda: Some(Lambda {
            function: "udesk-gateway",
            path: "/udesk/{proxy+}",
            method: "ANY",
        }),
        body: BodyLimit::DeskOrUpload,
        run: gated!(handlers::udesk::check => handlers::udesk::serve),
    },
    RouteDecl {
        kind: RouteKind::UdeskTemplateList,
        paths: &[
            "/udesk/{appid}/{key}/template/get_all_private_template",
            "/udesk/{key}/template/get_all_private_template",
        ],
        lambda: Some(Lambda {
            function: "udesk-template-list",
            path: "/udesk/{appid}/{key}/template/get_all_private_template",
            method: "GET",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::udesk::check => handlers::udesk::serve),
    },
    RouteDecl {
        kind: RouteKind::UdeskTemplateSend,
        paths: &[
            "/udesk/{appid}/{key}/message/template/send",
            "/udesk/{key}/message/template/send",
        ],
        lambda: Some(Lambda {
            function: "udesk-template-send",
            path: "/udesk/{appid}/{key}/message/template/send",
            method: "POST",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::udesk::check => handlers::udesk::serve),
    },
    RouteDecl {
        kind: RouteKind::UdeskImPush,
        paths: &["/udesk-im/{appid}/{key}"],
        lambda: Some(Lambda {
            function: "udesk-im-push",
            path: "/udesk-im/{appid}/{key}",
            method: "POST",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::udesk_im::check => handlers::udesk_im::serve),
    },
    RouteDecl {
        kind: RouteKind::TimCallback,
        paths: &["/tim/{appid}/{key}"],
        lambda: Some(Lambda {
            function: "tim-callback",
            path: "/tim/{appid}/{key}",
            method: "POST",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::tim::check => handlers::tim::serve),
    },
    RouteDecl {
        kind: RouteKind::ChatbotHandoff,
        paths: &["/chatbot/{appid}/{key}"],
        lambda: Some(Lambda {
            function: "chatbot-handoff",
            path: "/chatbot/{appid}/{key}",
            method: "POST",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::chatbot::check => handlers::chatbot::handoff),
    },
    RouteDecl {
        kind: RouteKind::ChatbotEvent,
        paths: &["/chatbot/{appid}/{key}/event"],
        lambda: Some(Lambda {
            function: "chatbot-event",
            path: "/chatbot/{appid}/{key}/event",
            method: "POST",
        }),
        body: BodyLimit::Desk,
        run: gated!(handlers::chatbot::check => handlers::chatbot::event),
    },
    RouteDecl {
        kind: RouteKind::ComponentEvents,
        paths: &["/component/{appid}/events"],
        lambda: Some(Lambda {
            function: "component-events",
            path: "/component/{appid}/events",
            method: "POST",
        }),
        body: BodyLimit::Push,
        run: gated!(handlers::component::check => handlers::component::serve),
    },
    RouteDecl {
        kind: RouteKind::ComponentAuthorize,
        paths: &["/component/{appid}/authorize"],
        lambda: Some(Lambda {
            function: "component-authorize",
            path: "/component/{appid}/authorize",
            method: "GET",
        }),
        body: BodyLimit::None,
        run: gated!(handlers::component::check_page => handlers::component::page),
    },
    RouteDecl {
        kind: RouteKind::ComponentAuthorized,
        paths: &["/component/{appid}/authorized"],
        lambda: Some(Lambda {
            function: "component-authorized",
            path: "/component/{appid}/authorized",
            method: "GET",
        }),
        body: BodyLimit::None,
        run: gated!(handlers::component::check_page => handlers::component::authorized),
    },
    RouteDecl {
        kind: RouteKind::StagedMedia,
        paths: &["/media/{rest}"],
        // S3 presigned URLs serve media on AWS.
        lambda: None,
        body: BodyLimit::None,
        run: gated!(handlers::media::check => handlers::media::serve),
    },
];

/// The declaration of `kind`.
pub(crate) fn decl(kind: RouteKind) -> &'static RouteDecl {
    // Every kind is declared (a test checks it), so the fallback is never taken.
    ROUTES.iter().find(|d| d.kind == kind).unwrap_or(&ROUTES[0])
}

/// The route a request path names. An `{appid}` segment that cannot be one matches
/// nothing, so that no oversized or odd value reaches a lookup or a log line.
pub fn find(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let start = segs.iter().position(|s| {
        ROUTES
            .iter()
            .any(|d| d.paths.iter().any(|p| first(p) == *s))
    })?;
    ROUTES.iter().find_map(|d| {
        d.paths
            .iter()
            .find_map(|p| matched(d.kind, p, &segs[start..]))
    })
}

/// A pattern's first segment: where a route's path starts.
fn first(pattern: &'static str) -> &'static str {
    pattern.split('/').find(|s| !s.is_empty()).unwrap_or("")
}

/// `segs` against one pattern of `kind`.
fn matched(kind: RouteKind, pattern: &str, segs: &[&str]) -> Option<Route> {
    let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let rest = parts.last() == Some(&"{rest}");
    let fits = if rest {
        segs.len() >= parts.len()
    } else {
        segs.len() == parts.len()
    };
    if !fits {
        return None;
    }
    let (mut appid, mut platform, mut key) = ("", "", None);
    for (part, seg) in parts.iter().zip(segs) {
        match *part {
            "{appid}" => appid = *seg,
            "{platform}" => platform = *seg,
            "{key}" => key = Some(crate::support::secret::Secret::new(*seg)),
            "{rest}" => {}
            literal if literal == *seg => {}
            _ => return None,
        }
    }
    let bad = |id: &str| !id.is_empty() && crate::support::ids::Appid::parse(id).is_err();
    if bad(appid) || bad(platform) {
        return None;
    }
    Some(Route {
        kind,
        appid: appid.to_owned(),
        platform: platform.to_owned(),
        key,
    })
}

/// Serves a request on its route: head check, body from `body`, handler.
pub(crate) async fn serve(
    svc: &Arc<Services>,
    route: &Route,
    head: Request,
    body: &mut dyn BodySource,
) -> Response {
    (decl(route.kind).run)(svc, route, head, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_kind_is_declared_once() {
        for d in &ROUTES {
            let same = ROUTES.iter().filter(|o| o.kind == d.kind).count();
            assert_eq!(same, 1, "{:?}", d.kind);
            assert!(std::ptr::eq(decl(d.kind), d));
        }
    }

    #[test]
    fn paths_name_their_route_account_and_key() {
        let r = find("/prod/udesk/wx1/K1/template/get_all_private_template").unwrap();
        assert_eq!(
            (r.kind, r.appid.as_str()),
            (RouteKind::UdeskTemplateList, "wx1")
        );
        assert_eq!(r.key.unwrap().expose(), "K1");
        let r = find("/udesk/K2").unwrap();
        assert_eq!((r.kind, r.appid.as_str()), (RouteKind::UdeskGateway, ""));
        assert_eq!(find("/wechat/wx1").unwrap().kind, RouteKind::WechatCallback);
        assert!(find("/wechat/wx1/more").is_none());
        assert!(find(&format!("/wechat/{}", "w".repeat(65))).is_none());
        assert!(find("/wechat/wx%2F1").is_none());
        assert!(find("/media").is_none());
        assert_eq!(find("/media/a/b").unwrap().kind, RouteKind::StagedMedia);
        assert!(find("/nowhere/wx1").is_none());
        let r = find("/wechat/component/wxcomp/wxshop").unwrap();
        assert_eq!(
            (r.kind, r.platform.as_str(), r.appid.as_str()),
            (RouteKind::ComponentPush, "wxcomp", "wxshop")
        );
        assert!(find("/wechat/component/wx%2F/wxshop").is_none());
    }

    /// template.yaml declares exactly the table's functions, each with its route's path
    /// and method (and the two scheduled jobs).
    #[test]
    fn template_yaml_declares_the_table() {
        let template = include_str!("../../../template.yaml");
        let mut declared = Vec::new();
        let mut function = None;
        let mut path = None;
        for line in template.lines().map(str::trim) {
            if let Some(f) = line.strip_prefix("WXDESK_FUNCTION: ") {
                function = Some(f.to_owned());
                path = None;
            } else if let Some(p) = line.strip_prefix("Path: ") {
                path = Some(p.to_owned());
            } else if let (Some(m), Some(f), Some(p)) =
                (line.strip_prefix("Method: "), &function, &path)
            {
                declared.push((f.clone(), p.clone(), m.to_owned()));
                path = None;
            }
        }
        let mut table: Vec<_> = ROUTES
            .iter()
            .filter_map(|d| d.lambda.as_ref())
            .map(|l| {
                (
                    l.function.to_owned(),
                    l.path.to_owned(),
                    l.method.to_owned(),
                )
            })
            .collect();
        declared.sort();
        table.sort();
        assert_eq!(declared, table);
        for f in crate::app::functions::functions() {
            assert!(
                template.contains(&format!("WXDESK_FUNCTION: {f}\n")),
                "{f} is not a function of template.yaml"
            );
        }
    }

    #[test]
    fn each_path_pattern_matches_its_route() {
        for d in &ROUTES {
            for p in d.paths {
                let sample = p
                    .replace("{appid}", "wx1234")
                    .replace("{platform}", "wxcomp")
                    .replace("{key}", "k")
                    .replace("{rest}", "a/b");
                let found = find(&sample).map(|r| r.kind);
                assert_eq!(found, Some(d.kind), "{p}");
            }
        }
    }
}
