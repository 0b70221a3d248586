//! The DynamoDB inbox against DynamoDB Local (AWS's own implementation: its conditional
//! writes are atomic like the service's, so the races below can prove something), and the
//! same claim rules on the embedded store.

use std::sync::Arc;

use wxdesk::store::{Claim, EntryState, InboxStore, NewClaim, Outcome, Shelf, Taken, new_claim_id};

fn key2_for(now: i64) -> String {
    format!("wxA#msg#{now}-u")
}
use wxdesk_tests::*;

fn claim<'a>(key: &'a str, id: &'a str, now_ms: i64) -> NewClaim<'a> {
    NewClaim {
        key,
        appid: "wxA",
        payload: "<xml/>",
        claim_id: id,
        now_ms,
        lease_until_ms: now_ms + 6000,
        expires_at: now_ms / 1000 + 600,
        group: "wxA#in#oCustomer",
    }
}

async fn claim_rules(store: &dyn InboxStore) {
    let now = wxdesk::support::clock::unix_ms();
    let key = format!("wxA#msg#{now}");
    let Claim::Won { attempt: 1, .. } = store.claim(&claim(&key, "c1", now)).await.unwrap() else {
        panic!("first claim must win")
    };
    assert_eq!(
        store.claim(&claim(&key, "c2", now + 10)).await.unwrap(),
        Claim::InFlight
    );
    // Only the owner records the outcome.
    assert!(
        !store
            .finish(&key, "c2", Outcome::Answered("nope"))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish(&key, "c1", Outcome::Answered("<xml>a</xml>"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim(&claim(&key, "c3", now + 20)).await.unwrap(),
        Claim::Answered("<xml>a</xml>".into())
    );

    // A message handed to the outbox is the worker's: a repeated push does not deliver it
    // again, and a worker takes it only when it is due.
    let key2 = format!("wxA#msg#{now}-u");
    store.claim(&claim(&key2, "d1", now)).await.unwrap();
    assert_eq!(
        store
            .take(&key2, "w0", now + 10, now + 30_000)
            .await
            .unwrap(),
        Taken::Busy,
        "its handler still holds it"
    );
    let pending = |due_ms, queued| Outcome::Pending {
        error: "desk 500",
        due_ms,
        group: "wxA#in#oCustomer",
        answer: None,
        expires_at: now / 1000 + 86_400,
        queued,
    };
    assert!(
        store
            .finish(&key2, "d1", pending(now + 5000, false))
            .await
            .unwrap()
    );
    let e = store.get(&key2, now).await.unwrap().unwrap();
    assert_eq!(
        (e.state, e.last_error.as_deref(), e.queued),
        (EntryState::Pending, Some("desk 500"), false)
    );
    assert_eq!(
        store.claim(&claim(&key2, "d2", now + 5)).await.unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        store
            .take(&key2, "w1", now + 10, now + 30_000)
            .await
            .unwrap(),
        Taken::NotDue(now + 5000)
    );
    // Listed on its shelf (the sparse index on DynamoDB) until the sweep queues it.
    let on = |shelf| async move {
        store
            .outbox("wxA", shelf, 1000, now)
            .await
            .unwrap()
            .into_iter()
            .any(|e| e.key == key2_for(now))
    };
    assert!(on(Shelf::Unqueued).await && !on(Shelf::Queued).await);
    store.mark_queued(&key2).await.unwrap();
    assert!(on(Shelf::Queued).await && !on(Shelf::Unqueued).await);
    // Due: exactly one worker takes it, counting an attempt.
    let Taken::Entry(taken) = store
        .take(&key2, "w2", now + 5000, now + 35_000)
        .await
        .unwrap()
    else {
        panic!("a due entry is taken")
    };
    assert_eq!((taken.attempts, taken.claim_id.as_str()), (2, "w2"));
    assert_eq!(
        store
            .take(&key2, "w3", now + 5001, now + 35_000)
            .await
            .unwrap(),
        Taken::NotDue(now + 35_000)
    );
    // A permanent refusal: dead, listed as dead, and a replay makes it pending again.
    assert!(
        !store
            .finish(
                &key2,
                "w1",
                Outcome::Dead {
                    why: "x",
                    expires_at: 0,
                    at_ms: now + 90_000,
                }
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .finish(
                &key2,
                "w2",
                Outcome::Dead {
                    why: "WeChat errcode 45015",
                    expires_at: now / 1000 + 86_400,
                    at_ms: now + 90_000,
                }
            )
            .await
            .unwrap()
    );
    assert!(on(Shelf::Dead).await && !on(Shelf::Queued).await);
    assert_eq!(
        store
            .take(&key2, "w4", now + 99_000, now + 100_000)
            .await
            .unwrap(),
        Taken::Settled
    );
    assert!(store.revive(&key2, now + 100_000).await.unwrap());
    assert!(on(Shelf::Unqueued).await && !on(Shelf::Dead).await);
    assert!(matches!(
        store
            .take(&key2, "w5", now + 100_000, now + 130_000)
            .await
            .unwrap(),
        Taken::Entry(_)
    ));
    assert!(
        store
            .finish(&key2, "w5", Outcome::Answered(""))
            .await
            .unwrap()
    );
    assert!(!on(Shelf::Queued).await && !on(Shelf::Dead).await);
    assert!(
        !store.revive(&key2, now + 100_001).await.unwrap(),
        "answered entries stay answered"
    );

    // A message whose handler died is listed in flight, and a worker may take it once the
    // lease has run out.
    let key5 = format!("wxA#msg#{now}-k");
    store.claim(&claim(&key5, "k1", now)).await.unwrap();
    assert!(
        store
            .outbox("wxA", Shelf::InFlight, 1000, now)
            .await
            .unwrap()
            .iter()
            .any(|e| e.key == key5)
    );
    assert!(matches!(
        store.take(&key5, "k2", now + 7000, now + 40_000).await.unwrap(),
        Taken::Entry(e) if e.state == EntryState::Pending
    ));
    assert!(
        !store
            .finish(&key5, "k1", Outcome::Answered("late"))
            .await
            .unwrap()
    );

    // Conversation marks are removed only while they hold the value given.
    let mark = format!("wxA#backlog#{now}");
    store
        .put_state(&mark, "wxA", "k-1", now / 1000 + 600)
        .await
        .unwrap();
    store.remove_if(&mark, "k-0").await.unwrap();
    assert!(store.get(&mark, now).await.unwrap().is_some());
    store.remove_if(&mark, "k-1").await.unwrap();
    assert!(store.get(&mark, now).await.unwrap().is_none());

    // A crashed handler's lease runs out and the retry takes over.
    let key3 = format!("wxA#msg#{now}-l");
    store.claim(&claim(&key3, "l1", now)).await.unwrap();
    assert_eq!(
        store.claim(&claim(&key3, "l2", now + 5000)).await.unwrap(),
        Claim::InFlight
    );
    assert!(matches!(
        store.claim(&claim(&key3, "l3", now + 7000)).await.unwrap(),
        Claim::Won { .. }
    ));
    assert!(
        !store
            .finish(&key3, "l1", Outcome::Answered("late"))
            .await
            .unwrap(),
        "the dead owner cannot overwrite"
    );

    // Expiry is checked on read: an expired record is absent and can be claimed afresh.
    let key4 = format!("wxA#msg#{now}-x");
    store.claim(&claim(&key4, "x1", now)).await.unwrap();
    store
        .finish(&key4, "x1", Outcome::Answered("old"))
        .await
        .unwrap();
    let later = now + 601_000;
    assert!(store.get(&key4, later).await.unwrap().is_none());
    assert!(matches!(
        store.claim(&claim(&key4, "x2", later)).await.unwrap(),
        Claim::Won { .. }
    ));
}

async fn race(store: Arc<dyn InboxStore>, racers: usize) {
    let now = wxdesk::support::clock::unix_ms();
    let key = format!("wxA#race#{now}");
    let tasks: Vec<_> = (0..racers)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                let id = new_claim_id();
                store.claim(&claim(&key, &id, now)).await.unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Claim::Won { .. } => won += 1,
            Claim::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one of {racers} racers must win");
}

#[tokio::test]
async fn dynamodb_claim_rules() {
    let store = aws_inbox().await;
    claim_rules(&store).await;
}

/// Past its limit an outbox listing gives the most overdue entries, earliest due first,
/// on both stores: the embedded index was in key order, so with more entries on a shelf
/// than one pass reads, the local sweep could re-read the same ones and never reach an
/// overdue entry whose key sorts late. A dead entry is placed by the time the caller
/// says it died, not by the store's clock.
/// Claims `key` for `appid` now and hands it to the outbox: due at `due_ms`, kept until
/// `expires_at`.
async fn park(
    store: &dyn InboxStore,
    appid: &str,
    key: &str,
    now: i64,
    due_ms: i64,
    expires_at: i64,
) {
    let c = NewClaim {
        appid,
        ..claim(key, "c", now)
    };
    store.claim(&c).await.unwrap();
    let pending = Outcome::Pending {
        error: "desk 500",
        due_ms,
        group: "g",
        answer: None,
        expires_at,
        queued: false,
    };
    assert!(store.finish(key, "c", pending).await.unwrap());
}

/// The last `#` segment of each entry's key.
fn tails(entries: &[wxdesk::store::InboxEntry]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e.key.rsplit('#').next().unwrap())
        .collect()
}

async fn listing_rules(store: &dyn InboxStore) {
    let now = wxdesk::support::clock::unix_ms();
    let appid = format!("wxL{now}");
    // Keys in one order, due times in the other.
    for (i, due) in [(0, 50_000), (1, 40_000), (2, 30_000), (3, 20_000)] {
        let key = format!("{appid}#msg#k{i}");
        park(store, &appid, &key, now, now + due, now / 1000 + 600).await;
    }
    let listed = store.outbox(&appid, Shelf::Unqueued, 2, now).await.unwrap();
    assert_eq!(
        tails(&listed),
        ["k3", "k2"],
        "the two most overdue, earliest first"
    );
    // Dead ones by when they died (the caller's time).
    for (i, at) in [(0, 9_000), (3, 1_000)] {
        let key = format!("{appid}#msg#k{i}");
        let Taken::Entry(_) = store
            .take(&key, "w", now + 60_000, now + 90_000)
            .await
            .unwrap()
        else {
            panic!("k{i} is due")
        };
        let dead = Outcome::Dead {
            why: "gone",
            expires_at: now / 1000 + 600,
            at_ms: now + at,
        };
        assert!(store.finish(&key, "w", dead).await.unwrap());
    }
    let dead = store.outbox(&appid, Shelf::Dead, 10, now).await.unwrap();
    assert_eq!(tails(&dead), ["k3", "k0"]);
    assert_eq!(dead[0].lease_until_ms, now + 1_000);
    // Keep-until: the finisher's time replaces the claim's (now + 600 s), on both stores.
    let key = format!("{appid}#msg#keep");
    park(store, &appid, &key, now, now, now / 1000 + 300).await;
    let e = store.get(&key, now).await.unwrap().unwrap();
    assert_eq!(e.expires_at, now / 1000 + 300);
}

#[tokio::test]
async fn dynamodb_listing_rules() {
    listing_rules(&aws_inbox().await).await;
}

#[tokio::test]
async fn embedded_listing_rules() {
    let dir = temp_dir("listing");
    listing_rules(&wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap()).await;
}

/// The tests that load DynamoDB Local hardest, and the one that must not share it with
/// them: under that load on a 2-core machine a claim can outlast the push's 1 s claim
/// budget, and the push then delivers without dedup (as designed), which that test would
/// read as a duplicate forwarded.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_exactly_one_of_many_racers_wins() {
    let _heavy = HEAVY.lock().await;
    race(Arc::new(aws_inbox().await), 32).await;
}

/// The race that moto loses (2 of 200 keys with two winners, half-written items read
/// back): three claimants on each of 200 keys at once, and every entry whole afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_one_winner_per_key_across_200_keys() {
    let _heavy = HEAVY.lock().await;
    let store: Arc<dyn InboxStore> = Arc::new(aws_inbox().await);
    let now = wxdesk::support::clock::unix_ms();
    let tasks: Vec<_> = (0..200)
        .flat_map(|k| (0..3).map(move |r| (k, r)))
        .map(|(k, r)| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("wxA#many#{now}#{k}");
                let id = format!("claimant-{k}-{r}");
                let got = store.claim(&claim(&key, &id, now)).await.unwrap();
                (k, id, got)
            })
        })
        .collect();
    let mut winners = std::collections::HashMap::new();
    for t in tasks {
        let (k, id, got) = t.await.unwrap();
        match got {
            Claim::Won { .. } => {
                assert!(winners.insert(k, id).is_none(), "two winners for key {k}");
            }
            Claim::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 200, "every key has its winner");
    for (k, id) in winners {
        let e = store
            .get(&format!("wxA#many#{now}#{k}"), now)
            .await
            .unwrap()
            .expect("the entry exists");
        assert_eq!(e.claim_id, id, "the stored claim is the winner's");
        assert_eq!(e.state, EntryState::InFlight);
        assert_eq!(e.attempts, 1);
    }
}

