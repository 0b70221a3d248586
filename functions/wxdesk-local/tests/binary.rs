//! The real `wxdesk-local` binary: it starts on the example config and answers WeChat's URL
//! verification; a bad config exits non-zero naming the key.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wxdesk-local");

#[test]
fn config_errors_exit_non_zero_and_name_the_key() {
    let dir = std::env::temp_dir().join(format!("wxdesk-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    let example = include_str!("../../../wxdesk.example.toml");
    std::fs::write(
        &bad,
        example.replace(
            "kind = \"udesk_wechat\"\nurl = \"https://",
            "kind = \"udesk_wechat\"\nurl = \"gopher://",
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apps[0].desk.url"), "{err}");
    assert!(!err.contains("replace-with-your-appsecret"));
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serves_the_example_config() {
    let dir = std::env::temp_dir().join(format!("wxdesk-bin-ok-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("example.toml");
    let example = include_str!("../../../wxdesk.example.toml");
    std::fs::write(
        &cfg,
        example.replace("\".wxdesk-data\"", &format!("{:?}", dir.join("data"))),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = wxdesk::wechat::signature::push_signature("replace-with-your-token", &ts, "n");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            write!(s, "GET /wechat/wx0000000000000000?signature={sig}&timestamp={ts}&nonce=n&echostr=hello42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            break out;
        }
        assert!(Instant::now() < deadline, "wxdesk-local did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello42"), "{answer}");
}
