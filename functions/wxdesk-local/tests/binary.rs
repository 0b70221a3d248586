//! The real `wxdesk-local` binary: it starts on the example config and answers WeChat's URL
//! verification; a bad config exits non-zero naming the key; `kill -9` mid-delivery loses
//! nothing.

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
            "[apps.desk]\nkind = \"echo\"",
            "[apps.desk]\nkind = \"udesk_wechat\"\nurl = \"gopher://example.udesk.cn/w\"",
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
    let ts = (wxdesk::support::clock::unix_ms() / 1000).to_string();
    let sig = wxdesk::wechat::signature::push_signature("replace-with-your-token", &ts, "n");
    format!(
        "GET /wechat/wx0000000000000000?signature={sig}&timestamp={ts}&nonce=n&echostr={echostr} \
         HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
}

/// A loopback port nobody listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    (dir, cfg, free_port())
}

#[test]
fn serves_the_example_config() {
    let (_dir, cfg, port) = example_setup("ok");
    let mut child = start_server(&cfg, port);
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

/// The README's "try it": the example config alone, the echo desk, and `simulate`
/// playing WeChat against the running server.
/// `wxdesk-local simulate` with `cfg`'s account `appid`, sending `text` to `url`.
fn simulate(cfg: &std::path::Path, appid: &str, text: &str, url: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "simulate",
            "--config",
            cfg.to_str().unwrap(),
            "--app",
            appid,
            "--text",
            text,
            "--url",
            url,
        ])
        .output()
        .unwrap()
}

#[test]
fn simulate_sees_the_echo_desk_answer() {
    let (_dir, cfg, port) = example_setup("simulate");
    let mut server = start_server(&cfg, port);
    let run = |text: &str, url: &str| simulate(&cfg, "wx0000000000000000", text, url);
    let out = run("hello there", &format!("http://127.0.0.1:{port}"));
    // Nothing listens there: an error and a non-zero exit.
    let down = run("x", "http://127.0.0.1:9");
    server.kill().unwrap();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("the customer sees: echo: hello there"),
        "{stdout}"
    );
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach"));
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
    // Serving first (a request answered), not only bound: connections made while the
    // server is still starting sit in the backlog and may never exhaust it in time.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = String::new();
            if s.write_all(verification("up").as_bytes()).is_ok()
                && s.read_to_string(&mut out).is_ok()
                && out.ends_with("up")
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "wxdesk-local did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hold more connections than the server has descriptors for, until it says so (the
    // server closes silent ones after first_line_timeout_ms, so keep opening more).
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut held = Vec::new();
    while !logged().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "the exhaustion was never logged: {}",
            logged()
        );
        if held.len() < 400 {
            held.extend(
                (0..40).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let logged = logged();
    let lines = logged.matches("accept failed").count();
    // One line per 10 s at most: the first, then 2 s of exhaustion.
    assert!(lines <= 2, "{lines} accept-failure lines: {logged}");
    // 100 ticks per second: a spinning loop would use about 200 in 2 s.
    assert!(
        ticks < 40,
        "the accept loop used {ticks} ticks of CPU in 2 s"
    );
    assert!(answer.ends_with("back"), "{answer}");
}

/// A desk on a plain socket for the crash test: a message whose content is `hang` is
/// read and never answered (the delivery is in the middle when the server is killed);
/// `fail` gets HTTP 500 until `healthy` is set; everything else `success`. Records the
/// MsgIds it read.
struct CrashDesk {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn crash_desk() -> CrashDesk {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: std::sync::Arc<std::sync::Mutex<Vec<u64>>> = Default::default();
    let healthy: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
    let (g, h) = (got.clone(), healthy.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (g, h) = (g.clone(), h.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = s.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break text[end + 4..].to_owned();
                        }
                    }
                };
                let field = |name: &str| {
                    body.split(&format!("<{name}>"))
                        .nth(1)
                        .and_then(|r| r.split(&format!("</{name}>")).next())
                        .unwrap_or("")
                        .trim_start_matches("<![CDATA[")
                        .trim_end_matches("]]>")
                        .to_owned()
                };
                let content = field("Content");
                if content == "fail" && !h.load(Ordering::SeqCst) {
                    let _ = s.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
                g.lock().unwrap().push(field("MsgId").parse().unwrap_or(0));
                if content == "slow" {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                if content == "hang" && !h.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nsuccess",
                );
            });
        }
    });
    CrashDesk { port, got, healthy }
}

