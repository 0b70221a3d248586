//! The runtime account registry: accounts added, disabled and re-keyed without a restart
//! (`wxdesk-local accounts`, `app::registry_admin`), on both stores; a change made by one
//! process is in force in another within `[registry] cache_secs`, and at once in its own.

use std::sync::Arc;
use std::time::Duration;

use wxdesk::app::registry_admin as registry;
use wxdesk::store::{Standing, Stores};
use wxdesk::support::clock::SystemClock;
use wxdesk_tests::*;

const ADDED: &str = "wxadded000000001";
const ADDED_KEY: &str = "added-gateway-key-0123456789";

/// An account with its own credentials, as `accounts add --file` takes it.
fn added_account() -> String {
    format!(
        "appid = \"{ADDED}\"\nkind = \"official_account\"\ntoken = \"{TOKEN}\"\n\
         encoding_aes_key = \"{AES_KEY}\"\nsecret = \"added-secret\"\n\
         gateway_key = \"{ADDED_KEY}\"\n[desk]\nkind = \"echo\"\nprefix = \"added: \"\n"
    )
}

fn services(store: &str, stores: Stores) -> Arc<wxdesk::Services> {
    let extra = "[wechat]\napi_base = \"http://127.0.0.1:9\"\n[registry]\ncache_secs = 1\n";
    let text = config_text(store, "http://127.0.0.1:9/none", extra);
    Arc::new(wxdesk::Services::with_parts(
        wxdesk::Config::parse(&text).unwrap(),
        stores,
        Arc::new(SystemClock),
    ))
}

/// A customer's text to `appid` at its push URL; WeChat's status and answer.
async fn push(base: &str, appid: &str, id: u64) -> (u16, String) {
    let (q, body) = safe_mode_push(
        appid,
        &text_push("hi", id, now_secs()),
        false,
        now_secs(),
        &format!("r{id}"),
    );
    post_text(format!("{base}/wechat/{appid}?{q}"), body).await
}

#[tokio::test]
async fn an_added_account_is_served_in_a_second_process_within_the_cache_age() {
    let stores = aws_stores().await;
    let aws = "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n";
    let (one, two) = (services(aws, stores.clone()), services(aws, stores));
    let base_two = start_local(two.clone()).await;
    // The second process has looked once: unknown, and it remembers so for the age.
    assert_eq!(push(&base_two, ADDED, 1).await.0, 404);

    assert!(
        registry::add(&one, &added_account())
            .await
            .unwrap()
            .contains("added")
    );
    assert!(
        one.serving(ADDED).await.unwrap().is_some(),
        "at once where it was made"
    );
    assert!(
        two.serving(ADDED).await.unwrap().is_none(),
        "the second process's cache answers"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, answer) = push(&base_two, ADDED, 2).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("<Encrypt>"),
        "an encrypted passive reply: {answer}"
    );

    let listed = registry::list(&one).await.unwrap();
    assert!(
        listed.iter().any(|l| l.starts_with(&format!(
            "{ADDED} authorized (own credentials, its own desk)"
        ))),
        "{listed:?}"
    );
    // Secrets are sealed at rest: the stored record holds neither the key nor the secret.
    let rec = one.registry.authorizer(ADDED).await.unwrap().unwrap();
    let at_rest = format!("{rec:?}{}", rec.sealed_settings.clone().unwrap_or_default());
    assert!(!at_rest.contains(ADDED_KEY) && !at_rest.contains("added-secret"));

    assert!(
        registry::set_standing(&one, ADDED, Standing::Disabled)
            .await
            .is_ok()
    );
    assert!(one.serving(ADDED).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        push(&base_two, ADDED, 3).await.0,
        404,
        "closed everywhere within the age"
    );
    assert!(
        registry::set_standing(&one, ADDED, Standing::Authorized)
            .await
            .is_ok()
    );
    assert!(one.serving(ADDED).await.unwrap().is_some(), "enabled again");
}

