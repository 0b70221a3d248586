//! The config's parse: its shape, its errors, the store from the environment.

use super::checks::check_proxy;
use super::*;

#[test]
fn proxies_are_http_host_and_port() {
    assert!(check_proxy("http://10.0.0.5:3128").is_ok());
    assert!(check_proxy("http://user:pa55@proxy.internal:8080/").is_ok());
    assert!(check_proxy("https://proxy:443").is_err());
    assert!(check_proxy("http://proxy").is_err());
    assert!(check_proxy("http://proxy:8080/path").is_err());
    assert!(check_proxy("socks5://proxy:1080").is_err());
    let err = Config::parse(&GOOD.replace(
        "[[apps]]",
        "[wechat]\nproxy = \"http://user:hunter2@proxy\"\n[[apps]]",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("wechat.proxy") && !err.contains("hunter2"),
        "{err}"
    );
}

const GOOD: &str = r#"
[store]
backend = "embedded"
path = ".wxdesk-data"

[[apps]]
appid = "wx1234"
kind = "official_account"
token = "tok"
encoding_aes_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
secret = "s3cr3t-value"
[apps.desk]
kind = "udesk_wechat"
url = "https://demo.udesk.cn/weixin/abc"
"#;

#[test]
fn parses_the_documented_shape() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(
        c.store,
        StoreConfig::Embedded {
            path: ".wxdesk-data".into()
        }
    );
    assert_eq!(c.wechat.api_base, "https://api.weixin.qq.com");
    let app = c.app("wx1234").unwrap();
    assert_eq!(app.kind, AppKind::OfficialAccount);
    assert!(app.skips_event("LOCATION", &c.callback));
    assert!(!app.skips_event("subscribe", &c.callback));
    assert!(c.app("wx9999").is_none());
    // Secrets never show in Debug output.
    assert!(!format!("{c:?}").contains("s3cr3t-value"));
    assert!(!format!("{c:?}").contains("AAAAAAAAAAAA"));
}

