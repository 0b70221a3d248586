//! Fault injection: 200 messages from 20 customers through the local server while the desk
//! goes down, refuses, resets, stalls and comes back, and the store stops for a while;
//! then the aws path with a Lambda "frozen" after its answer, its job run later from the
//! SQS message. Asserted: every accepted message reaches the desk; each customer's
//! messages arrive in order; a message arrives twice only where the desk lost its answer
//! after receiving it, and then with the same MsgId.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wxdesk_tests::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connection closed before the request is read: nothing received.
    Down,
    /// Read, then HTTP 500: the desk says it did not take it.
    Error,
    /// Read, then the connection is reset: received, answer lost.
    Reset,
    /// Read, then an answer after WeChat's deadline: received, answer lost.
    Slow,
}

/// One receipt at the desk.
#[derive(Debug, Clone)]
struct Receipt {
    msg_id: u64,
    customer: String,
    /// The desk's answer never reached wxdesk.
    lossy: bool,
    at: Instant,
}

/// A desk speaking udesk_wechat's wire format (WeChat XML in, `success` out) on a raw
/// socket, so it can drop and reset connections.
struct FaultyDesk {
    url: String,
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Vec<Receipt>>>,
}

impl FaultyDesk {
    async fn start() -> FaultyDesk {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/desk", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(Mode::Up));
        let got: Arc<Mutex<Vec<Receipt>>> = Arc::default();
        let (m, g) = (mode.clone(), got.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (m, g) = (m.clone(), g.clone());
                tokio::spawn(async move {
                    let mode = *m.lock().unwrap();
                    if mode == Mode::Down {
                        return;
                    }
                    let Some(body) = read_request(&mut stream).await else {
                        return;
                    };
                    let doc = wxdesk::wechat::xml::Doc::parse_xml(&body).unwrap();
                    let receipt = |lossy| Receipt {
                        msg_id: doc.text("MsgId").parse().unwrap(),
                        customer: doc.text("FromUserName"),
                        lossy,
                        at: Instant::now(),
                    };
                    match mode {
                        Mode::Down => {}
                        Mode::Error => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                        }
                        Mode::Reset => {
                            g.lock().unwrap().push(receipt(true));
                        }
                        Mode::Slow => {
                            g.lock().unwrap().push(receipt(true));
                            tokio::time::sleep(Duration::from_secs(6)).await;
                            let _ = stream.write_all(ok_response()).await;
                        }
                        Mode::Up => {
                            g.lock().unwrap().push(receipt(false));
                            let _ = stream.write_all(ok_response()).await;
                        }
                    }
                });
            }
        });
        FaultyDesk { url, mode, got }
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.got.lock().unwrap().clone()
    }
}

fn ok_response() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\nconnection: close\r\n\r\nsuccess"
}

/// The request's body (headers, then Content-Length bytes).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
            }
        }
    }
}

