//! The local server: every route of template.yaml on one port, on the same handlers the
//! Lambda functions use. For development and small self-hosted installs.
//!
//! It faces the internet directly, so it defends itself: a request is authenticated from
//! its head (path key, signature) before its body is read; the body is refused past the
//! route's limit (by Content-Length, and while it streams in) and must arrive within
//! `[server] body_timeout_ms`; headers must arrive within `header_timeout_ms`, which also
//! closes kept-alive connections idle that long; at most `max_connections` are served at
//! once; accept errors (out of file descriptors) back off instead of spinning.

use crate::support::throttle::log_refusal;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::Services;
use crate::app::admin;
use crate::app::conn;
use crate::app::live::Live;
use crate::app::outgoing::Outgoing;
use crate::app::routes::find as route;
use crate::app::routes::too_large;
use crate::http::{Request, Response, is_media};

/// `GET /healthz`: the process answers. `GET /readyz`: the store and the delivery queue
/// answer too (the reason goes to the log, not to the caller).
async fn health(svc: &Services, path: &str) -> Option<Response> {
    match path {
        "/healthz" => Some(Response::text(200, "ok")),
        "/readyz" => {
            let within = Duration::from_secs(2);
            let now = svc.clock.unix_ms();
            let store = tokio::time::timeout(within, svc.inbox.get("readyz#probe", now)).await;
            let queue = tokio::time::timeout(within, svc.queue.ready()).await;
            Some(match (store, queue) {
                (Ok(Ok(_)), Ok(Ok(()))) => Response::text(200, "ready"),
                (store, queue) => {
                    tracing::warn!(store = ?store.map(|r| r.err()), queue = ?queue.map(|r| r.err()), "not ready");
                    Response::text(503, "not ready")
                }
            })
        }
        _ => None,
    }
}

/// A request's answer, with the media slot it holds while its body goes out.
type Answer = (Response, Option<conn::PeerSlot>);

async fn serve_one(
    svc: &Arc<Services>,
    peer: std::net::IpAddr,
    media_slots: &Arc<conn::PeerSlots>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Answer {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if parts.method == http::Method::GET
        && let Some(answer) = health(svc, &path).await
    {
        return (answer, None);
    }
    if admin::is_admin(&path) {
        // No admin route takes a body.
        let request = Request {
            query: parts
                .uri
                .query()
                .map(Request::parse_query)
                .unwrap_or_default(),
            method: parts.method,
            path,
            headers: parts.headers,
            body: Bytes::new(),
        };
        return (admin::serve(svc, peer, &request).await, None);
    }
    let Some(r) = route(&path) else {
        return (Response::no_such_route(), None);
    };
    let query = parts
        .uri
        .query()
        .map(Request::parse_query)
        .unwrap_or_default();
    let request = Request {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body: Bytes::new(),
    };
    // Nothing of the body is read for a caller who cannot authenticate: the route's head
    // check runs first, then `Connection::read`.
    let mut source = Connection {
        body_timeout: Duration::from_millis(svc.config.server.body_timeout_ms),
        body: Some(body),
        peer,
        media_slots: media_slots.clone(),
        slot: None,
    };
    let answer = crate::app::routes::serve(svc, &r, request, &mut source).await;
    (answer, source.slot)
}

/// An authenticated request's body on the connection: read within its route's limit (by
/// Content-Length, and while it streams in) and `[server] body_timeout_ms`. A media
/// download or upload first takes one of its peer's media slots, held until its body is
/// out (or in): a peer cannot make the server hold more than a few files at once.
struct Connection {
    body_timeout: Duration,
    body: Option<hyper::body::Incoming>,
    peer: std::net::IpAddr,
    media_slots: Arc<conn::PeerSlots>,
    slot: Option<conn::PeerSlot>,
}

impl crate::app::routes::BodySource for Connection {
    fn read<'a>(
        &'a mut self,
        r: &'a crate::http::Route,
        request: &'a Request,
        limit: usize,
    ) -> crate::app::routes::BoxFuture<'a, Result<Bytes, Response>> {
        Box::pin(async move {
            if is_media(r.kind, &request.method, &request.query) {
                let Some(slot) = self.media_slots.take(self.peer, false) else {
                    if let Some(suppressed) = log_refusal("media", "max_media_per_peer") {
                        tracing::warn!(peer = %self.peer, suppressed, "media request refused: the peer has max_media_per_peer in flight");
                    }
                    return Err(
                        Response::text(429, "too many media requests at once; try again")
                            .with_header(http::header::RETRY_AFTER, "1".into()),
                    );
                };
                self.slot = Some(slot);
            }
            let declared = request
                .header(http::header::CONTENT_LENGTH)
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(too_large(r, limit, "over the limit (Content-Length)"));
            }
            let Some(body) = self.body.take() else {
                return Ok(Bytes::new());
            };
            match tokio::time::timeout(self.body_timeout, Limited::new(body, limit).collect()).await
            {
                Ok(Ok(b)) => Ok(b.to_bytes()),
                Ok(Err(_)) => Err(too_large(r, limit, "over the limit or unreadable")),
                Err(_) => {
                    if let Some(suppressed) = log_refusal("body", "timeout") {
                        tracing::warn!(appid = %r.appid, suppressed, "request body did not arrive in time");
                    }
                    Err(Response::text(408, "request body timeout"))
                }
            }
        })
    }
}

