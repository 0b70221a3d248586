//! `wxdesk-local --config <file.toml> --listen 127.0.0.1:8080`: every route on one port.
//! `wxdesk-local check --config <file.toml>`: validates the config (no store opened).
//! `wxdesk-local urls --config <file.toml> [--app <appid>] [--base https://<api>]`: every
//! URL to paste into a console, keys filled in (no store opened).
//! `wxdesk-local doctor --config <file.toml> [--app <appid>]`: checks each account.
//! doctor and outbox ask the running server (`--server`, `/admin/...` with
//! `[server] admin_key`) when it holds the embedded store.
//! `wxdesk-local outbox list --config <file.toml> [--app <appid>] [--state pending|dead|in_flight|all]`
//! `wxdesk-local outbox replay --config <file.toml> (<key> | --dead [--app <appid>])`
//! `wxdesk-local simulate --config <file.toml> --app <appid> --text "..." [--url <base>] [--openid <openid>]`

use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: wxdesk-local --config <file.toml> [--listen 127.0.0.1:8080]\n       wxdesk-local check --config <file.toml>\n       wxdesk-local urls --config <file.toml> [--app <appid>] [--base https://<api>]\n       wxdesk-local doctor --config <file.toml> [--app <appid>] [--server http://127.0.0.1:8080]\n       wxdesk-local outbox list --config <file.toml> [--app <appid>] [--state pending|dead|in_flight|all]\n       wxdesk-local outbox replay --config <file.toml> (<key> | --dead [--app <appid>])\n       wxdesk-local simulate --config <file.toml> --app <appid> --text \"...\" [--url http://127.0.0.1:8080] [--openid <openid>]";

enum Command {
    Serve,
    Doctor,
    List,
    Replay,
    Simulate,
    Check,
    Urls,
}

#[tokio::main]
async fn main() -> ExitCode {
    wxdesk::telemetry::init();
    let mut config = None;
    let mut listen = None;
    let mut base = None;
    let mut app = None;
    let mut state = "pending".to_owned();
    let mut key = None;
    let mut dead = false;
    let mut args = std::env::args().skip(1).peekable();
    let mut text = None;
    let mut server = None;
    let mut url = "http://127.0.0.1:8080".to_owned();
    let mut openid = "oSimulatedCustomer0000000000".to_owned();
    let command = match args.peek().map(String::as_str) {
        Some("doctor") => Command::Doctor,
        Some("simulate") => Command::Simulate,
        Some("check") => Command::Check,
        Some("urls") => Command::Urls,
        Some("outbox") => {
            args.next();
            match args.peek().map(String::as_str) {
                Some("list") => Command::List,
                Some("replay") => Command::Replay,
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => Command::Serve,
    };
    if !matches!(command, Command::Serve) {
        args.next();
    }
    while let Some(arg) = args.next() {
        let takes_app = !matches!(command, Command::Serve);
        let simulate = matches!(command, Command::Simulate);
        match arg.as_str() {
            "--dead" if matches!(command, Command::Replay) => {
                dead = true;
                continue;
            }
            k if matches!(command, Command::Replay) && !k.starts_with("--") && key.is_none() => {
                key = Some(k.to_owned());
                continue;
            }
            _ => {}
        }
        match (arg.as_str(), args.next()) {
            ("--config", Some(v)) => config = Some(v),
            ("--listen", Some(v)) if matches!(command, Command::Serve) => listen = Some(v),
            ("--base", Some(v)) if matches!(command, Command::Urls) => base = Some(v),
            ("--app", Some(v)) if takes_app => app = Some(v),
            ("--state", Some(v)) if matches!(command, Command::List) => state = v,
            ("--text", Some(v)) if simulate => text = Some(v),
            ("--server", Some(v))
                if matches!(command, Command::Doctor | Command::List | Command::Replay) =>
            {
                server = Some(v)
            }
            ("--url", Some(v)) if simulate => url = v,
            ("--openid", Some(v)) if simulate => openid = v,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if matches!(command, Command::Replay) && key.is_some() == dead {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let Some(config) = config else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let config_path = config;
    let (config, config_text) = match wxdesk::Config::load_file(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            return ExitCode::from(1);
        }
    };
    if matches!(command, Command::Simulate) {
        // Plays WeChat only: opens no store, so it runs beside a server on the same config.
        let (Some(app), Some(text)) = (app, text) else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        return simulate(&config, &app, &url, &openid, &text).await;
    }
    if matches!(command, Command::Urls) {
        return print_urls(&config, app.as_deref(), base);
    }
    if matches!(command, Command::Check) {
        // Parsing is the check: every key, URL, cipher and limit is validated.
        println!("config OK: {} accounts", config.apps.len());
        return ExitCode::SUCCESS;
    }
    let admin_key = config.server.admin_key.clone();
    // doctor beside a running server checks the file, not the server's config.
    let file_config = matches!(command, Command::Doctor).then(|| config.clone());
    // Where a server holding the store listens (only a loopback address).
    let server = wxdesk::app::beside::server_base(&config, server.as_deref());
    let svc = wxdesk::Services::build(config).await;
    let svc = match svc {
        Ok(s) => Arc::new(s),
        // The embedded store is held by a server on this config: ask that server.
        Err(wxdesk::app::InitError::Store(wxdesk::store::StoreError::InUse(_)))
            if !matches!(command, Command::Serve) =>
        {
            let Some(admin) = admin_key else {
                eprintln!(
                    "wxdesk-local: the store is in use by a running wxdesk-local; set [server] admin_key in the config (the server reads it on SIGHUP) to let this command ask it"
                );
                return ExitCode::from(1);
            };
            let server = match server {
                Ok(base) => base,
                Err(e) => {
                    eprintln!("wxdesk-local: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(file) = file_config {
                return match wxdesk::app::beside::doctor(file, &server, &admin, app.as_deref())
                    .await
                {
                    Ok((lines, ok)) => {
                        for l in &lines {
                            println!("{l}");
                        }
                        if ok {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::from(1)
                        }
                    }
                    Err(e) => {
                        eprintln!("wxdesk-local: {e}");
                        ExitCode::from(1)
                    }
                };
            }
            let path = match command {
                Command::Doctor => format!("/admin/doctor{}", app_query(&app, "?")),
                Command::List => format!("/admin/outbox?state={state}{}", app_query(&app, "&")),
                _ => match &key {
                    Some(k) => format!(
                        "/admin/outbox/replay?key={}",
                        form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()
                    ),
                    None => format!("/admin/outbox/replay?dead=1{}", app_query(&app, "&")),
                },
            };
            let method = if matches!(command, Command::Replay) {
                http::Method::POST
            } else {
                http::Method::GET
            };
            return match wxdesk::app::admin::call(&server, &admin, method, &path).await {
                Ok(v) => print_admin_answer(&v),
                Err(e) => {
                    eprintln!("wxdesk-local: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            return ExitCode::from(1);
        }
    };
    match command {
        Command::List => return outbox_list(&svc, app.as_deref(), &state).await,
        Command::Replay => return outbox_replay(&svc, key.as_deref(), app.as_deref()).await,
        Command::Doctor | Command::Serve | Command::Simulate | Command::Check | Command::Urls => {}
    }
    if matches!(command, Command::Doctor) {
        let checks = wxdesk::app::doctor::run(&svc, app.as_deref()).await;
        if checks.is_empty() {
            eprintln!("wxdesk-local: no account to check");
            return ExitCode::from(1);
        }
        for c in &checks {
            println!("{c}");
        }
        return if checks.iter().all(|c| c.result.is_ok()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let listen = listen.unwrap_or_else(|| svc.config.server.listen.clone());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wxdesk-local: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    // Where doctor and outbox find this server (and no other process on another port).
    if let Ok(addr) = listener.local_addr()
        && let Err(e) = wxdesk::app::beside::record_address(&svc.config, addr)
    {
        tracing::warn!(error = %e, "cannot record the server's address in the store's directory; doctor and outbox need --server");
    }
    tracing::info!(
        listen = %listen,
        apps = svc.config.apps.len(),
        "wxdesk-local serving /wechat/{{appid}} and /udesk/{{appid}}/{{key}}"
    );
    // The config file is read again on SIGHUP; a version that fails validation is refused
    // and the running one stays.
    let live = Arc::new(wxdesk::app::live::Live::from_file(
        svc,
        config_path.into(),
        &config_text,
    ));
    let reloader = live.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP: the config is not reloadable");
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload().await {
                Ok(true) => tracing::info!(
                    apps = reloader.current().config.apps.len(),
                    "config reloaded"
                ),
                Ok(false) => tracing::info!("config unchanged"),
                Err(e) => {
                    tracing::error!(error = %e, "config reload refused; the running config stays")
                }
            }
        }
    });
    // What the token-refresher function does on its EventBridge schedule in AWS.
    tokio::spawn(wxdesk::app::refresher::every(
        live.clone(),
        std::time::Duration::from_secs(300),
    ));
    // What deliver-worker does on AWS: the outbox's jobs, and its sweep.
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(wxdesk::app::worker::every(live.clone(), async {
        let _ = stopped.await;
    }));
    // SIGTERM (systemd, Docker, Kubernetes) or Ctrl-C: stop accepting, drain the requests
    // in flight, then the worker's running jobs, then exit.
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: no new connections");
    };
    let served = wxdesk::app::local::serve(live, listener, shutdown).await;
    let _ = stop_worker.send(());
    let _ = worker.await;
    tracing::info!("stopped");
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            ExitCode::from(1)
        }
    }
}

async fn outbox_list(svc: &wxdesk::Services, app: Option<&str>, state: &str) -> ExitCode {
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

async fn outbox_replay(svc: &wxdesk::Services, key: Option<&str>, app: Option<&str>) -> ExitCode {
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

async fn simulate(
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
fn print_urls(config: &wxdesk::Config, app: Option<&str>, base: Option<String>) -> ExitCode {
    use wxdesk::app::urls::{Url, urls};
    if let Some(a) = app
        && config.app(a).is_none()
    {
        eprintln!("wxdesk-local: no account {a} in the config");
        return ExitCode::from(1);
    }
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
fn app_query(app: &Option<String>, sep: &str) -> String {
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
fn print_admin_answer(v: &serde_json::Value) -> ExitCode {
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