#[tokio::test]
async fn the_registry_refuses_config_accounts_and_rotates_keys_on_the_embedded_store() {
    let store = embedded_store("registry-admin");
    let text = config_text(
        &store,
        "http://127.0.0.1:9/none",
        "[wechat]\napi_base = \"http://127.0.0.1:9\"\n",
    );
    let cfg = wxdesk::Config::parse(&text).unwrap();
    let svc = services(&store, Stores::open(&cfg.store).await.unwrap());
    drop(cfg);
    let base = start_local(svc.clone()).await;
    // The config's accounts stay the config's.
    let configured = added_account().replace(ADDED, APPID);
    let why = registry::add(&svc, &configured).await.unwrap_err();
    assert!(why.contains("[[apps]] account of the config"), "{why}");
    assert!(
        registry::set_standing(&svc, APPID, Standing::Disabled)
            .await
            .is_err()
    );
    // A bad file names the key, never a value.
    let bad = added_account().replace("kind = \"official_account\"", "kind = \"pager\"");
    let why = registry::add(&svc, &bad).await.unwrap_err();
    assert!(
        why.contains("kind") && !why.contains("added-secret"),
        "{why}"
    );
    // The checks across sections hold too: a 2-character token is for tests only.
    let short = added_account().replace(&format!("token = \"{TOKEN}\""), "token = \"ab\"");
    let why = registry::add(&svc, &short).await.unwrap_err();
    assert!(
        why.contains("account.token") && why.contains("insecure_test_settings"),
        "{why}"
    );

    // Its desk is Udesk's simulated domain, so it has a desk route and a key to rotate.
    let with_udesk = added_account().replace(
        "[desk]\nkind = \"echo\"\nprefix = \"added: \"\n",
        "[desk]\nkind = \"udesk_wechat\"\nurl = \"http://127.0.0.1:9/none\"\n",
    );
    registry::add(&svc, &with_udesk).await.unwrap();
    let send = |key: String| {
        let url = format!("{base}/udesk/{ADDED}/{key}");
        async move {
            http()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("touser=oU&msgtype=text&text[content]=hi")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_ne!(send(ADDED_KEY.into()).await, 401);
    let urls = registry::rotate_key(&svc, ADDED, &base).await.unwrap();
    let new_key = urls
        .iter()
        .find_map(|u| u.split("/udesk/").nth(1))
        .and_then(|rest| rest.rsplit('/').next())
        .expect("the rotated key in the Udesk domain's URL")
        .to_owned();
    assert_ne!(new_key, ADDED_KEY);
    assert_ne!(send(new_key.clone()).await, 401, "the new key opens");
    assert_ne!(
        send(ADDED_KEY.into()).await,
        401,
        "the old key still opens until the next rotation"
    );
    registry::rotate_key(&svc, ADDED, &base).await.unwrap();
    assert_eq!(
        send(ADDED_KEY.into()).await,
        401,
        "two rotations on, the first key is gone"
    );
    assert_ne!(send(new_key).await, 401);
}

/// A registry that cannot be read is not an account that is gone: a stored account's
/// queued message waits through the outage (not dead), is delivered once the registry
/// answers, and a push meanwhile gets 503 (WeChat tries again), not 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_kills_no_queued_message() {
    let store = embedded_store("registry-outage");
    let desk = udesk_wechat().await;
    let extra = "[wechat]\napi_base = \"http://127.0.0.1:9\"\n[registry]\ncache_secs = 1\n\
                 [delivery]\nfirst_retry_secs = 1\nmax_retry_secs = 2\n";
    let text = config_text(&store, "http://127.0.0.1:9/none", extra);
    let cfg = wxdesk::Config::parse(&text).unwrap();
    let mut stores = Stores::open(&cfg.store).await.unwrap();
    let flaky = FlakyRegistry::over(stores.registry.clone());
    stores.registry = flaky.clone();
    let svc = Arc::new(wxdesk::Services::with_parts(
        cfg,
        stores,
        Arc::new(SystemClock),
    ));
    let base = start_local(svc.clone()).await;
    // Its desk is down at first: the customer's message waits in the outbox.
    let down_desk = added_account().replace(
        "[desk]\nkind = \"echo\"\nprefix = \"added: \"\n",
        "[desk]\nkind = \"udesk_wechat\"\nurl = \"http://127.0.0.1:9/none\"\n",
    );
    registry::add(&svc, &down_desk).await.unwrap();
    assert_eq!(push(&base, ADDED, 1).await, (200, "success".into()));

    flaky.set_down(true);
    assert_eq!(push(&base, ADDED, 2).await.0, 200, "still cached");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        push(&base, ADDED, 3).await.0,
        503,
        "not known now: not unknown"
    );
    let dead = wxdesk::app::outbox_admin::shelves("dead").unwrap();
    let died = wxdesk::app::outbox_admin::list(&svc, Some(ADDED), dead)
        .await
        .unwrap();
    assert!(
        died.is_empty(),
        "the outage killed {} queued messages",
        died.len()
    );

    // The registry answers again, with a desk that works: the message arrives.
    flaky.set_down(false);
    let up_desk = down_desk.replace("http://127.0.0.1:9/none", &desk.url("/weixin/added"));
    registry::add(&svc, &up_desk).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while desk.requests.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = desk.requests.lock().unwrap().clone();
    assert!(
        !got.is_empty(),
        "the queued message was delivered after the outage"
    );
    assert!(got[0].1.contains("<MsgId>1</MsgId>"), "{got:?}");
}
