//! The store contract: random sequences of inbox, outbox, state and token operations, with
//! clock steps, racing claimants and listings past their limit, run on the embedded store
//! and on DynamoDB Local, each beside the reference model (`wxdesk::store::model`, the
//! rules of `wxdesk::store::rules` on plain maps). Every answer and every entry must be
//! the model's; proptest shrinks a divergence to the shortest sequence that shows it.
//!
//! Bounded: `STORE_CONTRACT_CASES` cases per store (default 40) of at most 40 operations.

use std::sync::Arc;

use proptest::prelude::*;
use wxdesk::store::model::ModelStore;
use wxdesk::store::{
    Claim, InboxEntry, InboxStore, NewClaim, Outcome, Shelf, StateSwap, Taken, TokenStore,
};
use wxdesk_tests::*;

const KEYS: usize = 4;
const CLAIMANTS: usize = 3;
const VALUES: [&str; 3] = ["a", "b", ""];

#[derive(Debug, Clone)]
enum Op {
    Tick(i64),
    Claim {
        key: usize,
        who: usize,
        message: bool,
        lease: i64,
        ttl: i64,
    },
    /// Several claimants at once: exactly one may win.
    Race {
        key: usize,
        lease: i64,
    },
    Answer {
        key: usize,
        who: usize,
        value: usize,
    },
    Defer {
        key: usize,
        who: usize,
        due: i64,
        queued: bool,
        ttl: i64,
    },
    Bury {
        key: usize,
        who: usize,
        ttl: i64,
    },
    Take {
        key: usize,
        who: usize,
        lease: i64,
    },
    Revive {
        key: usize,
    },
    MarkQueued {
        key: usize,
    },
    List {
        shelf: usize,
        limit: usize,
    },
    Get {
        key: usize,
    },
    Remove {
        key: usize,
    },
    PutState {
        key: usize,
        value: usize,
        ttl: i64,
    },
    PutFirst {
        key: usize,
        value: usize,
        ttl: i64,
    },
    Swap {
        key: usize,
        expected: Option<usize>,
        value: usize,
        ttl: i64,
    },
    RemoveIf {
        key: usize,
        value: usize,
    },
    Lease {
        who: usize,
        seen: u64,
        lease: i64,
    },
    Replace {
        who: usize,
        version: u64,
        ttl: i64,
    },
    Release {
        who: usize,
    },
    Invalidate {
        token: usize,
    },
    ReadToken,
}

/// A lease or a delay: often a round second, so that a clock step lands exactly on it.
fn span() -> impl Strategy<Value = i64> {
    prop_oneof![Just(1_000i64), Just(2_000), 0..4_000i64]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    let who = 0..CLAIMANTS;
    prop_oneof![
        3 => prop_oneof![Just(0i64), Just(1_000), 1..2_000i64, 5_000..20_000i64].prop_map(Op::Tick),
        4 => (key.clone(), who.clone(), any::<bool>(), span(), 1..30i64)
            .prop_map(|(key, who, message, lease, ttl)| Op::Claim { key, who, message, lease, ttl }),
        1 => (key.clone(), span()).prop_map(|(key, lease)| Op::Race { key, lease }),
        2 => (key.clone(), who.clone(), 0..VALUES.len())
            .prop_map(|(key, who, value)| Op::Answer { key, who, value }),
        2 => (key.clone(), who.clone(), -2_000..4_000i64, any::<bool>(), 1..30i64)
            .prop_map(|(key, who, due, queued, ttl)| Op::Defer { key, who, due, queued, ttl }),
        1 => (key.clone(), who.clone(), 1..30i64).prop_map(|(key, who, ttl)| Op::Bury { key, who, ttl }),
        3 => (key.clone(), who.clone(), span()).prop_map(|(key, who, lease)| Op::Take { key, who, lease }),
        1 => key.clone().prop_map(|key| Op::Revive { key }),
        1 => key.clone().prop_map(|key| Op::MarkQueued { key }),
        3 => (0..4usize, 1..4usize).prop_map(|(shelf, limit)| Op::List { shelf, limit }),
        2 => key.clone().prop_map(|key| Op::Get { key }),
        1 => key.clone().prop_map(|key| Op::Remove { key }),
        1 => (key.clone(), 0..VALUES.len(), 1..30i64)
            .prop_map(|(key, value, ttl)| Op::PutState { key, value, ttl }),
        1 => (key.clone(), 0..VALUES.len(), 1..30i64)
            .prop_map(|(key, value, ttl)| Op::PutFirst { key, value, ttl }),
        1 => (key.clone(), proptest::option::of(0..VALUES.len()), 0..VALUES.len(), 1..30i64)
            .prop_map(|(key, expected, value, ttl)| Op::Swap { key, expected, value, ttl }),
        1 => (key, 0..VALUES.len()).prop_map(|(key, value)| Op::RemoveIf { key, value }),
        2 => (who.clone(), 0..3u64, 0..3_000i64).prop_map(|(who, seen, lease)| Op::Lease { who, seen, lease }),
        2 => (who.clone(), 0..3u64, 1..30i64).prop_map(|(who, version, ttl)| Op::Replace { who, version, ttl }),
        1 => who.prop_map(|who| Op::Release { who }),
        1 => (0..3usize).prop_map(|token| Op::Invalidate { token }),
        1 => Just(Op::ReadToken),
    ]
}

