//! Both HTTPS stacks (the AWS SDK's and reqwest's) speak TLS through the ring provider we
//! install: neither has a provider of its own (see the workspace Cargo.toml), so a missing
//! one would fail here, as a panic or as no handshake, instead of on a live account.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Listens once on loopback and returns the first bytes a client sends.
async fn first_bytes() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        buf
    });
    (url, task)
}

/// A TLS record header: handshake (22), version 3.x.
fn is_client_hello(b: &[u8]) -> bool {
    b.len() == 5 && b[0] == 22 && b[1] == 3
}

#[tokio::test]
async fn the_aws_sdk_opens_tls_with_our_provider() {
    let (url, seen) = first_bytes().await;
    let sdk = wxdesk_tests::sdk_config(&url).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let call = tokio::time::timeout(Duration::from_secs(3), ddb.list_tables().send());
    let (answer, bytes) = tokio::join!(call, tokio::time::timeout(Duration::from_secs(5), seen));
    let bytes = bytes.expect("the SDK never connected").unwrap();
    assert!(is_client_hello(&bytes), "not a TLS ClientHello: {bytes:?}");
    // The stand-in never answers the handshake, so the call cannot succeed.
    assert!(!matches!(answer, Ok(Ok(_))));
}

#[tokio::test]
async fn outbound_http_opens_tls_with_our_provider() {
    let (url, seen) = first_bytes().await;
    let http = wxdesk_tests::http();
    let call = tokio::time::timeout(Duration::from_secs(3), http.get(&url).send());
    let (answer, bytes) = tokio::join!(call, tokio::time::timeout(Duration::from_secs(5), seen));
    let bytes = bytes.expect("reqwest never connected").unwrap();
    assert!(is_client_hello(&bytes), "not a TLS ClientHello: {bytes:?}");
    assert!(!matches!(answer, Ok(Ok(_))));
}
