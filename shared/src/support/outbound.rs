//! Outbound HTTP: the pooled client every call shares, reading answers with a size cap, and
//! the guarded fetch for URLs that come from outside (IM media elements, WeChat's
//! `video_url`): https only, hosts from an allow-list, never an internal address (checked
//! on the resolved address, so DNS cannot point an allowed name inward), no redirect to
//! another host, and a size cap enforced while the body streams in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Answers from desks and platforms are small JSON or XML documents.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One HTTP client for every outbound call to configured endpoints: pooled, keep-alive,
/// bounded connect time, no redirects (an API that redirects is misconfigured, and a
/// redirect would carry our credentials elsewhere).
pub(crate) fn http_client() -> reqwest::Client {
    builder().build().unwrap_or_else(|_| reqwest::Client::new())
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::tls::client_config())
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wxdesk/", env!("CARGO_PKG_VERSION")))
}

/// The client for WeChat's API: the shared settings, through `[wechat] proxy` when one is
/// set (so that WeChat sees the proxy's fixed address, the one on the IP allow-list).
/// The proxy's URL (it may carry a password) is never put in the error.
pub(crate) fn wechat_client(
    proxy: Option<&super::secret::Secret>,
) -> Result<reqwest::Client, String> {
    let Some(proxy) = proxy else {
        return Ok(http_client());
    };
    let proxy = reqwest::Proxy::all(proxy.expose())
        .map_err(|_| "wechat.proxy is not a proxy URL reqwest accepts".to_owned())?;
    builder()
        .proxy(proxy)
        .build()
        .map_err(|_| "cannot build the HTTP client for wechat.proxy".to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer broke off: {0}")]
    Broken(String),
}

/// Reads a response body, refusing it as soon as it passes `max` bytes (by its declared
/// length, or while it streams in), so that no peer can make us buffer more.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Broken(e.without_url().to_string()))?
    {
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A peer's answer, read whole (up to a cap).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub bytes: Bytes,
}

impl Answer {
    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.bytes).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The one way an outbound call is made: sends `req` with `timeout`, reads the answer up
/// to `max` bytes, and reports failures without the URL (URLs carry tokens, UserSigs and
/// channel keys).
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    max: usize,
) -> Result<Answer, SendError> {
    let resp = req.timeout(timeout).send().await.map_err(|e| {
        if e.is_timeout() {
            SendError::Timeout(timeout)
        } else {
            SendError::Transport(e.without_url().to_string())
        }
    })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = read_capped(resp, max).await?;
    Ok(Answer {
        status,
        headers,
        bytes,
    })
}

/// Which hosts a guarded fetch may reach: a host matches an entry equal to it or a parent
/// domain of it (`myqcloud.com` allows `cos.ap-shanghai.myqcloud.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<String>);

impl AllowList {
    pub fn new(hosts: &[String]) -> Self {
        AllowList(
            hosts
                .iter()
                .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        })
    }
}

/// Addresses no URL from outside may reach: loopback, private, link-local (cloud metadata
/// at 169.254.169.254 included), shared, unspecified, multicast, documentation and
/// reserved ranges, and their IPv6 counterparts (IPv4-mapped addresses judged as IPv4).
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 to any IPv4
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // IPv4-compatible
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the URL is not a valid absolute URL")]
    BadUrl,
    #[error("only https URLs are fetched")]
    NotHttps,
    #[error("host {0} is not in the allow-list")]
    HostNotAllowed(String),
    #[error("host {0} resolves to an internal address")]
    Internal(String),
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("cannot fetch: {0}")]
    Transport(String),
}

/// Resolves names for the guarded client and keeps only public addresses; a name with
/// none left fails, so the connection is never opened.
struct PublicOnly {
    allow_local: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_local || !is_internal(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(FetchError::Internal(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guarded fetch for URLs from outside.
pub struct Fetcher {
    /// None if the guarded client could not be built: then nothing is fetched, rather than
    /// through a client without the guards.
    http: Option<reqwest::Client>,
    allow_local: bool,
    timeout: Duration,
}

impl Fetcher {
    /// `allow_local`: accept http and loopback/private addresses too. Only for tests whose
    /// stand-ins listen on loopback; never in production.
    pub fn new(allow_local: bool, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(super::tls::client_config())
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly { allow_local }))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Same host, port and scheme only, a few hops at most (another port of an
                // allowed host is another service).
                let first = attempt.previous().first().cloned();
                match first {
                    Some(f)
                        if attempt.previous().len() <= 3
                            && f.host_str() == attempt.url().host_str()
                            && f.port_or_known_default()
                                == attempt.url().port_or_known_default()
                            && f.scheme() == attempt.url().scheme() =>
                    {
                        attempt.follow()
                    }
                    _ => attempt.stop(),
                }
            }))
            .user_agent(concat!("wxdesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the guarded HTTP client"))
            .ok();
        Self {
            http,
            allow_local,
            timeout,
        }
    }