#[tokio::test]
async fn embedded_claim_rules() {
    let dir = temp_dir("rules");
    claim_rules(&wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_exactly_one_of_many_racers_wins() {
    let dir = temp_dir("race");
    race(
        Arc::new(wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap()),
        64,
    )
    .await;
}

/// The whole callback on DynamoDB: three identical pushes at once reach the desk once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_on_dynamodb_forwards_concurrent_duplicates_once() {
    let _heavy = HEAVY.lock().await;
    let desk = udesk_wechat().await;
    let config = wxdesk::Config::parse(&config_text(
        "[store]\nbackend = \"aws\"\ndedup_table = \"unused\"\n",
        &desk.url("/w"),
        "",
    ))
    .unwrap();
    let stores = aws_stores().await;
    // The table answers before the pushes race (its first request also opens the pool).
    stores.inbox.get("warm-up", 0).await.unwrap();
    let svc = Arc::new(wxdesk::Services::with_parts(
        config,
        stores,
        Arc::new(wxdesk::support::clock::SystemClock),
    ));
    let base = start_local(svc).await;
    let ts = now_secs();
    let push = text_push("dynamo once", 8000, ts);
    let http = wxdesk_tests::http();
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let req = http
                .post(format!(
                    "{base}/wechat/{PLAIN_APPID}?{}",
                    plain_query(ts, &format!("d{i}"))
                ))
                .body(push.clone());
            tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert_eq!(desk.hits(), 1, "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("echo: dynamo once")));
}

/// The token record's rules, the same on both stores: one lease at a time, a stale reader
/// cannot lease, replace is compare-and-set, invalidate only touches the failing token.
async fn token_rules(store: &dyn wxdesk::store::TokenStore) {
    let now = wxdesk::support::clock::unix_ms();
    let appid = format!("wxT{now}");
    assert_eq!(store.get(&appid).await.unwrap(), None);
    assert!(
        store
            .try_lease(&appid, "a", 0, now, now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease(&appid, "b", 0, now + 10, now + 1010)
            .await
            .unwrap(),
        "lease held"
    );
    // A's lease lapses; B takes over and stores its token first.
    assert!(
        store
            .try_lease(&appid, "b", 0, now + 2000, now + 3000)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace(&appid, "b", 0, "TOKEN_B", now + 7_200_000)
            .await
            .unwrap()
    );
    // A's late answer must not overwrite B's newer token.
    assert!(
        !store
            .replace(&appid, "a", 0, "TOKEN_A", now + 7_200_000)
            .await
            .unwrap()
    );
    let rec = store.get(&appid).await.unwrap().unwrap();
    assert_eq!((rec.token.as_str(), rec.version), ("TOKEN_B", 1));
    // A reader that saw version 0 cannot start another refresh.
    assert!(
        !store
            .try_lease(&appid, "c", 0, now + 4000, now + 5000)
            .await
            .unwrap()
    );
    // Invalidation only hits the token that failed.
    assert!(!store.invalidate(&appid, "TOKEN_A").await.unwrap());
    assert!(store.invalidate(&appid, "TOKEN_B").await.unwrap());
    assert_eq!(store.get(&appid).await.unwrap().unwrap().expires_at_ms, 0);
    // A failed fetch gives the lease back.
    assert!(
        store
            .try_lease(&appid, "c", 1, now + 4000, now + 9000)
            .await
            .unwrap()
    );
    store.release(&appid, "c").await.unwrap();
    assert!(
        store
            .try_lease(&appid, "d", 1, now + 4001, now + 9000)
            .await
            .unwrap()
    );
    ticket_rules(store, &format!("wxC{now}")).await;
}

/// A platform's component_verify_ticket: the newest push wins, a late retry of an older
/// one changes nothing, and it lives beside (not in) the token of the same appid.
async fn ticket_rules(store: &dyn wxdesk::store::TokenStore, component: &str) {
    use wxdesk::store::Ticket;
    let t = |ticket: &str, created_at| Ticket {
        ticket: ticket.into(),
        created_at,
    };
    assert_eq!(store.ticket(component).await.unwrap(), None);
    assert!(store.put_ticket(component, &t("T1", 100)).await.unwrap());
    assert!(store.put_ticket(component, &t("T2", 700)).await.unwrap());
    assert!(
        !store.put_ticket(component, &t("T1", 100)).await.unwrap(),
        "older"
    );
    assert!(
        !store.put_ticket(component, &t("T3", 700)).await.unwrap(),
        "same time"
    );
    assert_eq!(store.ticket(component).await.unwrap(), Some(t("T2", 700)));
    assert_eq!(store.get(component).await.unwrap(), None, "no token record");
}

/// The registry's rules, the same on both stores: a late authorization change is ignored,
/// a withdrawal holds until a later authorization; and the data key seals and opens, the
/// same key for a second reader of the same store.
async fn registry_rules(
    store: &dyn wxdesk::store::RegistryStore,
    again: &dyn wxdesk::store::RegistryStore,
) {
    use wxdesk::store::{Authorizer, Standing};
    let now = wxdesk::support::clock::unix_ms();
    let appid = format!("wxR{now}");
    let a = |standing, changed_at_ms| Authorizer {
        appid: appid.clone(),
        component: "wxcomp".into(),
        sealed_refresh_token: "v1:sealed".into(),
        permissions: vec![1, 15],
        standing,
        changed_at_ms,
        sealed_settings: None,
    };
    assert_eq!(store.authorizer(&appid).await.unwrap(), None);
    assert!(
        !store
            .set_standing(&appid, Standing::Withdrawn, 5)
            .await
            .unwrap(),
        "none yet"
    );
    assert!(
        store
            .put_authorizer(&a(Standing::Authorized, 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_authorizer(&a(Standing::Authorized, 9))
            .await
            .unwrap(),
        "older"
    );
    assert!(
        store
            .set_standing(&appid, Standing::Withdrawn, 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_standing(&appid, Standing::Authorized, 15)
            .await
            .unwrap(),
        "older"
    );
    assert!(
        !store
            .put_authorizer(&a(Standing::Authorized, 19))
            .await
            .unwrap(),
        "a late retry"
    );
    assert_eq!(
        store.authorizer(&appid).await.unwrap(),
        Some(a(Standing::Withdrawn, 20))
    );
    assert!(
        store
            .put_authorizer(&a(Standing::Authorized, 30))
            .await
            .unwrap(),
        "re-authorized"
    );
    assert_eq!(
        again.authorizer(&appid).await.unwrap(),
        Some(a(Standing::Authorized, 30))
    );
    // Settings: stored with the first authorization that has them, kept by a later one
    // that brings others (a shop authorizing again keeps its gateway key), replaced only
    // by `set_settings`, and not by an older change.
    let with = |at, settings: &str| Authorizer {
        sealed_settings: Some(settings.to_owned()),
        ..a(Standing::Authorized, at)
    };
    assert!(store.put_authorizer(&with(40, "v1:first")).await.unwrap());
    assert!(store.put_authorizer(&with(50, "v1:second")).await.unwrap());
    let kept = again.authorizer(&appid).await.unwrap().unwrap();
    assert_eq!(
        (kept.sealed_settings.as_deref(), kept.changed_at_ms),
        (Some("v1:first"), 50)
    );
    assert!(!store.set_settings(&appid, "v1:old", 45).await.unwrap());
    assert!(store.set_settings(&appid, "v1:new", 60).await.unwrap());
    assert!(!store.set_settings("wxnobody", "v1:x", 60).await.unwrap());
    let changed = again.authorizer(&appid).await.unwrap().unwrap();
    assert_eq!(changed.sealed_settings.as_deref(), Some("v1:new"));
    // Paging: every stored account once, in pages, whatever the page size.
    for i in 0..5 {
        let other = Authorizer {
            appid: format!("{appid}p{i}"),
            ..a(Standing::Authorized, 1)
        };
        assert!(store.put_authorizer(&other).await.unwrap());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.authorizers(after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.appid.clone());
        seen.extend(page.into_iter().map(|a| a.appid));
    }
    let ours: Vec<_> = seen.iter().filter(|a| a.starts_with(&appid)).collect();
    assert_eq!(ours.len(), 6, "{seen:?}");
    let secret = wxdesk::support::secret::Secret::new("refresh@@@value");
    let sealed = store
        .sealer()
        .await
        .unwrap()
        .seal(&secret, "authorizer#wxR");
    let opened = again
        .sealer()
        .await
        .unwrap()
        .open(&sealed, "authorizer#wxR")
        .unwrap();
    assert!(opened.matches("refresh@@@value"));
}

#[tokio::test]
async fn registry_rules_on_dynamodb() {
    use wxdesk::store::aws::AwsRegistry;
    let ddb = dynamodb().await;
    let table = format!("registry-rules-{}", std::process::id());
    wxdesk::store::aws::create_registry_table(&ddb, &table)
        .await
        .unwrap();
    let (kms, key) = moto_kms_key().await;
    let one = AwsRegistry::new(ddb.clone(), &table, Some((kms.clone(), key.clone())));
    // A second process on the same table opens the same data key (one envelope).
    let two = AwsRegistry::new(ddb, &table, Some((kms, key)));
    registry_rules(&one, &two).await;
}

#[tokio::test]
async fn registry_rules_on_the_embedded_store() {
    let dir = temp_dir("registry");
    let store = wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap();
    registry_rules(&store, &store).await;
    let key = std::fs::metadata(dir.join("seal.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(key.len(), 32);
}

#[tokio::test]
async fn token_rules_on_dynamodb() {
    let stores = aws_stores().await;
    token_rules(stores.tokens.as_ref()).await;
}

#[tokio::test]
async fn token_rules_on_the_embedded_store() {
    let dir = temp_dir("tokens");
    let store = wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap();
    token_rules(&store).await;
}

/// `put_first` (the plain-mode signature binding): the first value wins, later ones read
/// it back, of many racers exactly one value is stored, and an expired entry is free.
async fn put_first_rules(store: Arc<dyn InboxStore>) {
    let now = wxdesk::support::clock::unix_ms();
    let key = format!("wxA#sig#{now}");
    let until = now / 1000 + 300;
    assert_eq!(
        store
            .put_first(&key, "wxA", "body-1", until, now)
            .await
            .unwrap(),
        "body-1"
    );
    assert_eq!(
        store
            .put_first(&key, "wxA", "body-1", until, now)
            .await
            .unwrap(),
        "body-1"
    );
    assert_eq!(
        store
            .put_first(&key, "wxA", "body-2", until, now)
            .await
            .unwrap(),
        "body-1"
    );
    let later = (until + 1) * 1000;
    assert_eq!(
        store
            .put_first(&key, "wxA", "body-3", until + 600, later)
            .await
            .unwrap(),
        "body-3",
        "an expired binding is free again"
    );
    let raced = format!("wxA#sig-race#{now}");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, key) = (store.clone(), raced.clone());
            tokio::spawn(async move {
                store
                    .put_first(&key, "wxA", &format!("body-{i}"), until, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut held = std::collections::HashSet::new();
    for t in tasks {
        held.insert(t.await.unwrap());
    }
    assert_eq!(
        held.len(),
        1,
        "every racer reads the one winning value: {held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_first_rules_on_dynamodb() {
    put_first_rules(Arc::new(aws_inbox().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_first_rules_on_the_embedded_store() {
    let dir = temp_dir("put-first");
    put_first_rules(Arc::new(
        wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap(),
    ))
    .await;
}

/// WeChat's send allowance, counted by senders that do not share memory (Lambda
/// instances, the worker): `a` and `b` are two clients of one store. A message earns 5;
/// 12 concurrent spends split between them get exactly 5; a new message resets (not
/// adds to) the count; a closed window spends nothing; `swap_state` writes only over the
/// value it expects.
async fn allowance_rules(a: Arc<dyn InboxStore>, b: Arc<dyn InboxStore>) {
    use wxdesk::wechat::quota::{self, Action, Spent};
    let cfg = wxdesk::config::QuotaConfig::default();
    let now = wxdesk::support::clock::unix_ms();
    let openid = format!("oQuota{now}");
    assert_eq!(
        quota::spend(a.as_ref(), "wxQ", &openid, now).await.unwrap(),
        Spent::Unknown
    );
    quota::grant(a.as_ref(), &cfg, "wxQ", &openid, Action::Message, now)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let openid = openid.clone();
            tokio::spawn(async move {
                quota::spend(store.as_ref(), "wxQ", &openid, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut spent = Vec::new();
    for t in tasks {
        spent.push(t.await.unwrap());
    }
    let ok = spent
        .iter()
        .filter(|s| matches!(s, Spent::Spent { .. }))
        .count();
    assert_eq!(ok, 5, "{spent:?}");
    assert_eq!(spent.iter().filter(|s| **s == Spent::Over).count(), 7);
    let left = quota::current(b.as_ref(), "wxQ", &openid, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.at(now), 0);
    // A click resets to 3 (allowances do not add up), for a minute.
    quota::grant(b.as_ref(), &cfg, "wxQ", &openid, Action::Click, now)
        .await
        .unwrap();
    let left = quota::current(a.as_ref(), "wxQ", &openid, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.at(now), 3);
    assert_eq!(left.at(now + 61_000), 0, "the window closes");
    assert_eq!(
        quota::spend(a.as_ref(), "wxQ", &openid, now + 61_000)
            .await
            .unwrap(),
        Spent::Over
    );
    // The primitive: only over the expected value.
    let key = format!("wxQ#swap#{now}");
    let swap = |expected: Option<&'static str>, value: &'static str| wxdesk::store::StateSwap {
        key: Box::leak(key.clone().into_boxed_str()),
        appid: "wxQ",
        expected,
        value,
        expires_at: now / 1000 + 600,
        now_ms: now,
    };
    assert!(a.swap_state(&swap(None, "v1")).await.unwrap());
    assert!(
        !b.swap_state(&swap(None, "v2")).await.unwrap(),
        "not free any more"
    );
    assert!(!b.swap_state(&swap(Some("v0"), "v2")).await.unwrap());
    assert!(b.swap_state(&swap(Some("v1"), "v2")).await.unwrap());
    assert_eq!(
        a.get(&key, now).await.unwrap().unwrap().answer.as_deref(),
        Some("v2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_send_allowance_is_shared_by_two_processes_on_dynamodb() {
    // Two clients, each with its own connections, on one table.
    let table = format!("allowance-{}", std::process::id());
    wxdesk::store::aws::create_dedup_table(&dynamodb().await, &table)
        .await
        .unwrap();
    let store = |ddb| -> Arc<dyn InboxStore> {
        Arc::new(wxdesk::store::aws::AwsStore::new(ddb, table.clone()))
    };
    allowance_rules(store(dynamodb().await), store(dynamodb().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_send_allowance_rules_on_the_embedded_store() {
    let dir = temp_dir("allowance");
    let store: Arc<dyn InboxStore> =
        Arc::new(wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap());
    allowance_rules(store.clone(), store).await;
}