#[test]
fn deployments_supply_the_store() {
    let no_store = GOOD.replace(
        "[store]\nbackend = \"embedded\"\npath = \".wxdesk-data\"\n",
        "",
    );
    assert!(
        Config::parse(&no_store)
            .unwrap_err()
            .to_string()
            .contains("[store]")
    );
    let aws = StoreConfig::Aws {
        dedup_table: "t".into(),
        tokens_table: None,
        media_bucket: None,
        queue_url: None,
        registry_table: None,
        kms_key: None,
    };
    assert_eq!(
        Config::parse_with_store(&no_store, Some(aws.clone()))
            .unwrap()
            .store,
        aws
    );
    assert_eq!(
        Config::parse_with_store(GOOD, Some(aws.clone()))
            .unwrap()
            .store,
        aws
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            GOOD.replace("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short"),
            "line 10: encoding_aes_key: encoding_aes_key must be 43",
        ),
        (
            GOOD.replace("https://demo.udesk.cn/weixin/abc", "ftp://x"),
            "apps[0].desk.url",
        ),
        (
            GOOD.replace("token = \"tok\"", "token = \"\""),
            "apps[0].token",
        ),
        (
            GOOD.replace("appid = \"wx1234\"", "appid = \"wx/12\""),
            "line 7: appid: an appid must be 1-64",
        ),
        (
            GOOD.replace("kind = \"official_account\"", "kind = \"shop\""),
            "unknown variant",
        ),
        (GOOD.replace("secret = ", "secrett = "), "secrett"),
        (
            GOOD.replace("backend = \"embedded\"", "backend = \"redis\""),
            "redis",
        ),
        (
            format!("{GOOD}\n[callback]\nreply_deadline_ms = 6000\n"),
            "callback.reply_deadline_ms",
        ),
        (
            format!(
                "{GOOD}{}",
                GOOD.split("[[apps]]")
                    .nth(1)
                    .map(|a| format!("[[apps]]{a}"))
                    .unwrap()
            ),
            "configured twice",
        ),
    ];
    // Review 2, §4: the windows and the test-only settings.
    for (extra, needle) in [
        (
            "[callback]\nmax_timestamp_skew_secs = 0\n",
            "insecure_test_settings",
        ),
        (
            "[callback]\ninbox_ttl_secs = 500\n",
            "at least twice callback.max_timestamp_skew_secs",
        ),
    ] {
        let err = Config::parse(&format!("{GOOD}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("callback.") && err.contains(needle), "{err}");
    }
    let short = GOOD.replace("token = \"tok\"", "token = \"t\"");
    let err = Config::parse(&short).unwrap_err().to_string();
    assert!(err.contains("apps[0].token"), "{err}");
    let allowed = format!(
        "{}\n[callback]\ninsecure_test_settings = true\nmax_timestamp_skew_secs = 0\n",
        short
    );
    assert!(Config::parse(&allowed).is_ok());
    let numeric = GOOD.replace("secret = \"s3cr3t-value\"", "secret = 20240501123");
    let err = Config::parse(&numeric).unwrap_err().to_string();
    assert!(
        err.contains("secret") && !err.contains("20240501123"),
        "{err}"
    );
    let url = GOOD.replace(
        "https://demo.udesk.cn/weixin/abc",
        "ftp://demo.udesk.cn/weixin/channel-token-9876",
    );
    let err = Config::parse(&url).unwrap_err().to_string();
    assert!(
        err.contains("apps[0].desk.url") && !err.contains("channel-token-9876"),
        "{err}"
    );
    for (text, needle) in cases {
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert!(!err.contains("s3cr3t-value"));
    }
}

/// The example's `key = value` lines of the install-wide sections, commented or not, are
/// the defaults (but for the two listed, which show a value to use): each line toggled
/// alone (commented out, or uncommented with its section's header) parses to the same
/// sections. And docs/configuration.md's row for each key gives the same value. So the
/// defaults are written once, in code, and neither document can drift from them.
#[test]
fn the_example_and_the_docs_give_the_defaults() {
    const EXAMPLES: [&str; 2] = ["proxy", "trusted_proxies"];
    let example = include_str!("../../../wxdesk.example.toml");
    let docs = include_str!("../../../docs/configuration.md");
    let sections = |text: &str| {
        let c = Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        format!(
            "{:?}",
            (
                &c.wechat,
                &c.media,
                &c.fetch,
                &c.server,
                &c.callback,
                &c.delivery,
                &c.registry
            )
        )
    };
    let base = sections(example);
    let lines: Vec<&str> = example.lines().collect();
    let mut header: Option<(usize, String)> = None;
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let (commented, text) = match line.strip_prefix("# ") {
            Some(t) => (true, t),
            None => (false, *line),
        };
        let code = text.split(" #").next().unwrap_or("").trim();
        if code.starts_with("[[") {
            break;
        }
        if let Some(name) = code.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
            header = Some((i, name.to_owned()));
            continue;
        }
        let Some((key, value)) = code.split_once(" = ") else {
            continue;
        };
        let Some((h, section)) = header.clone().filter(|(_, s)| s != "store") else {
            continue;
        };
        if !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let mut toggled: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        toggled[i] = if commented {
            text.to_owned()
        } else {
            format!("# {line}")
        };
        if commented {
            toggled[h] = lines[h].trim_start_matches("# ").to_owned();
        }
        let same = sections(&toggled.join("\n")) == base;
        if EXAMPLES.contains(&key) {
            assert!(
                !same,
                "[{section}] {key}: the example's value is the default"
            );
            continue;
        }
        assert!(same, "[{section}] {key} = {value}: not the default");
        let row = docs
            .lines()
            .find(|r| {
                r.starts_with('|')
                    && r.contains(&format!("[{section}]"))
                    && (r.contains(&format!("`{key}`")) || r.contains(&format!(" {key}`")))
            })
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for [{section}] {key}"));
        for v in value
            .trim_matches(['[', ']'])
            .split(',')
            .map(|v| v.trim().trim_matches('"'))
        {
            assert!(
                row.contains(v),
                "docs/configuration.md's row for [{section}] {key} does not give {v}: {row}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 25,
        "only {checked} defaults found in the example"
    );
}
