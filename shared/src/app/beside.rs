//! Commands beside a running local server that holds the embedded store (redb lets one
//! process open it): where that server listens, and `doctor` on a config file it may not
//! have loaded yet.
//!
//! The server writes its address into `server.addr` (0600) in the store's directory once
//! it listens; the CLI reads it there, so the admin key goes to that server and to no
//! other process on another port (it used to go to 127.0.0.1:8080 whatever the port).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::Value;

use crate::app::admin::{self, is_loopback_base};
use crate::app::{Services, doctor};
use crate::config::{Config, Secret, StoreConfig};
use crate::store::Stores;
use crate::support::clock::SystemClock;

const ADDRESS_FILE: &str = "server.addr";

fn address_file(config: &Config) -> Option<PathBuf> {
    match &config.store {
        StoreConfig::Embedded { path } => Some(path.join(ADDRESS_FILE)),
        _ => None,
    }
}

/// Records where the server on this config listens (embedded store only), readable by
/// its user alone.
#[cfg(feature = "local")]
pub fn record_address(config: &Config, addr: SocketAddr) -> std::io::Result<()> {
    match address_file(config) {
        Some(path) => crate::support::private_fs::write_private(
            &path,
            connect_to(addr).to_string().as_bytes(),
        ),
        None => Ok(()),
    }
}

/// Where to reach a server listening on `addr`: the loopback address of its family when
/// it listens on all of them.
fn connect_to(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The base URL of the running server: `--server` if given, else the address it recorded
/// in the store's directory, else `[server] listen`; only ever a loopback address.
pub fn server_base(config: &Config, flag: Option<&str>) -> Result<String, String> {
    let base =
        match flag {
            Some(f) => f.trim_end_matches('/').to_owned(),
            None => {
                let recorded = address_file(config)
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .and_then(|t| t.trim().parse::<SocketAddr>().ok());
                let listen = config.server.listen.parse::<SocketAddr>().ok();
                match recorded.or(listen) {
                    Some(addr) => format!("http://{}", connect_to(addr)),
                    None => return Err(
                        "cannot tell where the server listens: give --server http://127.0.0.1:PORT"
                            .into(),
                    ),
                }
            }
        };
    if !is_loopback_base(&base) {
        return Err(format!(
            "{base} is not a loopback address (http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT): the admin key is sent nowhere else"
        ));
    }
    Ok(base)
}

/// `doctor --config F` while a server holds the store: the checks that need no store
/// (config, desk) run on the file; the access_token check is the server's where it runs
/// the file's AppSecret, else the file's secret is checked with `stable_token` (which
/// invalidates no token). A server running another version of the config is reported.
/// Returns the lines to print and whether every check passed.
pub async fn doctor(
    config: Config,
    base: &str,
    key: &Secret,
    only: Option<&str>,
) -> Result<(Vec<String>, bool), String> {
    let path = match only {
        Some(a) => format!(
            "/admin/doctor?checks=access_token&app={}",
            form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
        ),
        None => "/admin/doctor?checks=access_token".to_owned(),
    };
    let server = admin::call(base, key, http::Method::GET, &path).await?;
    let file = Services::with_parts(
        config,
        Stores::none("[store] (the running server holds it)"),
        std::sync::Arc::new(SystemClock),
    );
    let mut lines = Vec::new();
    let mut ok = true;
    for app in doctor::accounts(&file, only) {
        let theirs = &server["accounts"][app.appid.as_str()];
        let token = match theirs["access_token"].as_str() {
            Some(line) if theirs["secret"].as_str() == Some(&doctor::secret_fingerprint(app)) => {
                line.to_owned()
            }
            _ => doctor::secret(&file, app).await.to_string(),
        };
        for line in [
            doctor::config(&file, app).to_string(),
            token,
            doctor::desk(&file, app).await.to_string(),
        ] {
            ok &= line.starts_with("PASS");
            lines.push(line);
        }
    }
    if server["version"].as_str() != Some(file.config.version.as_str()) {
        lines.push(format!(
            "NOTE the server at {base} runs another version of the config than this file: the checks above are the file's (send the server SIGHUP to load it)"
        ));
    }
    Ok((
        lines,
        ok && server.get("accounts").is_some_and(Value::is_object),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_key_goes_only_to_loopback() {
        for good in [
            "http://127.0.0.1:9000",
            "http://[::1]:8080",
            "http://localhost:8081",
            "http://127.1.2.3:1",
        ] {
            assert!(is_loopback_base(good), "{good}");
        }
        for bad in [
            "http://10.0.0.5:8080",
            "https://127.0.0.1:8080",
            "http://127.0.0.1.evil.example:80",
            "http://localhost.evil.example:80",
            "http://0.0.0.0:8080",
            "http://user@127.0.0.1:80",
        ] {
            assert!(!is_loopback_base(bad), "{bad}");
        }
        assert_eq!(
            connect_to("0.0.0.0:8085".parse().unwrap()),
            "127.0.0.1:8085".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            connect_to("[::]:8085".parse().unwrap()),
            "[::1]:8085".parse::<SocketAddr>().unwrap()
        );
    }
}
