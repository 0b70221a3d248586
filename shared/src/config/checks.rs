//! Checks shared by the config's sections, and the one that spans them: every request
//! window against the dedup entries' lifetime.

use super::{AppConfig, CallbackConfig, ConfigError, DeskConfig, invalid};

/// `value` within `range`, else an error naming `key` and the bounds.
pub(super) fn within<T>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("must be between {} and {}", range.start(), range.end()),
    ))
}

/// Tencent IM's RequestTime window (the callback handler's).
const TENCENT_SIGN_WINDOW_SECS: u64 = 60;
/// WeChat's Token is 3-32 characters; a shorter token or key is a test's.
const MIN_SECRET_LEN: usize = 3;

/// A request is refused once its timestamp leaves its window, and its dedup entry must
/// outlive the window, or a captured request replays once the entry is gone: so every
/// window is at most half of `inbox_ttl_secs`. A window of 0 (no freshness check at all)
/// and very short secrets are for tests only.
pub(super) fn check_windows(cb: &CallbackConfig, apps: &[AppConfig]) -> Result<(), ConfigError> {
    check_windows_named(cb, apps, &|i, k| format!("apps[{i}].{k}"))
}

/// `check_windows`, with `name(i, key)` naming a key of the `i`th account in errors.
pub(super) fn check_windows_named(
    cb: &CallbackConfig,
    apps: &[AppConfig],
    name: &dyn Fn(usize, &str) -> String,
) -> Result<(), ConfigError> {
    let test_only = |key: String, what: &str| {
        Err(invalid(
            key,
            format!(
                "{what} is for tests only: set [callback] insecure_test_settings = true to allow it"
            ),
        ))
    };
    if cb.max_timestamp_skew_secs == 0 && !cb.insecure_test_settings {
        return test_only(
            "callback.max_timestamp_skew_secs".into(),
            "0 (no freshness check)",
        );
    }
    let mut windows = vec![(
        "callback.max_timestamp_skew_secs".to_owned(),
        cb.max_timestamp_skew_secs,
    )];
    for (i, app) in apps.iter().enumerate() {
        let key = |k: &str| name(i, k);
        let secrets = [
            ("token", Some(&app.token)),
            ("chatbot.token", app.chatbot.as_ref().map(|c| &c.token)),
            ("desk.key", app.desk.udesk_im().map(|c| &c.key)),
            (
                "desk.callback_token",
                app.desk.tencent_im().map(|c| &c.callback_token),
            ),
        ];
        for (name, secret) in secrets {
            if secret.is_some_and(|s| s.expose().len() < MIN_SECRET_LEN)
                && !cb.insecure_test_settings
            {
                return test_only(key(name), "a token or key shorter than 3 characters");
            }
        }
        match &app.desk {
            DeskConfig::UdeskIm(c) if c.sign_window_secs == 0 && !cb.insecure_test_settings => {
                return test_only(key("desk.sign_window_secs"), "0 (no freshness check)");
            }
            DeskConfig::UdeskIm(c) => {
                windows.push((key("desk.sign_window_secs"), c.sign_window_secs))
            }
            DeskConfig::TencentIm(_) => windows.push((key("desk"), TENCENT_SIGN_WINDOW_SECS)),
            _ => {}
        }
    }
    if let Some((name, w)) = windows.iter().find(|(_, w)| cb.inbox_ttl_secs < 2 * w) {
        return Err(invalid(
            "callback.inbox_ttl_secs",
            format!(
                "must be at least twice {name} ({w} s): a request must not outlive its dedup entry"
            ),
        ));
    }
    Ok(())
}

pub(super) fn is_gateway_key(k: &str) -> bool {
    k.len() >= 16
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A forward proxy is `http://[user:password@]host:port`: reqwest speaks plain HTTP to it
/// and tunnels https through CONNECT. The value is never quoted (it may hold a password).
pub(super) fn check_proxy(proxy: &str) -> Result<(), String> {
    let Some(rest) = proxy.strip_prefix("http://") else {
        return Err(
            "must be http://host:port (the proxy itself is spoken to in plain HTTP)".into(),
        );
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ if authority.contains('/') => Err("must be http://host:port, without a path".into()),
        _ => Err("must name a host and a port (http://host:port)".into()),
    }
}

pub(super) fn check_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
        // The URL itself may carry a token (Udesk's channel path): it is not repeated.
        _ => Err("is not an http(s) URL".to_owned()),
    }
}