    /// Checks a URL against the rules that do not need the network.
    pub fn check(&self, url: &str, allow: &AllowList) -> Result<reqwest::Url, FetchError> {
        let u = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl)?;
        match u.scheme() {
            "https" => {}
            "http" if self.allow_local => {}
            _ => return Err(FetchError::NotHttps),
        }
        let host = u.host_str().ok_or(FetchError::BadUrl)?.to_owned();
        if !u.username().is_empty() || u.password().is_some() {
            return Err(FetchError::BadUrl);
        }
        if !allow.allows(&host) {
            return Err(FetchError::HostNotAllowed(host));
        }
        // An address literal never reaches the resolver: judge it here.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !self.allow_local
            && is_internal(ip)
        {
            return Err(FetchError::Internal(host));
        }
        Ok(u)
    }

    /// GETs `url` under the rules; at most `max` bytes. Returns (content type, bytes).
    pub async fn get(
        &self,
        url: &str,
        allow: &AllowList,
        max: usize,
    ) -> Result<(String, Bytes), FetchError> {
        let u = self.check(url, allow)?;
        let Some(http) = &self.http else {
            return Err(FetchError::Transport("no guarded HTTP client".into()));
        };
        let resp = http
            .get(u)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                // The resolver's refusal comes back wrapped: say what it was.
                let mut src: Option<&dyn std::error::Error> = Some(&e);
                while let Some(s) = src {
                    if let Some(f) = s.downcast_ref::<FetchError>() {
                        return f.clone();
                    }
                    src = s.source();
                }
                FetchError::Transport(e.without_url().to_string())
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status(status));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = read_capped(resp, max).await.map_err(|e| match e {
            ReadError::TooLarge(n) => FetchError::TooLarge(n),
            ReadError::Broken(m) => FetchError::Transport(m),
        })?;
        Ok((content_type, bytes))
    }
}

/// A guarded fetch with its allow-list: what a caller that fetches one kind of URL holds.
pub struct GuardedFetch {
    fetcher: Arc<Fetcher>,
    allow: AllowList,
}

impl GuardedFetch {
    pub fn new(fetcher: Arc<Fetcher>, hosts: &[String]) -> Self {
        Self {
            fetcher,
            allow: AllowList::new(hosts),
        }
    }

    /// GETs `url` under the rules; at most `max` bytes. Returns (content type, bytes).
    pub async fn get(&self, url: &str, max: usize) -> Result<(String, Bytes), FetchError> {
        self.fetcher.get(url, &self.allow, max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "183.3.226.35", "2402:4e00::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list_matches_domains_not_substrings() {
        let a = AllowList::new(&["myqcloud.com".into(), ".qq.com".into()]);
        assert!(a.allows("cos.ap-shanghai.myqcloud.com"));
        assert!(a.allows("myqcloud.com"));
        assert!(a.allows("vweixinf.tc.qq.com."));
        assert!(!a.allows("evilmyqcloud.com"));
        assert!(!a.allows("myqcloud.com.evil.example"));
        assert!(!a.allows("127.0.0.1"));
    }

    #[test]
    fn checks_before_the_network() {
        let f = Fetcher::new(false, Duration::from_secs(1));
        let a = AllowList::new(&["myqcloud.com".into(), "127.0.0.1".into()]);
        assert_eq!(
            f.check("http://x.myqcloud.com/a", &a).unwrap_err(),
            FetchError::NotHttps
        );
        assert_eq!(
            f.check("https://evil.example/a", &a).unwrap_err(),
            FetchError::HostNotAllowed("evil.example".into())
        );
        assert_eq!(
            f.check("https://127.0.0.1/a", &a).unwrap_err(),
            FetchError::Internal("127.0.0.1".into())
        );
        assert_eq!(
            f.check("https://u:p@x.myqcloud.com/a", &a).unwrap_err(),
            FetchError::BadUrl
        );
        assert!(f.check("https://x.myqcloud.com/a.png", &a).is_ok());
        assert_eq!(
            f.check("file:///etc/passwd", &a).unwrap_err(),
            FetchError::NotHttps
        );
    }
}
