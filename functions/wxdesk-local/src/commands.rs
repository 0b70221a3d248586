//! The commands that run on an opened store, or print what they found: each returns the
//! process's exit code (0 done, 1 failed; usage errors are clap's 2).

use std::process::ExitCode;

use crate::fail;

pub(crate) async fn doctor(svc: &wxdesk::Services, app: Option<&str>) -> ExitCode {
    let checks = wxdesk::app::doctor::run(svc, app).await;
    if checks.is_empty() {
        return fail("no account to check");
    }
    for c in &checks {
        println!("{c}");
    }
    if checks.iter().all(|c| c.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(crate) async fn outbox_list(
    svc: &wxdesk::Services,
    app: Option<&str>,
    state: &str,
) -> ExitCode {
    let Some(shelves) = wxdesk::app::outbox_admin::shelves(state) else {
        eprintln!("wxdesk-local: --state is one of pending, dead, in_flight, all");
        return ExitCode::from(2);
    };
    match wxdesk::app::outbox_admin::list(svc, app, shelves).await {
        Ok(entries) => {
            let now = wxdesk::support::clock::unix_ms();
            for e in &entries {
                println!("{}", wxdesk::app::outbox_admin::describe(e, now));
            }
            eprintln!("{} entries", entries.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) async fn outbox_replay(
    svc: &wxdesk::Services,
    key: Option<&str>,
    app: Option<&str>,
) -> ExitCode {
    let result = match key {
        Some(k) => wxdesk::app::outbox_admin::replay(svc, k)
            .await
            .map(usize::from),
        None => wxdesk::app::outbox_admin::replay_dead(svc, app).await,
    };
    match result {
        Ok(0) if key.is_some() => {
            eprintln!("wxdesk-local: no pending or dead entry with that key");
            ExitCode::from(1)
        }
        Ok(n) => {
            println!("{n} entries queued again");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) async fn simulate(
    config: &wxdesk::Config,
    appid: &str,
    url: &str,
    openid: &str,
    text: &str,
) -> ExitCode {
    use wxdesk::app::simulate::Outcome;
    let Some(app) = config.app(appid) else {
        eprintln!("wxdesk-local: no account {appid} in the config");
        return ExitCode::from(1);
    };
    let now = wxdesk::support::clock::unix_ms() / 1000;
    match wxdesk::app::simulate::simulate(app, url, openid, text, now).await {
        Ok(Outcome::Success) => {
            println!("WeChat got `success`: the message reached wxdesk; the desk answers later");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Reply { xml, content }) => {
            match content {
                Some(c) => println!("the customer sees: {c}"),
                None => println!("a passive reply without text"),
            }
            println!("{xml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            ExitCode::from(1)
        }
    }
}

/// `urls`: the URLs to paste, on stdout; closed routes and unknown accounts on stderr.
pub(crate) fn print_urls(
    config: &wxdesk::Config,
    app: Option<&str>,
    base: Option<String>,
) -> ExitCode {
    use wxdesk::app::urls::{Url, urls};
    let base = base.unwrap_or_else(|| format!("http://{}", config.server.listen));
    for u in urls(config, app, &base) {
        match u {
            Url::Paste { .. } => println!("{u}"),
            Url::Closed { .. } => eprintln!("{u}"),
        }
    }
    ExitCode::SUCCESS
}

/// `{sep}app=A` when an account was named.
pub(crate) fn app_query(app: &Option<String>, sep: &str) -> String {
    app.as_ref()
        .map(|a| {
            format!(
                "{sep}app={}",
                form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default()
}

/// What a running server answered an admin command, as the command itself prints it.
pub(crate) fn print_admin_answer(v: &serde_json::Value) -> ExitCode {
    if let Some(lines) = v["lines"].as_array() {
        for l in lines {
            println!("{}", l.as_str().unwrap_or(""));
        }
    }
    if let Some(n) = v["queued"].as_u64() {
        println!("{n} entries queued again");
    }
    if v["ok"] == serde_json::Value::Bool(false) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// An `accounts` command (`wxdesk::app::registry_admin`).
pub(crate) enum AccountsOp {
    Add(String),
    List,
    Disable(String),
    Enable(String),
    RotateKey { app: String, base: String },
    Urls { app: String, base: String },
}

impl AccountsOp {
    /// The admin request that runs it on the server holding the store.
    pub(crate) fn admin_request(&self) -> (http::Method, String) {
        let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        match self {
            AccountsOp::Add(text) => (
                http::Method::POST,
                format!("/admin/accounts?file={}", enc(text)),
            ),
            AccountsOp::List => (http::Method::GET, "/admin/accounts".into()),
            AccountsOp::Disable(app) => (
                http::Method::POST,
                format!("/admin/accounts/disable?app={}", enc(app)),
            ),
            AccountsOp::Enable(app) => (
                http::Method::POST,
                format!("/admin/accounts/enable?app={}", enc(app)),
            ),
            AccountsOp::RotateKey { app, base } => (
                http::Method::POST,
                format!(
                    "/admin/accounts/rotate-key?app={}&base={}",
                    enc(app),
                    enc(base)
                ),
            ),
            AccountsOp::Urls { app, base } => (
                http::Method::GET,
                format!("/admin/accounts/urls?app={}&base={}", enc(app), enc(base)),
            ),
        }
    }
}

/// Runs an `accounts` command on the opened store.
pub(crate) async fn accounts(svc: &wxdesk::Services, op: AccountsOp) -> ExitCode {
    use wxdesk::app::registry_admin as registry;
    use wxdesk::store::Standing;
    let lines = match op {
        AccountsOp::Add(text) => registry::add(svc, &text).await.map(|l| vec![l]),
        AccountsOp::List => registry::list(svc).await,
        AccountsOp::Disable(app) => registry::set_standing(svc, &app, Standing::Disabled)
            .await
            .map(|l| vec![l]),
        AccountsOp::Enable(app) => registry::set_standing(svc, &app, Standing::Authorized)
            .await
            .map(|l| vec![l]),
        AccountsOp::RotateKey { app, base } => registry::rotate_key(svc, &app, &base).await,
        AccountsOp::Urls { app, base } => registry::urls(svc, &app, &base).await,
    };
    match lines {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