fn start_server(cfg: &std::path::Path, port: u16) -> std::process::Child {
    let child = Command::new(BIN)
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
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "wxdesk-local did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A plain-mode push, signed now, sent on its own thread (it may never be answered);
/// the thread returns the raw answer.
fn send_push(
    port: u16,
    customer: &str,
    msg_id: u64,
    content: &str,
) -> std::thread::JoinHandle<String> {
    let ts = (wxdesk::support::clock::unix_ms() / 1000).to_string();
    // A nonce per message, as WeChat's: a plain-mode signature carries only its first body.
    let nonce = format!("n{msg_id}");
    let sig = wxdesk::wechat::signature::push_signature("crash-token", &ts, &nonce);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[{customer}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    );
    let request = format!(
        "POST /wechat/wxcrash0000000001?signature={sig}&timestamp={ts}&nonce={nonce} HTTP/1.1\r\n\
         Host: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        let mut out = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(request.as_bytes());
            let _ = s.read_to_string(&mut out);
        }
        out
    })
}

/// The crash test's config: the embedded store in `dir`, one plain-mode account whose
/// desk is on `desk_port`. Returns the config file and a free port for the server.
fn crash_setup(name: &str, desk_port: u16) -> (std::path::PathBuf, std::path::PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("wxdesk-bin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("crash.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nbackend = \"embedded\"\npath = {:?}\n\
             [wechat]\napi_base = \"http://127.0.0.1:9\"\n\
             [delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n\
             [server]\nadmin_key = \"crash-admin-key-0123456789\"\n\
             [[apps]]\nappid = \"wxcrash0000000001\"\nkind = \"official_account\"\n\
             token = \"crash-token\"\nsecret = \"crash-secret\"\ngateway_key = \"crash-gateway-key-0123\"\n\
             [apps.desk]\nkind = \"udesk_wechat\"\nurl = \"http://127.0.0.1:{}/desk\"\n",
            dir.join("data"),
            desk_port
        ),
    )
    .unwrap();
    (dir, cfg, free_port())
}

/// One GET on the server; the raw answer.
fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `/healthz` and `/readyz` answer; SIGTERM stops accepting but lets a push that is
/// being delivered get its answer, then the process exits 0.
#[test]
fn sigterm_drains_the_requests_in_flight() {
    let desk = crash_desk();
    let (dir, cfg, port) = crash_setup("drain", desk.port);
    let mut server = start_server(&cfg, port);
    assert!(get(port, "/healthz").ends_with("ok"));
    assert!(get(port, "/readyz").ends_with("ready"));
    let answer = send_push(port, "oDrainCustomer", 9301, "slow");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !desk.got.lock().unwrap().contains(&9301) {
        assert!(Instant::now() < deadline, "the desk never got the message");
        std::thread::sleep(Duration::from_millis(10));
    }
    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let answer = answer.join().unwrap();
    let status = server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("success"), "{answer}");
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after SIGTERM"
    );
}

