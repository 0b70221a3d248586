//! Which connections the local server takes, and who is behind them. One client used to
//! hold every connection slot with half-sent request lines (~140 connections/s, and
//! signed pushes timed out). Now:
//! - at most `[server] max_connections_per_peer` connections per client address (0 = no
//!   cap); a connection beyond it is closed at once;
//! - a request line must arrive within `[server] first_line_timeout_ms`, well before the
//!   whole head's `header_timeout_ms`;
//! - `[server] trusted_proxies`: the local server usually sits behind a TLS proxy on the
//!   same host (WeChat pushes only to ports 80/443), so every connection comes from it.
//!   Its connections are not capped, and its `X-Forwarded-For` names the client, for the
//!   admin routes' loopback check and for logs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest request line read ahead of hyper (hyper's own head limit applies after).
const FIRST_LINE_MAX: usize = 8 * 1024;

/// Open connections per client address, for the per-peer cap.
pub(crate) struct PeerSlots {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in `PeerSlots`; freed when dropped.
pub(crate) struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: Option<IpAddr>,
}

impl PeerSlots {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `peer`, or None when it has `cap` open already.
    /// A trusted proxy's connections are many clients': they are not counted. The map
    /// holds only peers with open connections, so it is bounded by `max_connections`.
    pub(crate) fn take(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Option<PeerSlot> {
        if self.cap == 0 || trusted {
            return Some(PeerSlot {
                slots: self.clone(),
                peer: None,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(peer).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: self.clone(),
            peer: Some(peer),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(peer) = self.peer else {
            return;
        };
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&peer);
            }
        }
    }
}

/// The client behind a request: the TCP peer, or, when that is a trusted proxy, the
/// rightmost address of `X-Forwarded-For` that is not one (a client cannot forge what its
/// proxy appends; a proxy that sent no header leaves the proxy itself).
pub(crate) fn client(peer: IpAddr, forwarded: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    forwarded
        .into_iter()
        .flat_map(|h| h.rsplit(','))
        .map_while(|a| a.trim().parse::<IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// Reads up to the end of the request line within `within`: the bytes read, for hyper to
/// read again; None when the line did not come in time or the client left.
pub(crate) async fn first_line(stream: &TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 2048];
        loop {
            stream.readable().await.ok()?;
            match stream.try_read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if memchr::memchr(b'\n', &got).is_some() || got.len() >= FIRST_LINE_MAX {
                        return Some(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()??;
    Some(got)
}

/// A stream whose first bytes were read already: they are read again first.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl Prefixed {
    pub(crate) fn new(prefix: Vec<u8>, stream: TcpStream) -> Self {
        Self {
            prefix,
            at: 0,
            stream,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let trusted = [proxy];
        let client_ip = |peer, xff| client(peer, xff, &trusted).to_string();
        assert_eq!(client_ip(proxy, Some("203.0.113.5")), "203.0.113.5");
        // A client's own header is to the left of what the proxy appends.
        assert_eq!(
            client_ip(proxy, Some("127.0.0.1, 203.0.113.5")),
            "203.0.113.5"
        );
        assert_eq!(client_ip(proxy, None), "127.0.0.1");
        assert_eq!(client_ip(proxy, Some("garbage")), "127.0.0.1");
        // Anyone else's header means nothing.
        assert_eq!(client_ip(other, Some("127.0.0.1")), "10.0.0.9");
    }

    #[test]
    fn a_peer_holds_at_most_its_cap() {
        let slots = PeerSlots::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let first = slots.take(a, false).unwrap();
        let _second = slots.take(a, false).unwrap();
        assert!(slots.take(a, false).is_none());
        assert!(slots.take("127.0.0.3".parse().unwrap(), false).is_some());
        assert!(
            slots.take(a, true).is_some(),
            "a trusted proxy is not capped"
        );
        drop(first);
        assert!(slots.take(a, false).is_some());
        assert!(PeerSlots::new(0).take(a, false).is_some());
    }
}