const SHELVES: [Shelf; 4] = [Shelf::Queued, Shelf::Unqueued, Shelf::InFlight, Shelf::Dead];

/// One store beside its model, on an account of its own.
struct Pair {
    real: Arc<dyn InboxStore>,
    tokens: Arc<dyn TokenStore>,
    model: Arc<dyn InboxStore>,
    model_tokens: Arc<dyn TokenStore>,
    appid: String,
    now: i64,
}

/// What an operation answered, comparable across stores.
#[derive(Debug, PartialEq)]
enum Said {
    Claim(Claim),
    Flag(bool),
    Taken(Taken),
    Entry(Option<InboxEntry>),
    Listing(Vec<InboxEntry>),
    Value(String),
    Nothing,
    Token(Option<wxdesk::store::TokenRecord>),
}

impl Pair {
    fn key(&self, k: usize) -> String {
        format!("{}#msg#{k}", self.appid)
    }

    fn claimant(who: usize) -> String {
        format!("claimant-{who}")
    }

    /// Runs `op` on both; the answers that must agree.
    async fn run(&mut self, op: &Op) -> (Said, Said) {
        let now = self.now;
        match *op {
            Op::Tick(ms) => {
                self.now += ms;
                (Said::Nothing, Said::Nothing)
            }
            Op::Claim {
                key,
                who,
                message,
                lease,
                ttl,
            } => {
                let (key, id) = (self.key(key), Self::claimant(who));
                let group = if message {
                    format!("{}#in#o{who}", self.appid)
                } else {
                    String::new()
                };
                let c = NewClaim {
                    key: &key,
                    appid: &self.appid,
                    payload: "<xml/>",
                    claim_id: &id,
                    now_ms: now,
                    lease_until_ms: now + lease,
                    expires_at: now / 1000 + ttl,
                    group: &group,
                };
                (
                    Said::Claim(self.real.claim(&c).await.unwrap()),
                    Said::Claim(self.model.claim(&c).await.unwrap()),
                )
            }
            Op::Race { key, lease } => self.race(key, lease).await,
            Op::Answer { key, who, value } => {
                self.finish(key, who, Outcome::Answered(VALUES[value]))
                    .await
            }
            Op::Defer {
                key,
                who,
                due,
                queued,
                ttl,
            } => {
                let group = format!("{}#in#o{who}", self.appid);
                let o = Outcome::Pending {
                    error: "desk 500",
                    due_ms: now + due,
                    group: &group,
                    answer: None,
                    expires_at: now / 1000 + ttl,
                    queued,
                };
                self.finish(key, who, o).await
            }
            Op::Bury { key, who, ttl } => {
                let o = Outcome::Dead {
                    why: "refused",
                    expires_at: now / 1000 + ttl,
                    at_ms: now,
                };
                self.finish(key, who, o).await
            }
            Op::Take { key, who, lease } => {
                let (key, id) = (self.key(key), Self::claimant(who));
                (
                    Said::Taken(self.real.take(&key, &id, now, now + lease).await.unwrap()),
                    Said::Taken(self.model.take(&key, &id, now, now + lease).await.unwrap()),
                )
            }
            Op::Revive { key } => {
                let key = self.key(key);
                (
                    Said::Flag(self.real.revive(&key, now).await.unwrap()),
                    Said::Flag(self.model.revive(&key, now).await.unwrap()),
                )
            }
            Op::MarkQueued { key } => {
                let key = self.key(key);
                self.real.mark_queued(&key).await.unwrap();
                self.model.mark_queued(&key).await.unwrap();
                (Said::Nothing, Said::Nothing)
            }
            Op::List { shelf, limit } => {
                let shelf = SHELVES[shelf];
                let real = self
                    .real
                    .outbox(&self.appid, shelf, limit, now)
                    .await
                    .unwrap();
                let model = self
                    .model
                    .outbox(&self.appid, shelf, limit, now)
                    .await
                    .unwrap();
                let (real, model) = comparable_listings(real, model);
                (Said::Listing(real), Said::Listing(model))
            }
            Op::Get { key } => {
                let key = self.key(key);
                (
                    Said::Entry(self.real.get(&key, now).await.unwrap()),
                    Said::Entry(self.model.get(&key, now).await.unwrap()),
                )
            }
            Op::Remove { key } => {
                let key = self.key(key);
                self.real.remove(&key).await.unwrap();
                self.model.remove(&key).await.unwrap();
                (Said::Nothing, Said::Nothing)
            }
            Op::PutState { key, value, ttl } => {
                let (key, v, exp) = (self.key(key), VALUES[value], now / 1000 + ttl);
                self.real
                    .put_state(&key, &self.appid, v, exp)
                    .await
                    .unwrap();
                self.model
                    .put_state(&key, &self.appid, v, exp)
                    .await
                    .unwrap();
                (Said::Nothing, Said::Nothing)
            }
            Op::PutFirst { key, value, ttl } => {
                let (key, v, exp) = (self.key(key), VALUES[value], now / 1000 + ttl);
                (
                    Said::Value(
                        self.real
                            .put_first(&key, &self.appid, v, exp, now)
                            .await
                            .unwrap(),
                    ),
                    Said::Value(
                        self.model
                            .put_first(&key, &self.appid, v, exp, now)
                            .await
                            .unwrap(),
                    ),
                )
            }
            Op::Swap {
                key,
                expected,
                value,
                ttl,
            } => {
                let key = self.key(key);
                let swap = StateSwap {
                    key: &key,
                    appid: &self.appid,
                    expected: expected.map(|e| VALUES[e]),
                    value: VALUES[value],
                    expires_at: now / 1000 + ttl,
                    now_ms: now,
                };
                (
                    Said::Flag(self.real.swap_state(&swap).await.unwrap()),
                    Said::Flag(self.model.swap_state(&swap).await.unwrap()),
                )
            }
            Op::RemoveIf { key, value } => {
                let key = self.key(key);
                self.real.remove_if(&key, VALUES[value]).await.unwrap();
                self.model.remove_if(&key, VALUES[value]).await.unwrap();
                (Said::Nothing, Said::Nothing)
            }
            Op::Lease { who, seen, lease } => {
                let (a, id) = (&self.appid, Self::claimant(who));
                (
                    Said::Flag(
                        self.tokens
                            .try_lease(a, &id, seen, now, now + lease)
                            .await
                            .unwrap(),
                    ),
                    Said::Flag(
                        self.model_tokens
                            .try_lease(a, &id, seen, now, now + lease)
                            .await
                            .unwrap(),
                    ),
                )
            }
            Op::Replace { who, version, ttl } => {
                let (a, id) = (&self.appid, Self::claimant(who));
                let token = format!("token-{version}-{who}");
                let exp = now + ttl * 1000;
                (
                    Said::Flag(
                        self.tokens
                            .replace(a, &id, version, &token, exp)
                            .await
                            .unwrap(),
                    ),
                    Said::Flag(
                        self.model_tokens
                            .replace(a, &id, version, &token, exp)
                            .await
                            .unwrap(),
                    ),
                )
            }
            Op::Release { who } => {
                let id = Self::claimant(who);
                self.tokens.release(&self.appid, &id).await.unwrap();
                self.model_tokens.release(&self.appid, &id).await.unwrap();
                (Said::Nothing, Said::Nothing)
            }
            Op::Invalidate { token } => {
                let token = format!("token-{token}-0");
                (
                    Said::Flag(self.tokens.invalidate(&self.appid, &token).await.unwrap()),
                    Said::Flag(
                        self.model_tokens
                            .invalidate(&self.appid, &token)
                            .await
                            .unwrap(),
                    ),
                )
            }
            Op::ReadToken => (
                Said::Token(self.tokens.get(&self.appid).await.unwrap()),
                Said::Token(self.model_tokens.get(&self.appid).await.unwrap()),
            ),
        }
    }

