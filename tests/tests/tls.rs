//! TLS through the stack we ship: ring as the provider (neither reqwest nor the AWS SDK has
//! one of its own, see the workspace Cargo.toml) and the system's root certificates, read
//! once. A throwaway CA is made the system's trust store through `SSL_CERT_FILE`, and a
//! rustls server on loopback presents a certificate it signed for `localhost`; a second
//! server presents one from a CA nobody trusts, which both stacks must refuse.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls;
use wxdesk::support::outbound::{AllowList, FetchError, Fetcher};

/// A certificate for `localhost` and its key, issued by a fresh CA.
struct Leaf {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn issue() -> (String, Leaf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let leaf = Leaf {
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
    };
    (ca.pem(), leaf)
}

/// The trusted leaf. The first call makes its CA the only system root, before any client
/// reads the roots (every test calls this first).
fn trusted() -> &'static Leaf {
    static LEAF: OnceLock<Leaf> = OnceLock::new();
    LEAF.get_or_init(|| {
        let (ca, leaf) = issue();
        let path = std::env::temp_dir().join(format!("wxdesk-tls-ca-{}.pem", std::process::id()));
        std::fs::write(&path, ca).unwrap();
        // SAFETY: set once, inside the OnceLock, before any code of this test binary reads
        // the roots; nothing else in this binary reads or writes the environment.
        unsafe { std::env::set_var("SSL_CERT_FILE", &path) };
        leaf
    })
}

/// Serves `body` as `content_type` over TLS with `leaf`; returns the port.
async fn serve(leaf: &Leaf, content_type: &'static str, body: &'static str) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.cert.clone().into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key.clone().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |_req| async move {
                    let mut r =
                        hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    r.headers_mut()
                        .insert("content-type", content_type.parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

async fn list_tables(port: u16) -> Result<Vec<String>, String> {
    let sdk = wxdesk_tests::sdk_config(&format!("https://localhost:{port}")).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    match tokio::time::timeout(Duration::from_secs(10), ddb.list_tables().send()).await {
        Ok(Ok(out)) => Ok(out.table_names().to_vec()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("timed out".into()),
    }
}

async fn fetch(port: u16) -> Result<Bytes, FetchError> {
    let fetcher = Fetcher::new(true, Duration::from_secs(5));
    let allow = AllowList::new(&["localhost".to_owned()]);
    let url = format!("https://localhost:{port}/media");
    fetcher.get(&url, &allow, 1024).await.map(|(_, b)| b)
}

const TABLES: &str = r#"{"TableNames":["over-tls"]}"#;
const JSON_1_0: &str = "application/x-amz-json-1.0";

#[tokio::test]
async fn the_aws_sdk_calls_over_tls_trusting_the_system_roots() {
    let port = serve(trusted(), JSON_1_0, TABLES).await;
    assert_eq!(list_tables(port).await.unwrap(), vec!["over-tls"]);
}

#[tokio::test]
async fn outbound_fetches_over_tls_trusting_the_system_roots() {
    let port = serve(trusted(), "image/png", "png bytes").await;
    assert_eq!(fetch(port).await.unwrap(), "png bytes");
}

#[tokio::test]
async fn both_stacks_refuse_a_certificate_no_root_vouches_for() {
    trusted();
    let (_, stranger) = issue();
    let port = serve(&stranger, JSON_1_0, TABLES).await;
    let sdk = list_tables(port).await;
    assert!(sdk.is_err(), "the SDK accepted an untrusted certificate");
    let fetched = fetch(port).await;
    assert!(
        matches!(fetched, Err(FetchError::Transport(_))),
        "{fetched:?}"
    );
}
