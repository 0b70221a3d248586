//! Many accounts in the registry (nine in ten shops that authorized the platform, one in
//! ten added with their own credentials; 1,000 in the suite, `WXDESK_SCALE_ACCOUNTS=10000`
//! for the figures), on DynamoDB Local with the data key wrapped by moto's KMS:
//! the real bootstrap runs as `component-push` with the cold-start harness's Runtime API
//! (`coldstart`), and is timed exec → ready (no account is read at init), then serves pushes
//! for 400 different shops while its resident memory is read from /proc (the account cache
//! holds at most `[registry] cache_entries`, here 128). Then `wechat-callback` serves a
//! push for one of the accounts added with their own credentials.
//!
//! Figures for docs/deployment.md: run it on a release build with `--nocapture`
//! (`WXDESK_BOOTSTRAP=target/release/wxdesk-lambda`, as `coldstart`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wxdesk::store::{AccountSettings, Authorizer, RegistryStore, Standing};
use wxdesk_tests::open_platform::*;
use wxdesk_tests::*;

use super::coldstart::{Seen, bootstrap, runtime_api};

const PUSHED: usize = 400;

/// How many accounts: `WXDESK_SCALE_ACCOUNTS`, else 1,000 (the suite's: 10,000 writes take
/// DynamoDB Local half a minute on 2 cores).
fn accounts() -> usize {
    std::env::var("WXDESK_SCALE_ACCOUNTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
        .max(PUSHED * 10 / 9 + 10)
}

/// (shops, accounts with their own credentials).
fn split() -> (usize, usize) {
    let n = accounts();
    (n - n / 10, n / 10)
}

fn shop(i: usize) -> String {
    format!("wxshop{i:010}")
}

fn own(i: usize) -> String {
    format!("wxown{i:011}")
}

/// Fills the registry: every shop authorized (no settings: `[component.desk]` serves it),
/// every own-credentials account with its sealed `[[apps]]` entry.
async fn fill(registry: &dyn RegistryStore) {
    let sealer = registry.sealer().await.unwrap();
    let now = wxdesk::support::clock::unix_ms();
    let record = |appid: String, component: &str| Authorizer {
        appid,
        component: component.to_owned(),
        sealed_refresh_token: String::new(),
        permissions: vec![1],
        standing: Standing::Authorized,
        changed_at_ms: now,
        sealed_settings: None,
    };
    let (shops, owns) = split();
    let mut all: Vec<Authorizer> = (0..shops)
        .map(|i| record(shop(i), COMPONENT_APPID))
        .collect();
    for i in 0..owns {
        let appid = own(i);
        let entry = format!(
            "appid = \"{appid}\"\nkind = \"official_account\"\ntoken = \"own-token\"\n\
             secret = \"own-secret\"\n[desk]\nkind = \"echo\"\n"
        );
        let settings = AccountSettings {
            app: Some(entry),
            ..Default::default()
        };
        all.push(Authorizer {
            sealed_settings: Some(settings.seal(&sealer, &appid)),
            ..record(appid, "")
        });
    }
    let started = Instant::now();
    let stored: Vec<bool> = futures_util::stream::iter(all.iter())
        .map(|a| async move { registry.put_authorizer(a).await.unwrap() })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(stored.iter().all(|s| *s));
    eprintln!(
        "scale: {} accounts written to the registry in {:.1} s",
        stored.len(),
        started.elapsed().as_secs_f64()
    );
}

/// API Gateway's event for a customer's text to `appid`, pushed as WeChat does: at the
/// platform's message URL for a shop, at the account's own URL otherwise.
fn event(appid: &str, platform: bool, id: usize) -> String {
    let ts = now_secs();
    let plain = format!(
        "<xml><ToUserName><![CDATA[gh_s]]></ToUserName><FromUserName><![CDATA[oScale{id}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[n{id}]]></Content>\
         <MsgId>{id}</MsgId></xml>"
    );
    let nonce = format!("s{id}");
    let (query, body, path, route, params) = if platform {
        let (q, b) = authorizer_push("gh_s", &plain, ts, &nonce);
        (
            q,
            b,
            format!("/wechat/component/{COMPONENT_APPID}/{appid}"),
            "POST /wechat/component/{platform}/{appid}",
            serde_json::json!({"platform": COMPONENT_APPID, "appid": appid}),
        )
    } else {
        let sig = wxdesk::wechat::signature::push_signature("own-token", &ts.to_string(), &nonce);
        (
            format!("signature={sig}&timestamp={ts}&nonce={nonce}"),
            plain,
            format!("/wechat/{appid}"),
            "ANY /wechat/{appid}",
            serde_json::json!({"appid": appid}),
        )
    };
    let query_map: serde_json::Map<String, serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
        .collect();
    serde_json::json!({
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": "text/xml"},
        "queryStringParameters": query_map, "pathParameters": params,
        "requestContext": {"accountId": "123456789012", "apiId": "sc", "domainName": "sc.example", "domainPrefix": "sc",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "101.226.103.0", "userAgent": "wx"},
            "requestId": "sc", "routeKey": route, "stage": "$default", "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": ts * 1000},
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

/// The process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Function<'a> {
    name: &'a str,
    env: &'a [(&'a str, String)],
}