fn push(customer: &str, msg_id: u64, ts: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{customer}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[m{msg_id}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

/// Posts a plain-mode push for `customer` as WeChat would; returns the answer's body.
async fn post_push(http: &reqwest::Client, base: &str, customer: &str, id: u64, ts: i64) -> String {
    let r = http
        .post(format!(
            "{base}/wechat/{PLAIN_APPID}?{}",
            plain_query(ts, "f")
        ))
        .body(push(customer, id, ts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The three properties, over the desk's receipts of `sent` (customer → MsgIds in order).
fn check(receipts: &[Receipt], sent: &BTreeMap<String, Vec<u64>>) {
    let mut by_id: HashMap<u64, Vec<&Receipt>> = HashMap::new();
    for r in receipts {
        by_id.entry(r.msg_id).or_default().push(r);
    }
    for (customer, ids) in sent {
        for id in ids {
            let got = by_id
                .get(id)
                .unwrap_or_else(|| panic!("{customer}: message {id} never reached the desk"));
            // Every copy after the first follows a receipt whose answer was lost.
            if got.len() > 1 {
                assert!(
                    got[..got.len() - 1].iter().all(|r| r.lossy),
                    "{customer}: message {id} reached the desk {} times without a lost answer: {got:?}",
                    got.len()
                );
            }
            assert!(got.iter().all(|r| &r.customer == customer));
        }
        // First arrivals follow the customer's order.
        let mut firsts: Vec<(Instant, u64)> = ids.iter().map(|id| (by_id[id][0].at, *id)).collect();
        firsts.sort();
        let order: Vec<u64> = firsts.into_iter().map(|(_, id)| id).collect();
        assert_eq!(&order, ids, "{customer}: out of order");
    }
}

/// Polls `done` every 50 ms for up to `secs` seconds.
async fn wait_for(secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Services on `stores`, on the system clock.
fn services(cfg: wxdesk::Config, stores: wxdesk::store::Stores) -> Arc<wxdesk::Services> {
    Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ))
}

/// Services on the stores `text` configures, their inbox behind a `FaultyInbox`.
async fn with_faulty_inbox(text: &str) -> (Arc<wxdesk::Services>, Arc<FaultyInbox>) {
    let cfg = wxdesk::Config::parse(text).unwrap();
    let mut stores = wxdesk::store::Stores::open(&cfg.store).await.unwrap();
    let inbox = FaultyInbox::new(stores.inbox.clone());
    stores.inbox = inbox.clone();
    (services(cfg, stores), inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_messages_survive_desk_and_store_faults() {
    const CUSTOMERS: usize = 20;
    const EACH: u64 = 10;
    let desk = FaultyDesk::start().await;
    let text = config_text(
        &embedded_store("faults"),
        &desk.url,
        "[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 4\ndesk_timeout_ms = 3000\n",
    );
    let (svc, inbox) = with_faulty_inbox(&text).await;
    let base = start_local(svc.clone()).await;
    let http = wxdesk_tests::http();
    let started = Instant::now();

    // The desk's and the store's timeline, while the customers write.
    let schedule = [
        (300, Mode::Down),
        (1200, Mode::Error),
        (1800, Mode::Reset),
        (2400, Mode::Slow),
        (3000, Mode::Up),
        (5000, Mode::Down),
        (6500, Mode::Up),
    ];
    let recovered = Arc::new(Mutex::new(Instant::now()));
    let all_sent = Arc::new(tokio::sync::Notify::new());
    let timeline = {
        let (mode, recovered, inbox) = (desk.mode.clone(), recovered.clone(), inbox.clone());
        let all_sent = all_sent.clone();
        tokio::spawn(async move {
            for (at, m) in schedule {
                tokio::time::sleep_until((started + Duration::from_millis(at)).into()).await;
                *mode.lock().unwrap() = m;
                if m == Mode::Up {
                    *recovered.lock().unwrap() = Instant::now();
                }
                // The store stops for a while once the desk is back, under the worker's
                // deliveries. Not under intake: a push that finds the store down cannot
                // read its customer's backlog and goes to the desk directly (rather than
                // be lost), which may overtake that backlog, and a busy machine stretched
                // the sends into this window.
                if at == 3000 {
                    all_sent.notified().await;
                    inbox.set(StoreFault::Fail);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    inbox.set(StoreFault::None);
                }
            }
        })
    };

    let mut sent = BTreeMap::new();
    let mut tasks = Vec::new();
    for c in 0..CUSTOMERS {
        let customer = format!("oFaultCustomer{c:04}");
        let ids: Vec<u64> = (0..EACH).map(|i| 50_000 + c as u64 * 100 + i).collect();
        sent.insert(customer.clone(), ids.clone());
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for id in ids {
                // WeChat waits for each answer (5 s) before the customer's next message
                // arrives; every answer here is `success`.
                let answer = post_push(&http, &base, &customer, id, now_secs()).await;
                assert_eq!(answer, "success");
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    all_sent.notify_one();
    timeline.await.unwrap();

    let total = CUSTOMERS * EACH as usize;
    wait_for(60, || {
        let distinct: std::collections::HashSet<u64> =
            desk.receipts().iter().map(|r| r.msg_id).collect();
        distinct.len() >= total
    })
    .await;
    let receipts = desk.receipts();
    check(&receipts, &sent);

    // Figures for the note: how long after the desk's last recovery the backlog arrived.
    let back = *recovered.lock().unwrap();
    let after: Vec<Duration> = receipts
        .iter()
        .filter(|r| r.at > back)
        .map(|r| r.at - back)
        .collect();
    let dups = receipts.len() - total;
    eprintln!(
        "faults: {total} messages, {} receipts ({dups} repeats after lost answers), {} after the last recovery: median {:?}, max {:?}",
        receipts.len(),
        after.len(),
        percentile(after.clone(), 0.5),
        percentile(after, 1.0)
    );
    // Nothing is left in the outbox, once the worker has recorded its last deliveries (the
    // desk's receipt comes before the worker's write, so a busy machine can see it between).
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = loop {
        let left = wxdesk::app::outbox_admin::list(
            &svc,
            Some(PLAIN_APPID),
            wxdesk::app::outbox_admin::shelves("all").unwrap(),
        )
        .await
        .unwrap();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(left.is_empty(), "{left:?}");
}

/// WeChat's custom send fails with -1 for a while (retried) and 45015 for one customer
/// (dead at once) when the desk's reply comes too late for the passive answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_desk_replies_reach_the_customer_through_custom_send() {
    let wx = wechat::start().await;
    let slow_once = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
    let seen = slow_once.clone();
    // The desk answers each message with a passive reply, the first time after 6 s.
    let desk = StandIn::start(Arc::new(move |_, _, body| {
        let doc = wxdesk::wechat::xml::Doc::parse_xml(body).unwrap();
        let id = doc.text("MsgId");
        let first = seen.lock().unwrap().insert(id.clone());
        Answer {
            status: 200,
            body: format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName>\
                 <CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[reply {id}]]></Content></xml>",
                doc.text("FromUserName")
            ),
            delay: if first { Duration::from_secs(6) } else { Duration::ZERO },
        }
    }))
    .await;
    let extra = format!(
        "[wechat]\napi_base = \"{}\"\n[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n",
        wx.base()
    );
    let cfg = wxdesk::Config::parse(&config_text(
        &embedded_store("late"),
        &desk.url("/d"),
        &extra,
    ))
    .unwrap();
    let svc = Arc::new(wxdesk::Services::build(cfg).await.unwrap());
    let base = start_local(svc.clone()).await;
    // The first two custom sends fail with WeChat's "system busy".
    wx.inject("/cgi-bin/message/custom/send", &[-1, -1]);
    let http = wxdesk_tests::http();
    let ts = now_secs();
    assert_eq!(
        post_push(&http, &base, "oLateCustomer", 7001, ts).await,
        "success",
        "the deadline passed"
    );
    wait_for(20, || !wx.sent().is_empty()).await;
    let sent = wx.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["touser"], "oLateCustomer");
    assert_eq!(sent[0]["text"]["content"], "reply 7001");
    assert!(wx.send_attempts() >= 3, "the -1 answers were retried");

    // 45015: the customer's window closed. Dead at once, with the reason.
    wx.inject("/cgi-bin/message/custom/send", &[45015]);
    assert_eq!(
        post_push(&http, &base, "oClosedWindow", 7002, ts).await,
        "success"
    );
    let key = format!("{PLAIN_APPID}#msg#7002#oClosedWindow#{ts}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let entry = loop {
        let e = svc
            .inbox
            .get(&key, wxdesk::support::clock::unix_ms())
            .await
            .unwrap()
            .unwrap();
        if e.state == wxdesk::store::EntryState::Dead || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry.state, wxdesk::store::EntryState::Dead, "{entry:?}");
    assert!(
        entry.last_error.as_deref().unwrap_or("").contains("45015"),
        "{entry:?}"
    );
    let dead =
        wxdesk::app::outbox_admin::list(&svc, Some(PLAIN_APPID), &[wxdesk::store::Shelf::Dead])
            .await
            .unwrap();
    assert_eq!(dead.len(), 1);
    // An operator replays it once the customer writes again: now it goes through.
    assert_eq!(
        wxdesk::app::outbox_admin::replay_dead(&svc, Some(PLAIN_APPID))
            .await
            .unwrap(),
        1
    );
    wait_for(20, || wx.sent().len() >= 2).await;
    assert_eq!(wx.sent().len(), 2);
}

/// The aws store: DynamoDB Local and an SQS FIFO queue in moto. The wechat-callback
/// "Lambda" answers and is frozen (nothing of it runs again); the deliver-worker is
/// invoked later with the SQS message, as the event source mapping would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_lambdas_message_is_delivered_by_the_worker_from_sqs() {
    let desk = FaultyDesk::start().await;
    desk.set(Mode::Down);
    let (stores, sqs, url) = aws_stores_with_queue().await;
    let aws = "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n";
    let cfg = wxdesk::Config::parse(&config_text(aws, &desk.url, "")).unwrap();
    let svc = services(cfg, stores);
    // The callback function's request, through the Lambda adapter.
    let ts = now_secs();
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://api.example/wechat/{PLAIN_APPID}?{}",
            plain_query(ts, "z")
        ))
        .body(lambda_http::Body::Text(push("oFrozenCustomer", 8001, ts)))
        .unwrap();
    let resp =
        wxdesk::app::lambda::handle(&svc, wxdesk::http::RouteKind::WechatCallback, req).await;
    assert_eq!(resp.body_str(), "success");
    assert!(desk.receipts().is_empty());

    // Later, the event source mapping hands the job to deliver-worker.
    let mut delivered = false;
    for _ in 0..20 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let records: Vec<serde_json::Value> = got
            .messages()
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id().unwrap(),
                    "receiptHandle": m.receipt_handle().unwrap(),
                    "body": m.body().unwrap(),
                    "attributes": {},
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        if records.is_empty() {
            continue;
        }
        let answer = wxdesk::app::worker::handle_sqs_batch(&svc, &records).await;
        let failures = answer["batchItemFailures"].as_array().unwrap().len();
        if failures == 0 {
            // The event source mapping deletes what succeeded.
            for m in got.messages() {
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if !desk.receipts().is_empty() {
                delivered = true;
                break;
            }
        } else {
            // The desk is down: the job is held back and reported for a retry.
            assert_eq!(failures, records.len(), "{answer}");
            desk.set(Mode::Up);
        }
    }
    assert!(delivered, "the worker never delivered the job");
    let got = desk.receipts();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].msg_id, 8001);
}

