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

/// WeChat's URL verification for the example config's account, signed now.
fn verification(echostr: &str) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = wxdesk::wechat::signature::push_signature("replace-with-your-token", &ts, "n");
    format!(
        "GET /wechat/wx0000000000000000?signature={sig}&timestamp={ts}&nonce=n&echostr={echostr} \
         HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
}

/// A fresh directory with the example config pointed into it, and a free port:
/// (directory, config file, port).
fn example_setup(name: &str) -> (std::path::PathBuf, std::path::PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("wxdesk-bin-{name}-{}", std::process::id()));
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
    (dir, cfg, port)
}

#[test]
fn serves_the_example_config() {
    let (_dir, cfg, port) = example_setup("ok");
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(verification("hello42").as_bytes()).unwrap();
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

/// Security review §6: under `ulimit -n 64` accept errors were retried in a tight loop,
/// burning a core and writing millions of "accept failed" lines. Now they back off (up to
/// 1 s) and are logged at most once per 10 s, and the server recovers when descriptors free.
#[test]
fn accept_errors_back_off_and_are_logged_sparingly() {
    let (dir, cfg, port) = example_setup("emfile");
    let log = dir.join("server.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48; exec {BIN} --config {} --listen 127.0.0.1:{port} > {} 2>&1",
            cfg.display(),
            log.display()
        ))
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "wxdesk-local did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hold more connections than the server has descriptors for.
    let held: Vec<_> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // utime + stime, in clock ticks (fields 14 and 15 of the whole line).
        fields[10] + fields[11]
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu() - before;
    drop(held);
    // Descriptors free again: a legitimate request is served.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(verification("back").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    child.kill().unwrap();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = logged.matches("accept failed").count();
    assert!(lines >= 1, "the exhaustion was never logged: {logged}");
    assert!(lines <= 3, "{lines} accept-failure lines in 2.5 s");
    // 100 ticks per second: a spinning loop would use about 200 in 2 s.
    assert!(
        ticks < 40,
        "the accept loop used {ticks} ticks of CPU in 2 s"
    );
    assert!(answer.ends_with("back"), "{answer}");
}