impl Function<'_> {
    /// Runs the bootstrap for `events`; calls `each` after every answered event with the
    /// count so far and the process id. Returns the Runtime API's record and exec → ready.
    async fn run(
        &self,
        events: Vec<String>,
        mut each: impl FnMut(usize, u32),
    ) -> (Arc<Mutex<Seen>>, Duration) {
        let n = events.len();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let api = runtime_api(events, seen.clone()).await;
        let exe = bootstrap();
        let started = Instant::now();
        let mut cmd = std::process::Command::new(exe);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", self.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "sc")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "sc")
            .env("WXDESK_FUNCTION", self.name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut reported = 0;
        loop {
            let (answered, failed) = {
                let s = seen.lock().unwrap();
                (s.responses.len(), s.error.is_some())
            };
            while reported < answered {
                reported += 1;
                each(reported, child.id());
            }
            if answered == n || failed || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let ready = seen.lock().unwrap().nexts.first().map(|t| *t - started);
        (seen, ready.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_start_cold_and_stay_bounded() {
    // 10,000 writes load DynamoDB Local: not beside the tests that time it (`aws_store`).
    let _heavy = super::aws_store::HEAVY.lock().await;
    let ddb = dynamodb().await;
    let pid = std::process::id();
    let (inbox, tokens, registry_table) = (
        format!("sc-inbox-{pid}"),
        format!("sc-tokens-{pid}"),
        format!("sc-registry-{pid}"),
    );
    wxdesk::store::aws::create_dedup_table(&ddb, &inbox)
        .await
        .unwrap();
    wxdesk::store::aws::create_tokens_table(&ddb, &tokens)
        .await
        .unwrap();
    wxdesk::store::aws::create_registry_table(&ddb, &registry_table)
        .await
        .unwrap();
    let (kms, key) = moto_kms_key().await;
    let registry =
        wxdesk::store::aws::AwsRegistry::new(ddb, &registry_table, Some((kms, key.clone())));
    fill(&registry).await;
    let (_sqs, queue_url) = sqs_fifo_queue().await;
    let cfg = moto_sdk_config().await;
    let secret = format!("sc-config-{pid}");
    let doc = format!(
        "{}[component.desk]\nkind = \"echo\"\n[registry]\ncache_entries = 128\n",
        component_config()
    );
    aws_sdk_secretsmanager::Client::new(&cfg)
        .create_secret()
        .name(&secret)
        .secret_string(doc)
        .send()
        .await
        .unwrap();
    let env = [
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", moto().to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local().to_owned()),
        ("WXDESK_CONFIG_SECRET", secret),
        ("WXDESK_DEDUP_TABLE", inbox),
        ("WXDESK_TOKENS_TABLE", tokens),
        ("WXDESK_REGISTRY_TABLE", registry_table),
        ("WXDESK_KMS_KEY", key),
        ("WXDESK_QUEUE_URL", queue_url),
    ];

    // Shops spread over the registry, each pushed once: every push a cache miss.
    let (shops, owns) = split();
    let step = shops / PUSHED;
    let events: Vec<String> = (0..PUSHED)
        .map(|k| event(&shop(k * step), true, k))
        .collect();
    let push = Function {
        name: "component-push",
        env: &env,
    };
    let mut rss = Vec::new();
    let (seen, ready) = push
        .run(events, |n, child| {
            if n == 1 || n == 10 || n % 100 == 0 {
                rss.push((n, rss_kib(child)));
            }
        })
        .await;
    {
        let s = seen.lock().unwrap();
        assert!(s.error.is_none(), "{:?}", s.error);
        assert_eq!(s.responses.len(), PUSHED, "every shop's push answered");
        for (i, (_, r)) in s.responses.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            assert_eq!(v["statusCode"], 200, "push {i}: {r}");
            assert!(
                v["body"].as_str().unwrap_or("").contains("<Encrypt>"),
                "push {i}: {r}"
            );
        }
        let took = |i: usize| s.responses[i].0 - s.nexts[i];
        let mut warm: Vec<Duration> = (1..PUSHED).map(took).collect();
        warm.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "scale ({}): exec → ready {:.1} ms; first push {:.1} ms; later pushes (each a new account) median {:.1} ms, p99 {:.1} ms; RSS KiB after n pushes {rss:?}",
            bootstrap().display(),
            ms(ready),
            ms(took(0)),
            ms(warm[warm.len() / 2]),
            ms(warm[warm.len() * 99 / 100]),
        );
        // Loose bounds for the test build: no account is read at init, and memory stops
        // growing once the cache is full (128 entries) whatever the number of accounts.
        assert!(
            ready < Duration::from_secs(2),
            "exec → ready took {ready:?}"
        );
        let at = |n: usize| {
            rss.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| *v)
                .unwrap_or(0)
        };
        assert!(
            at(PUSHED) < at(200) + 4096,
            "memory grew past the cache's bound: {rss:?}"
        );
    }

    // An account added with its own credentials, at its own URL, on wechat-callback.
    let callback = Function {
        name: "wechat-callback",
        env: &env,
    };
    let (seen, _) = callback
        .run(vec![event(&own(owns - 1), false, 9_999)], |_, _| {})
        .await;
    let s = seen.lock().unwrap();
    let v: serde_json::Value = serde_json::from_str(&s.responses[0].1).unwrap();
    assert_eq!(v["statusCode"], 200, "{v}");
    assert!(
        v["body"].as_str().unwrap_or("").contains("echo: n9999"),
        "{v}"
    );
}