/// Store and queue requests per message on the aws store (DynamoDB Local, SQS in moto):
/// the happy path costs what it did before the outbox plus one read (the customer's
/// backlog record) and one write (the customer's send allowance, reset by each message
/// as WeChat resets it, written beside the desk call), and no queue request; the
/// figures of a retried one are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_message_on_the_happy_and_the_retried_path() {
    use std::sync::atomic::Ordering::SeqCst;
    let desk = FaultyDesk::start().await;
    let mut stores = aws_stores().await;
    let inbox = FaultyInbox::new(stores.inbox.clone());
    let queue = CountingQueue::new(stores.queue.clone());
    stores.inbox = inbox.clone();
    stores.queue = queue.clone();
    let aws = "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n";
    let cfg = wxdesk::Config::parse(&config_text(aws, &desk.url, "")).unwrap();
    let svc = services(cfg, stores);
    let base = start_local(svc.clone()).await;
    let http = wxdesk_tests::http();
    let send = |customer: &'static str, id: u64| {
        let (http, base) = (http.clone(), base.clone());
        async move { post_push(&http, &base, customer, id, now_secs()).await }
    };
    // Let the worker's first sweep pass (it reads the outbox index) before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    inbox.calls.store(0, SeqCst);
    queue.calls.store(0, SeqCst);
    assert_eq!(send("oHappyCustomer", 9101).await, "success");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let happy = (inbox.calls.load(SeqCst), queue.calls.load(SeqCst));
    assert_eq!(
        happy,
        (5, 0),
        "plain mode: signature binding + claim + backlog read + allowance + finish, no queue"
    );
    // Safe mode pays no binding: msg_signature covers the body.
    inbox.calls.store(0, SeqCst);
    let ts = now_secs();
    let (q, body) = safe_mode_push(APPID, &push("oSafeCustomer", 9103, ts), false, ts, "s1");
    let r = http
        .post(format!("{base}/wechat/{APPID}?{q}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        inbox.calls.load(SeqCst),
        4,
        "safe mode: claim + backlog read + allowance + finish"
    );

    desk.set(Mode::Down);
    inbox.calls.store(0, SeqCst);
    queue.calls.store(0, SeqCst);
    assert_eq!(send("oRetriedCustomer", 9102).await, "success");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    desk.set(Mode::Up);
    wait_for(20, || desk.receipts().iter().any(|r| r.msg_id == 9102)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retried = (inbox.calls.load(SeqCst), queue.calls.load(SeqCst));
    assert!(desk.receipts().iter().any(|r| r.msg_id == 9102));
    eprintln!(
        "requests per message: happy path {} store + {} queue; retried once (desk down 1.5 s) {} store + {} queue",
        happy.0, happy.1, retried.0, retried.1
    );
    assert!(
        retried.1 >= 3,
        "send, receive, delete at least: {retried:?}"
    );
}

/// A measurement for docs/operating.md and the issue notes, with the default `[delivery]`
/// back-off (5 s doubling to 60 s): the desk is down for 15 s while 20 customers write two
/// messages each, then comes back. Prints how long after the recovery the queued
/// messages arrived. About a minute: run it with
/// `cargo test -p wxdesk-tests --test it faults:: -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a one-minute measurement, run by hand"]
async fn recovery_latency_with_the_default_back_off() {
    let desk = FaultyDesk::start().await;
    desk.set(Mode::Down);
    let cfg =
        wxdesk::Config::parse(&config_text(&embedded_store("recovery"), &desk.url, "")).unwrap();
    let svc = Arc::new(wxdesk::Services::build(cfg).await.unwrap());
    let base = start_local(svc).await;
    let http = wxdesk_tests::http();
    let down_at = Instant::now();
    let mut sent = BTreeMap::new();
    let mut tasks = Vec::new();
    for c in 0..20u64 {
        let customer = format!("oRecovery{c:04}");
        let ids = vec![60_000 + c * 10, 60_000 + c * 10 + 1];
        sent.insert(customer.clone(), ids.clone());
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            // Spread over the outage.
            tokio::time::sleep(Duration::from_millis(c * 600)).await;
            for id in ids {
                post_push(&http, &base, &customer, id, now_secs()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep_until((down_at + Duration::from_secs(15)).into()).await;
    desk.set(Mode::Up);
    let up = Instant::now();
    wait_for(120, || desk.receipts().len() >= 40).await;
    let receipts = desk.receipts();
    check(&receipts, &sent);
    let after: Vec<Duration> = receipts.iter().map(|r| r.at - up).collect();
    eprintln!(
        "recovery with the default back-off, desk down 15 s: {} messages, after recovery median {:?}, max {:?}",
        after.len(),
        percentile(after.clone(), 0.5),
        percentile(after, 1.0)
    );
}

/// With the store down, a push whose desk is also down cannot be kept: it used to get
/// `success` and vanish. Now WeChat gets a 503 (its console counts it), and with the store
/// back the same message is accepted and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_kept_is_not_answered_success() {
    let desk = FaultyDesk::start().await;
    desk.set(Mode::Down);
    let text = config_text(
        &embedded_store("unkept"),
        &desk.url,
        "[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n",
    );
    let (svc, inbox) = with_faulty_inbox(&text).await;
    let base = start_local(svc).await;
    let http = wxdesk_tests::http();
    inbox.set(StoreFault::Fail);
    let ts = now_secs();
    let r = http
        .post(format!(
            "{base}/wechat/{PLAIN_APPID}?{}",
            plain_query(ts, "u")
        ))
        .body(push("oUnkept", 9501, ts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    inbox.set(StoreFault::None);
    assert_eq!(
        post_push(&http, &base, "oUnkept", 9501, ts).await,
        "success"
    );
    desk.set(Mode::Up);
    wait_for(20, || desk.receipts().iter().any(|r| r.msg_id == 9501)).await;
    assert!(desk.receipts().iter().any(|r| r.msg_id == 9501));
}

/// Review 2, §2: on the aws store, three messages of one customer sent 0.3 s apart while
/// the desk failed reached it, once it recovered, as 3rd, 1st, 2nd: the jobs queued behind
/// a failing one were held back as long as it was, so they came back into view together
/// and the queue (moto's FIFO here) could hand out the last one first. Held-back
/// followers now return to the queue at once, behind their group's head, on both stores.
async fn order_holds_while_the_desk_fails(stores: wxdesk::store::Stores, store: &str) {
    let desk = FaultyDesk::start().await;
    desk.set(Mode::Error);
    let text = config_text(
        store,
        &desk.url,
        "[delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n",
    );
    let base = start_local(services(wxdesk::Config::parse(&text).unwrap(), stores)).await;
    let http = wxdesk_tests::http();
    let ids = [7001, 7002, 7003];
    for id in ids {
        assert_eq!(
            post_push(&http, &base, "oOrderCustomer", id, now_secs()).await,
            "success"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long enough for every job to have been received, failed or held back at least once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    desk.set(Mode::Up);
    wait_for(30, || desk.receipts().len() >= ids.len()).await;
    let got: Vec<u64> = desk.receipts().iter().map(|r| r.msg_id).collect();
    assert_eq!(got, ids, "the desk got them out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customers_order_holds_while_the_desk_fails_embedded() {
    let store = embedded_store("order");
    let cfg = wxdesk::Config::parse(&config_text(&store, "http://x", "")).unwrap();
    let stores = wxdesk::store::Stores::open(&cfg.store).await.unwrap();
    order_holds_while_the_desk_fails(stores, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customers_order_holds_while_the_desk_fails_on_sqs() {
    let (stores, _, _) = aws_stores_with_queue().await;
    let aws = "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n";
    order_holds_while_the_desk_fails(stores, aws).await;
}

/// The desk has the message, and then the store fails for a moment (300 ms): the outcome
/// went unrecorded, and WeChat's retry after the claim's lease delivered the message a
/// second time (the 200-message suite caught one on a busy CI machine). The outcome is
/// now asked of the store again, within its bound, so the retry is answered from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_blip_after_the_desk_answered_does_not_send_twice() {
    let faulty: Arc<std::sync::OnceLock<Arc<FaultyInbox>>> = Arc::default();
    let on_receipt = faulty.clone();
    let desk = StandIn::start(Arc::new(move |_, _, _| {
        if let Some(inbox) = on_receipt.get() {
            inbox.set(StoreFault::Fail);
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                inbox.set(StoreFault::None);
            });
        }
        Answer {
            status: 200,
            body: "success".into(),
            delay: Duration::ZERO,
        }
    }))
    .await;
    let text = config_text(
        &embedded_store("blip"),
        &desk.url("/weixin/chan"),
        "[callback]\nreply_deadline_ms = 1000\n",
    );
    let (svc, inbox) = with_faulty_inbox(&text).await;
    faulty.set(inbox).ok();
    let base = start_local(svc).await;
    let http = wxdesk_tests::http();
    let ts = now_secs();
    assert_eq!(
        post_push(&http, &base, "oBlipCustomer0001", 60_001, ts).await,
        "success"
    );
    assert_eq!(desk.hits(), 1);
    // WeChat tries again once the claim's lease (1 s + 1.5 s) has run out.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        post_push(&http, &base, "oBlipCustomer0001", 60_001, ts).await,
        "success"
    );
    assert_eq!(desk.hits(), 1, "the retry was answered from the store");
}
