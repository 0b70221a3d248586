//! The cold-start harness: a Lambda Runtime API stand-in runs the real bootstrap as the
//! `wechat-callback` function on the aws store (DynamoDB Local, moto's SQS and S3) with its
//! config from a loopback Secrets Manager (moto's), hands it one push, and times exec →
//! ready (its first `GET /next`) → the first response.
//!
//! It runs on the test build's binary in the suite (a loose bound, and the answer must be
//! right). For the figures in docs/deployment.md (Cold start) run it on a release build:
//! `cargo build --release -p wxdesk-lambda && WXDESK_BOOTSTRAP=target/release/wxdesk-lambda
//! cargo test -p wxdesk-tests --test it coldstart:: -- --nocapture`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use wxdesk_tests::*;

/// What the Runtime API saw, with when.
#[derive(Default)]
pub(crate) struct Seen {
    /// Each `GET /next`: the first is "ready".
    pub(crate) nexts: Vec<Instant>,
    pub(crate) responses: Vec<(Instant, String)>,
    pub(crate) error: Option<String>,
}

/// A Runtime API that hands out `events` in turn and then holds every further `next`.
pub(crate) async fn runtime_api(events: Vec<String>, seen: Arc<Mutex<Seen>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (events, seen) = (events.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (events, seen) = (events.clone(), seen.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        if path.ends_with("/invocation/next") {
                            let event = {
                                let mut s = seen.lock().unwrap();
                                s.nexts.push(Instant::now());
                                events.get(s.nexts.len() - 1).cloned()
                            };
                            let Some(event) = event else {
                                return std::future::pending().await;
                            };
                            let deadline = wxdesk::support::clock::unix_ms() + 6000;
                            *resp.body_mut() = Full::new(Bytes::from(event));
                            let h = resp.headers_mut();
                            let id = format!("req-{}", seen.lock().unwrap().nexts.len());
                            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                            h.insert(
                                "lambda-runtime-deadline-ms",
                                deadline.to_string().parse().unwrap(),
                            );
                            h.insert(
                                "lambda-runtime-invoked-function-arn",
                                "arn:aws:lambda:us-east-1:123456789012:function:wechat-callback"
                                    .parse()
                                    .unwrap(),
                            );
                            h.insert(
                                "lambda-runtime-trace-id",
                                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
                            );
                        } else if path.ends_with("/response") {
                            seen.lock().unwrap().responses.push((Instant::now(), body));
                            *resp.status_mut() = hyper::StatusCode::ACCEPTED;
                        } else if path.ends_with("/error") {
                            seen.lock().unwrap().error = Some(body);
                            *resp.status_mut() = hyper::StatusCode::ACCEPTED;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The bootstrap to time: `WXDESK_BOOTSTRAP`, else the test build's `wxdesk-lambda`.
pub(crate) fn bootstrap() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("WXDESK_BOOTSTRAP") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "wxdesk-lambda"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "cannot build wxdesk-lambda");
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    target.join("debug/wxdesk-lambda")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_callback_cold_start() {
    let (_sqs, queue_url) = sqs_fifo_queue().await;
    // The tables and the bucket the function is told about.
    let ddb = dynamodb().await;
    let n = std::process::id();
    let (inbox, tokens, bucket) = (
        format!("cs-inbox-{n}"),
        format!("cs-tokens-{n}"),
        format!("cs-media-{n}"),
    );
    wxdesk::store::aws::create_dedup_table(&ddb, &inbox)
        .await
        .unwrap();
    wxdesk::store::aws::create_tokens_table(&ddb, &tokens)
        .await
        .unwrap();
    let cfg = moto_sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    // The config, in moto's Secrets Manager.
    let secret = format!("cs-config-{n}");
    let doc = "[[apps]]\nappid = \"wxcoldstart000001\"\nkind = \"official_account\"\n\
               token = \"coldstart-token\"\nsecret = \"coldstart-secret\"\n\
               gateway_key = \"coldstart-gateway-key\"\n[apps.desk]\nkind = \"echo\"\n";
    aws_sdk_secretsmanager::Client::new(&cfg)
        .create_secret()
        .name(&secret)
        .secret_string(doc)
        .send()
        .await
        .unwrap();
    // Two plain pushes, as API Gateway hands them over: the first pays what a cold
    // instance pays, the second shows what is left once it is warm.
    let ts = now_secs();
    let event = |id: u32| {
        // A nonce per push, as WeChat's: a plain-mode signature carries only its first body.
        let nonce = format!("n{id}");
        let sig =
            wxdesk::wechat::signature::push_signature("coldstart-token", &ts.to_string(), &nonce);
        let body = format!(
            "<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[oColdStart]]></FromUserName>\
             <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[warm {id}?]]></Content>\
             <MsgId>{id}</MsgId></xml>"
        );
        serde_json::json!({
        "version": "2.0", "routeKey": "ANY /wechat/{appid}", "rawPath": "/wechat/wxcoldstart000001",
        "rawQueryString": format!("signature={sig}&timestamp={ts}&nonce={nonce}"),
        "headers": {"content-type": "text/xml"},
        "queryStringParameters": {"signature": sig, "timestamp": ts.to_string(), "nonce": nonce},
        "pathParameters": {"appid": "wxcoldstart000001"},
        "requestContext": {"accountId": "123456789012", "apiId": "cs", "domainName": "cs.example", "domainPrefix": "cs",
            "http": {"method": "POST", "path": "/wechat/wxcoldstart000001", "protocol": "HTTP/1.1", "sourceIp": "101.226.103.0", "userAgent": "wx"},
            "requestId": "cs", "routeKey": "ANY /wechat/{appid}", "stage": "$default", "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": ts * 1000},
        "body": body, "isBase64Encoded": false
        })
        .to_string()
    };
    let exe = bootstrap();
    // Two cold starts: DynamoDB Local (a JVM) and moto are slow on a table's and a queue's
    // first requests, so the first run warms them and the second gives the function's figures.
    for round in 0..2u32 {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let api = runtime_api(
            vec![event(2 * round + 1), event(2 * round + 2)],
            seen.clone(),
        )
        .await;
        let started = Instant::now();
        let mut child = std::process::Command::new(&exe)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "wechat-callback")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "cs")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "cs")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", moto())
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local())
            .env("WXDESK_FUNCTION", "wechat-callback")
            .env("WXDESK_CONFIG_SECRET", &secret)
            .env("WXDESK_DEDUP_TABLE", &inbox)
            .env("WXDESK_TOKENS_TABLE", &tokens)
            .env("WXDESK_MEDIA_BUCKET", &bucket)
            .env("WXDESK_QUEUE_URL", &queue_url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().responses.len() < 2
            && seen.lock().unwrap().error.is_none()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let s = seen.lock().unwrap();
        assert!(
            s.error.is_none(),
            "the function reported an error: {:?}",
            s.error
        );
        assert_eq!(
            s.responses.len(),
            2,
            "the function did not answer both pushes"
        );
        let ready = s.nexts[0] - started;
        let first = s.responses[0].0 - s.nexts[0];
        let second = s.responses[1].0 - s.nexts[1];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "cold start of {} ({}): exec → ready {:.1} ms, first push {:.1} ms, second push {:.1} ms",
            exe.display(),
            if round == 0 {
                "stand-ins cold"
            } else {
                "stand-ins warm"
            },
            ms(ready),
            ms(first),
            ms(second),
        );
        for (i, (_, response)) in s.responses.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(response).unwrap();
            assert_eq!(v["statusCode"], 200, "{response}");
            let want = format!("echo: warm {}?", 2 * round + i as u32 + 1);
            assert!(
                v["body"].as_str().unwrap_or("").contains(&want),
                "{response}"
            );
        }
        // A loose bound for the test build; the release figures are in docs/deployment.md.
        assert!(
            ready < Duration::from_secs(2),
            "exec → ready took {ready:?}"
        );
    }
}