/// `kill -9` in the middle of a delivery loses nothing: the message whose handler died
/// (the desk had read it, its answer never came) and a message waiting in the outbox's
/// queue are both delivered after the restart, with no WeChat retry to help.
#[test]
fn kill_9_mid_delivery_loses_nothing() {
    let desk = crash_desk();
    let (dir, cfg, port) = crash_setup("crash", desk.port);
    let mut server = start_server(&cfg, port);
    // Queued in the outbox: the desk refuses it for now.
    let _ = send_push(port, "oCrashQueued", 9002, "fail");
    // In the middle of its delivery when the server dies.
    let _ = send_push(port, "oCrashInFlight", 9001, "hang");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !desk.got.lock().unwrap().contains(&9001) {
        assert!(Instant::now() < deadline, "the desk never got the message");
        std::thread::sleep(Duration::from_millis(20));
    }
    let claimed = Instant::now();
    // Let the queued one be refused at least once by the worker too.
    std::thread::sleep(Duration::from_millis(1500));
    server.kill().unwrap(); // SIGKILL
    let _ = server.wait();
    desk.healthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The dead handler's lease (deadline + 1.5 s) and the sweep's grace (5 s) run out.
    let wait = Duration::from_secs(12).saturating_sub(claimed.elapsed());
    std::thread::sleep(wait);
    let mut server = start_server(&cfg, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = desk.got.lock().unwrap().clone();
        if (got.iter().filter(|&&id| id == 9001).count() >= 2 && got.contains(&9002))
            || Instant::now() > deadline
        {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(got.contains(&9002), "the queued message was lost: {got:?}");
    assert_eq!(
        got.iter().filter(|&&id| id == 9001).count(),
        2,
        "the in-flight message: read before the crash, delivered after it: {got:?}"
    );
}

/// SIGHUP reads the config file again: a new account is served without a restart; a
/// file that fails validation is refused and the running config stays.
#[test]
fn sighup_reloads_the_config_file() {
    let (dir, cfg, port) = example_setup("reload");
    let mut server = start_server(&cfg, port);
    let url = format!("http://127.0.0.1:{port}");
    let simulate = |appid: &str| simulate(&cfg, appid, "reloaded", &url);
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        // The reload happens on the server's own time.
        std::thread::sleep(Duration::from_millis(500));
    };
    let original = std::fs::read_to_string(&cfg).unwrap();
    let second = "\n[[apps]]\nappid = \"wx0000000000000001\"\nkind = \"official_account\"\n\
                  token = \"second-token\"\nsecret = \"second-secret\"\n\
                  gateway_key = \"second-gateway-key\"\n[apps.desk]\nkind = \"echo\"\n";
    std::fs::write(&cfg, format!("{original}{second}")).unwrap();
    // Before the signal the server does not know the new account.
    let before = simulate("wx0000000000000001");
    hup(server.id());
    let after = simulate("wx0000000000000001");
    // A broken file: refused, the running config (both accounts) stays.
    std::fs::write(
        &cfg,
        format!("{original}{second}\n[[apps]]\nappid = \"bad id\"\n"),
    )
    .unwrap();
    hup(server.id());
    std::fs::write(&cfg, format!("{original}{second}")).unwrap();
    let still = simulate("wx0000000000000001");
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!before.status.success(), "served before the reload");
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(String::from_utf8_lossy(&after.stdout).contains("echo: reloaded"));
    assert!(
        still.status.success(),
        "{}",
        String::from_utf8_lossy(&still.stderr)
    );
}

/// The embedded store is locked by the running server: `check` needs no store, and
/// `doctor` and `outbox` ask the server through its admin routes.
#[test]
fn operations_work_beside_the_running_server() {
    let desk = crash_desk();
    let (dir, cfg, port) = crash_setup("ops", desk.port);
    let mut server = start_server(&cfg, port);
    let _ = send_push(port, "oOpsCustomer", 9401, "fail").join();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        let cfg = cfg.to_str().unwrap().to_owned();
        let url = format!("http://127.0.0.1:{port}");
        all.extend(["--config", cfg.as_str()]);
        if args[0] != "check" {
            all.extend(["--server", url.as_str()]);
        }
        Command::new(BIN).args(&all).output().unwrap()
    };
    let check = run(&["check"]);
    let listed = run(&["outbox", "list", "--state", "all"]);
    let doctor = run(&["doctor"]);
    let replay = run(&["outbox", "replay", "--dead"]);
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let out = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(check.status.success() && out(&check).contains("config OK: 1 accounts"));
    assert!(listed.status.success(), "{}", out(&listed));
    assert!(out(&listed).contains("oOpsCustomer"), "{}", out(&listed));
    // The doctor ran in the server: its config line passes (WeChat is unreachable here).
    assert!(
        out(&doctor).contains("PASS wxcrash0000000001"),
        "{}",
        out(&doctor)
    );
    assert!(replay.status.success(), "{}", out(&replay));
    assert!(
        out(&replay).contains("0 entries queued again"),
        "{}",
        out(&replay)
    );
}