    async fn finish(&mut self, key: usize, who: usize, o: Outcome<'_>) -> (Said, Said) {
        let (key, id) = (self.key(key), Self::claimant(who));
        (
            Said::Flag(self.real.finish(&key, &id, o).await.unwrap()),
            Said::Flag(self.model.finish(&key, &id, o).await.unwrap()),
        )
    }

    /// `CLAIMANTS` claims of one message at once on the real store: the model hears the
    /// winner's claim (if any) and must agree that there was one to win.
    async fn race(&mut self, key: usize, lease: i64) -> (Said, Said) {
        let (key, now) = (self.key(key), self.now);
        let group = format!("{}#in#orace", self.appid);
        let claims = (0..CLAIMANTS).map(|who| {
            let (real, key, appid, group) = (
                self.real.clone(),
                key.clone(),
                self.appid.clone(),
                group.clone(),
            );
            tokio::spawn(async move {
                let id = Self::claimant(who);
                let c = NewClaim {
                    key: &key,
                    appid: &appid,
                    payload: "<xml/>",
                    claim_id: &id,
                    now_ms: now,
                    lease_until_ms: now + lease,
                    expires_at: now / 1000 + 20,
                    group: &group,
                };
                real.claim(&c).await.unwrap()
            })
        });
        let mut won = Vec::new();
        for c in claims {
            if let Claim::Won { claim_id, .. } = c.await.unwrap() {
                won.push(claim_id);
            }
        }
        assert!(won.len() <= 1, "{} racers won one claim", won.len());
        let id = won.first().cloned().unwrap_or_else(|| Self::claimant(0));
        let c = NewClaim {
            key: &key,
            appid: &self.appid,
            payload: "<xml/>",
            claim_id: &id,
            now_ms: now,
            lease_until_ms: now + lease,
            expires_at: now / 1000 + 20,
            group: &group,
        };
        let model_won = matches!(self.model.claim(&c).await.unwrap(), Claim::Won { .. });
        (Said::Flag(!won.is_empty()), Said::Flag(model_won))
    }