fn to_hyper((resp, slot): Answer) -> hyper::Response<Outgoing> {
    let mut out = hyper::Response::new(Outgoing::new(resp.body, resp.file, slot));
    *out.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&resp.content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    for (name, value) in resp.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.append(name, v);
        }
    }
    out
}

/// Logs a repeated error at most once per `every`, with how many were not logged.
struct RateLimitedLog {
    every: Duration,
    last: std::sync::Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: std::sync::Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now; then how many were left out since the last line.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }

    fn warn(&self, error: &std::io::Error) {
        if let Some(suppressed) = self.allow() {
            tracing::warn!(error = %error, suppressed, "accept failed; backing off");
        }
    }
}

/// Requests being served, for the drain at shutdown.
#[derive(Default)]
struct InFlight {
    count: AtomicU64,
    idle: tokio::sync::Notify,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Waits until no request is being served, or `limit` passes; false on the limit.
    async fn drained(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), idle)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serves until `shutdown` resolves; then stops accepting and lets the requests being
/// served finish (up to the push deadline and a little more) before returning.
pub async fn serve(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let in_flight = Arc::new(InFlight::default());
    let result = accept_loop(live.clone(), listener, shutdown, in_flight.clone()).await;
    let limit = Duration::from_millis(live.current().config.callback.reply_deadline_ms)
        + Duration::from_secs(2);
    let n = in_flight.count.load(Ordering::SeqCst);
    if n > 0 {
        tracing::info!(requests = n, "draining requests in flight");
    }
    if !in_flight.drained(limit).await {
        tracing::warn!(
            requests = in_flight.count.load(Ordering::SeqCst),
            "requests still in flight after the drain limit; their entries are left to the outbox's sweep"
        );
    }
    result
}

/// Accepts until `shutdown` resolves.
async fn accept_loop(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    in_flight: Arc<InFlight>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    // Connection limits are the start's: a reload does not resize them.
    let server = live.current().config.server.clone();
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let peers = conn::PeerSlots::new(server.max_connections_per_peer);
    let media_slots = conn::PeerSlots::new(server.max_media_per_peer);
    let trusted: Arc<[std::net::IpAddr]> = server.trusted_proxies.clone().into();
    let header_timeout = Duration::from_millis(server.header_timeout_ms);
    let first_line = Duration::from_millis(server.first_line_timeout_ms).min(header_timeout);
    let accept_log = RateLimitedLog::new(Duration::from_secs(10));
    let capped_log = RateLimitedLog::new(Duration::from_secs(10));
    let mut backoff = Duration::ZERO;
    loop {
        // A connection slot first: at the cap, new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::ZERO;
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait before trying again
                    // (doubling up to 1 s), so that the loop does not burn a core.
                    accept_log.warn(&e);
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => return Ok(()),
                    }
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Some(peer_slot) = peers.take(peer.ip(), trusted.contains(&peer.ip())) else {
            if let Some(suppressed) = capped_log.allow() {
                tracing::warn!(peer = %peer.ip(), suppressed, "connection refused: the peer holds max_connections_per_peer already");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (live, in_flight, trusted) = (live.clone(), in_flight.clone(), trusted.clone());
        let media_slots = media_slots.clone();
        tokio::spawn(async move {
            let _permit = (permit, peer_slot);
            // A client that does not send its request line soon loses the connection.
            let Some(line) = conn::first_line(&stream, first_line).await else {
                return;
            };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                // Each request on the config in force when it arrives.
                let svc = live.current();
                let guard = in_flight.enter();
                let forwarded = req
                    .headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok());
                let client = conn::client(peer.ip(), forwarded, &trusted);
                let media_slots = media_slots.clone();
                async move {
                    let resp = to_hyper(serve_one(&svc, client, &media_slots, req).await);
                    drop(guard);
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(e) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(conn::Prefixed::new(line, stream)), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
