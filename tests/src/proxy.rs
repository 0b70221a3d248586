//! A forward HTTP proxy on loopback that connects onward from another loopback address
//! (127.0.0.2), as an install's proxy host with its own fixed address would: WeChat (the
//! stand-in) sees the proxy's address, not ours. It takes CONNECT (https) and absolute-form
//! requests (http), and counts the connections it carried.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The address the proxy connects from.
pub const PROXY_EGRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

pub struct Proxy {
    pub addr: SocketAddr,
    carried: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Connections carried to their target so far.
    pub fn carried(&self) -> usize {
        self.carried.load(Ordering::SeqCst)
    }
}

pub async fn start() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let carried = Arc::new(AtomicUsize::new(0));
    let count = carried.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let _ = carry(client, &count).await;
            });
        }
    });
    Proxy { addr, carried }
}

/// The request head's target: `CONNECT host:port` or `GET http://host:port/...`.
fn target(head: &str) -> Option<(bool, String)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    if method == "CONNECT" {
        return Some((true, uri.to_owned()));
    }
    let rest = uri.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((false, authority))
}

async fn carry(mut client: TcpStream, count: &AtomicUsize) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let Some((tunnel, authority)) = target(&String::from_utf8_lossy(&head)) else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let to: SocketAddr = match tokio::net::lookup_host(&authority).await?.next() {
        Some(a) => a,
        None => return Ok(()),
    };
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(PROXY_EGRESS, 0))?;
    let mut upstream = socket.connect(to).await?;
    count.fetch_add(1, Ordering::SeqCst);
    if tunnel {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        // The stand-ins read absolute-form targets as their path: pass the head on as is.
        upstream.write_all(&head).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