/// `urls` prints every URL to paste into a console, `<purpose>: <url>` one per line, keys
/// filled in, on the server's own address or on `--base`; it needs no store.
#[test]
fn urls_prints_each_console_url_with_its_key() {
    let (dir, cfg, port) = example_setup("urls");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "# [server]",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n# "),
        )
        .replace(
            "[apps.desk]\nkind = \"echo\"",
            "[apps.desk]\nkind = \"udesk_wechat\"\nurl = \"https://example.udesk.cn/weixin/x\"\n\
             [apps.chatbot]\nappid = \"wxplatform\"\ntoken = \"PLATFORMTOKEN\"\n\
             encoding_aes_key = \"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"\n\
             gateway_key = \"handoff-key-0123456789abc\"",
        );
    std::fs::write(&cfg, text).unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["urls", "--config", cfg.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id = "wx0000000000000000";
    let key = "replace-with-a-long-random-key";
    let local = run(&[]);
    assert_eq!(
        local.lines().collect::<Vec<_>>(),
        [
            format!("{id} WeChat push URL: http://127.0.0.1:{port}/wechat/{id}"),
            format!("{id} Udesk simulated WeChat domain: http://127.0.0.1:{port}/udesk/{id}/{key}"),
            format!(
                "{id} Dialogue Platform hand-off URL: http://127.0.0.1:{port}/chatbot/{id}/handoff-key-0123456789abc"
            ),
            format!(
                "{id} desk's Dialogue Platform event URL: http://127.0.0.1:{port}/chatbot/{id}/{key}/event"
            ),
        ]
    );
    let api = run(&["--base", "https://api.example.com/prod/", "--app", id]);
    assert!(
        api.lines().next().is_some_and(
            |l| l == format!("{id} WeChat push URL: https://api.example.com/prod/wechat/{id}")
        ),
        "{api}"
    );
    let out = Command::new(BIN)
        .args([
            "urls",
            "--config",
            cfg.to_str().unwrap(),
            "--app",
            "wxnobody",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

/// Review 2, §2 and §3: the CLI sent the admin key to 127.0.0.1:8080 whatever port the
/// server used (a local user listening there got it), and the store was world-readable.
/// The server now records its address (0600) in its 0700 data directory; the CLI asks
/// that address only, and refuses a `--server` that is not loopback.
#[test]
fn the_admin_key_goes_only_to_the_server_holding_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let desk = crash_desk();
    let (dir, cfg, port) = crash_setup("addr", desk.port);
    // Someone else holds the port the config names; the server runs on another.
    let thief = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    thief.set_nonblocking(true).unwrap();
    let thief_port = thief.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[server]\n",
        &format!("[server]\nlisten = \"127.0.0.1:{thief_port}\"\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut server = start_server(&cfg, port);
    let data = dir.join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Written right after the listener is bound, which is when start_server sees it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.join("server.addr").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let recorded = std::fs::read_to_string(data.join("server.addr")).unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["doctor", "--config", cfg.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let doctor = run(&[]);
    let refused = run(&["--server", "http://wxdesk-not-loopback.invalid:8080"]);
    let modes = (
        mode(&data),
        mode(&data.join("wxdesk.redb")),
        mode(&data.join("server.addr")),
    );
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(recorded.trim(), format!("127.0.0.1:{port}"));
    assert_eq!(modes, (0o700, 0o600, 0o600));
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned()
        + &String::from_utf8_lossy(&doctor.stderr);
    assert!(out.contains("PASS wxcrash0000000001 config"), "{out}");
    assert!(
        thief.accept().is_err(),
        "the config's port got a connection"
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));
}

/// The declared command line: each subcommand has its own help, `--version` prints the
/// crate's version, and a usage error exits 2 naming what is wrong.
#[test]
fn every_command_has_its_help_and_the_binary_its_version() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("wxdesk-local {}", env!("CARGO_PKG_VERSION"))
    );
    for (cmd, flag) in [
        (&["doctor"][..], "--server <URL>"),
        (&["urls"], "--base <URL>"),
        (&["outbox", "list"], "--state <STATE>"),
        (&["outbox", "replay"], "--dead"),
        (&["simulate"], "--openid <OPENID>"),
        (&["accounts", "add"], "--file <FILE>"),
        (&["accounts", "list"], "--server <URL>"),
        (&["accounts", "disable"], "--app <APPID>"),
        (&["accounts", "enable"], "--app <APPID>"),
        (&["accounts", "rotate-key"], "--base <URL>"),
    ] {
        let help = run(&[cmd, &["--help"]].concat());
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{cmd:?}");
        assert!(
            text.contains(flag) && text.contains("--config <FILE>"),
            "{cmd:?}: {text}"
        );
    }
    let bad = run(&["outbox", "list", "--config", "x.toml", "--state", "gone"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("gone"));
}

/// `authorize-url` prints the page shops open, on the platform's entry domain; without a
/// platform (or its entry domain) it says what is missing and exits 1.
#[test]
fn authorize_url_prints_the_page_on_the_entry_domain() {
    let (dir, cfg, _) = example_setup("authorize-url");
    let run = || {
        Command::new(BIN)
            .args(["authorize-url", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[component]"));
    let example = std::fs::read_to_string(&cfg).unwrap();
    let platform = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if [
                    "[component]",
                    "appid = \"wx-your",
                    "secret = \"replace-with-the-platform",
                    "token = \"replace-with-the-platform",
                    "encoding_aes_key = \"43 characters from the Open",
                ]
                .iter()
                .any(|p| rest.starts_with(p)) =>
            {
                rest.to_owned()
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("wx-your-platform-appid", "wxplatform0000001")
        .replace(
            "43 characters from the Open Platform console",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        );
    std::fs::write(
        &cfg,
        format!("{platform}\npublic_base_url = \"https://wx.example.com\"\n"),
    )
    .unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "https://wx.example.com/component/wxplatform0000001/authorize"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `accounts`: with no server the CLI writes the store itself; beside the running server
/// it asks the server (its admin route), which serves the change at once. An account the
/// config lists is refused, and the refusal says why.
#[test]
fn accounts_are_added_listed_and_disabled_with_or_without_the_server() {
    const ADDED: &str = "wxadded000000002";
    let desk = crash_desk();
    let (dir, cfg, port) = crash_setup("accounts", desk.port);
    let file = dir.join("added.toml");
    std::fs::write(
        &file,
        format!(
            "appid = \"{ADDED}\"\nkind = \"official_account\"\ntoken = \"added-token\"\n\
             secret = \"added-secret-value\"\n[desk]\nkind = \"echo\"\n"
        ),
    )
    .unwrap();
    let configured = dir.join("configured.toml");
    std::fs::write(
        &configured,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace(ADDED, "wxcrash0000000001"),
    )
    .unwrap();
    let run = |args: &[&str], server: Option<u16>| {
        let mut all = args.to_vec();
        let cfg = cfg.to_str().unwrap().to_owned();
        let url = server.map(|p| format!("http://127.0.0.1:{p}"));
        all.extend(["--config", cfg.as_str()]);
        if let Some(u) = &url {
            all.extend(["--server", u.as_str()]);
        }
        let o = Command::new(BIN).args(&all).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };
    let file = file.to_str().unwrap();
    let added = run(&["accounts", "add", "--file", file], None);
    let listed = run(&["accounts", "list"], None);
    let refused = run(
        &["accounts", "add", "--file", configured.to_str().unwrap()],
        None,
    );
    let urls_alone = run(&["urls", "--app", ADDED, "--base", "https://api"], None);
    let unknown = run(&["urls", "--app", "wxnobody00000001"], None);
    let verify = |port| {
        let ts = (wxdesk::support::clock::unix_ms() / 1000).to_string();
        let sig = wxdesk::wechat::signature::push_signature("added-token", &ts, "n");
        get(
            port,
            &format!("/wechat/{ADDED}?signature={sig}&timestamp={ts}&nonce=n&echostr=added42"),
        )
    };
    let mut server = start_server(&cfg, port);
    let served = verify(port);
    let disabled = run(&["accounts", "disable", "--app", ADDED], Some(port));
    let closed = verify(port);
    let listed_after = run(&["accounts", "list"], Some(port));
    let urls_beside = run(&["urls", "--app", ADDED, "--base", "https://api"], None);
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(
        added,
        (
            Some(0),
            format!("{ADDED}: added with its own credentials\n")
        )
    );
    assert_eq!(listed.0, Some(0), "{}", listed.1);
    assert!(
        listed
            .1
            .contains(&format!("{ADDED} authorized (own credentials")),
        "{}",
        listed.1
    );
    assert_eq!(refused.0, Some(1), "{}", refused.1);
    assert!(
        refused.1.contains("an [[apps]] account of the config"),
        "{}",
        refused.1
    );
    assert!(!format!("{added:?}{listed:?}{refused:?}").contains("added-secret-value"));
    assert!(
        served.starts_with("HTTP/1.1 200") && served.ends_with("added42"),
        "{served}"
    );
    assert_eq!(disabled, (Some(0), format!("{ADDED}: disabled\n")));
    assert!(closed.starts_with("HTTP/1.1 404"), "{closed}");
    assert!(
        listed_after.1.contains(&format!("{ADDED} disabled")),
        "{}",
        listed_after.1
    );
    // `urls --app` lists a stored account's URLs like a configured one's, from the store
    // or from the server that holds it.
    let push_url = format!("{ADDED} WeChat push URL: https://api/wechat/{ADDED}");
    assert_eq!(urls_alone, (Some(0), format!("{push_url}\n")));
    assert_eq!(urls_beside, (Some(0), format!("{push_url}\n")));
    assert_eq!(unknown.0, Some(1), "{}", unknown.1);
    assert!(
        unknown.1.contains("no account wxnobody00000001"),
        "{}",
        unknown.1
    );
}
