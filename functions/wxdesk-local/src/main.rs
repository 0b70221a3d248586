//! `wxdesk-local --config <file.toml> --listen 127.0.0.1:8080`: every route on one port.
//! `wxdesk-local doctor --config <file.toml> [--app <appid>]`: checks each account.
//! `wxdesk-local outbox list --config <file.toml> [--app <appid>] [--state pending|dead|in_flight|all]`
//! `wxdesk-local outbox replay --config <file.toml> (<key> | --dead [--app <appid>])`

use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: wxdesk-local --config <file.toml> [--listen 127.0.0.1:8080]\n       wxdesk-local doctor --config <file.toml> [--app <appid>]\n       wxdesk-local outbox list --config <file.toml> [--app <appid>] [--state pending|dead|in_flight|all]\n       wxdesk-local outbox replay --config <file.toml> (<key> | --dead [--app <appid>])";

enum Command {
    Serve,
    Doctor,
    List,
    Replay,
}

#[tokio::main]
async fn main() -> ExitCode {
    wxdesk::telemetry::init();
    let mut config = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut app = None;
    let mut state = "pending".to_owned();
    let mut key = None;
    let mut dead = false;
    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some("doctor") => Command::Doctor,
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
        let takes_app = matches!(command, Command::Doctor | Command::List | Command::Replay);
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
            ("--listen", Some(v)) if matches!(command, Command::Serve) => listen = v,
            ("--app", Some(v)) if takes_app => app = Some(v),
            ("--state", Some(v)) if matches!(command, Command::List) => state = v,
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
    let svc = match wxdesk::Config::load_file(&config) {
        Ok(c) => wxdesk::Services::build(c).await,
        Err(e) => Err(e.into()),
    };
    let svc = match svc {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            return ExitCode::from(1);
        }
    };
    match command {
        Command::List => return outbox_list(&svc, app.as_deref(), &state).await,
        Command::Replay => return outbox_replay(&svc, key.as_deref(), app.as_deref()).await,
        Command::Doctor | Command::Serve => {}
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
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wxdesk-local: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        listen = %listen,
        apps = svc.config.apps.len(),
        "wxdesk-local serving /wechat/{{appid}} and /udesk/{{appid}}/{{key}}"
    );
    // What the token-refresher function does on its EventBridge schedule in AWS.
    tokio::spawn(wxdesk::app::refresher::every(
        svc.clone(),
        std::time::Duration::from_secs(300),
    ));
    // What deliver-worker does on AWS: the outbox's jobs, and its sweep.
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(wxdesk::app::worker::every(svc.clone(), async {
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
    let served = wxdesk::app::local::serve(svc, listener, shutdown).await;
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
