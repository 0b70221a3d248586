//! The config from AWS Secrets Manager (moto's): an install of 300 accounts read at init,
//! a new version taken without a restart, a version that fails validation refused with
//! the previous one kept in force.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use wxdesk::app::live::{Live, Source};
use wxdesk_tests::*;

/// A document with `n` safe-mode accounts on the echo desk.
fn document(store: &str, n: usize) -> String {
    let mut doc = format!("{store}\n");
    for i in 0..n {
        doc.push_str(&format!(
            "[[apps]]\nappid = \"wx{i:016}\"\nkind = \"official_account\"\n\
             token = \"token-{i:04}-secret-value\"\nsecret = \"appsecret-{i:04}-not-real\"\n\
             encoding_aes_key = \"{AES_KEY}\"\n\
             gateway_key = \"gateway-key-{i:04}-long-random\"\n[apps.desk]\nkind = \"echo\"\n\n"
        ));
    }
    doc
}

fn gzip(text: &str) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(text.as_bytes()).unwrap();
    z.finish().unwrap()
}

/// As an operator stores a large config as text: gzip, base64 (a secret holds 64 KB).
fn gzip_base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(gzip(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_accounts_from_a_secret_refreshed_without_a_restart() {
    let sm = aws_sdk_secretsmanager::Client::new(&moto_sdk_config().await);
    let name = format!("wxdesk-config-{}", std::process::id());
    let store = embedded_store("secret-config");
    let big = document(&store, 300);
    assert!(
        big.len() > 65_536,
        "300 accounts outgrow a plain secret: {}",
        big.len()
    );
    sm.create_secret()
        .name(&name)
        .secret_string(gzip_base64(&big))
        .send()
        .await
        .expect("create the secret in moto");
    let live = Live::start(
        Source::Secret {
            client: sm.clone(),
            id: name.clone(),
        },
        None,
        Some(Duration::ZERO),
    )
    .await
    .unwrap();
    assert_eq!(live.current().config.apps.len(), 300);
    let base = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let live = Arc::new(live);
        tokio::spawn(wxdesk::app::local::serve(
            live.clone(),
            listener,
            std::future::pending(),
        ));
        (base, live)
    };
    let (base, live) = base;
    let try_app = |n: usize| {
        let (live, base) = (live.clone(), base.clone());
        async move {
            let svc = live.fresh().await;
            let appid = format!("wx{n:016}");
            match svc.config.app(&appid) {
                Some(app) => {
                    wxdesk::app::simulate::simulate(app, &base, "oSecret", "hi", now_secs())
                        .await
                        .is_ok()
                }
                None => false,
            }
        }
    };
    assert!(try_app(299).await, "the 300th account is served");
    assert!(!try_app(300).await, "there is no 301st yet");

    // A version that fails validation: refused, the running one stays.
    sm.put_secret_value()
        .secret_id(&name)
        .secret_string(format!("{store}\n[[apps]]\nappid = \"not an appid\"\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.fresh().await.config.apps.len(), 300);
    assert!(try_app(0).await);

    // A valid new version (a binary secret this time) is in force at the next refresh.
    let next = gzip(&document(&store, 301));
    assert!(next.len() < 65_536);
    sm.put_secret_value()
        .secret_id(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(next))
        .send()
        .await
        .unwrap();
    assert_eq!(live.fresh().await.config.apps.len(), 301);
    assert!(
        try_app(300).await,
        "the new account is served without a restart"
    );
}