    /// Every key's entry, read on both after the sequence.
    async fn entries(&self) -> (Vec<Option<InboxEntry>>, Vec<Option<InboxEntry>>) {
        let (mut real, mut model) = (Vec::new(), Vec::new());
        for k in 0..KEYS {
            let key = self.key(k);
            real.push(self.real.get(&key, self.now).await.unwrap());
            model.push(self.model.get(&key, self.now).await.unwrap());
        }
        (real, model)
    }
}

/// Listings with the same due time may come in either order (DynamoDB's index leaves ties
/// unordered): sorted by (due, key); and where a listing was cut at its limit among ties,
/// only the due times of the last tie are compared.
fn comparable_listings(
    mut real: Vec<InboxEntry>,
    mut model: Vec<InboxEntry>,
) -> (Vec<InboxEntry>, Vec<InboxEntry>) {
    let by = |e: &InboxEntry| (e.lease_until_ms, e.key.clone());
    real.sort_by_key(by);
    model.sort_by_key(by);
    if let (Some(r), Some(m)) = (real.last(), model.last())
        && r.lease_until_ms == m.lease_until_ms
        && real.len() == model.len()
    {
        let last = r.lease_until_ms;
        let blank = |v: &mut Vec<InboxEntry>| {
            for e in v.iter_mut().filter(|e| e.lease_until_ms == last) {
                *e = InboxEntry {
                    key: String::new(),
                    ..tie(last)
                };
            }
        };
        blank(&mut real);
        blank(&mut model);
    }
    (real, model)
}

fn tie(due: i64) -> InboxEntry {
    InboxEntry {
        key: String::new(),
        appid: String::new(),
        payload: String::new(),
        state: wxdesk::store::EntryState::Pending,
        claim_id: String::new(),
        attempts: 0,
        answer: None,
        last_error: None,
        lease_until_ms: due,
        expires_at: 0,
        group: String::new(),
        since_ms: 0,
        queued: false,
    }
}

fn cases() -> u32 {
    std::env::var("STORE_CONTRACT_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(40)
}

/// Runs generated sequences on the store `open` gives, each on an account of its own.
fn contract(name: &str, open: impl Fn() -> (Arc<dyn InboxStore>, Arc<dyn TokenStore>)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (real, tokens) = rt.block_on(async { open() });
    let config = ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    };
    let case = std::sync::atomic::AtomicU64::new(0);
    // A day ahead of the wall clock: DynamoDB's TTL never deletes what the model still has.
    let base = wxdesk::support::clock::unix_ms() + 86_400_000;
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..40))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let model = Arc::new(ModelStore::default());
        let mut pair = Pair {
            real: real.clone(),
            tokens: tokens.clone(),
            model: model.clone(),
            model_tokens: model,
            appid: format!("wx{name}{n}r{}", rand_suffix()),
            now: base,
        };
        rt.block_on(async {
            for (i, op) in ops.iter().enumerate() {
                let (r, m) = pair.run(op).await;
                prop_assert_eq!(r, m, "{} diverged at op {} ({:?})", name, i, op);
            }
            let (r, m) = pair.entries().await;
            prop_assert_eq!(r, m, "{} entries diverged after the sequence", name);
            Ok(())
        })?;
    });
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

#[test]
fn the_embedded_store_keeps_the_model_rules() {
    let dir = temp_dir("contract");
    let store = Arc::new(wxdesk::store::embedded::EmbeddedStore::open(&dir).unwrap());
    contract("Emb", move || {
        (
            store.clone() as Arc<dyn InboxStore>,
            store.clone() as Arc<dyn TokenStore>,
        )
    });
}

#[test]
fn dynamodb_keeps_the_model_rules() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stores = rt.block_on(aws_stores());
    drop(rt);
    contract("Ddb", move || (stores.inbox.clone(), stores.tokens.clone()));
}
