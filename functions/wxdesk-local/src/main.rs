//! `wxdesk-local`: every wxdesk route on one port, and the commands that operate it
//! (`wxdesk-local --help`; the commands and flags are declared in `cli.rs`). doctor and
//! outbox ask the running server (`--server`, `/admin/...` with `[server] admin_key`) when
//! it holds the embedded store.

mod cli;
mod commands;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use cli::{AccountsCommand, Cli, Command, OutboxCommand};
use commands::{
    app_query, doctor, outbox_list, outbox_replay, print_admin_answer, print_urls, simulate,
};

/// A command that opens the store, or asks the server that holds it.
enum Op {
    Serve {
        listen: Option<String>,
    },
    Doctor {
        app: Option<String>,
    },
    List {
        app: Option<String>,
        state: String,
    },
    Replay {
        key: Option<String>,
        app: Option<String>,
    },
    Accounts(commands::AccountsOp),
}

#[tokio::main]
async fn main() -> ExitCode {
    wxdesk::telemetry::init();
    let cli = Cli::parse();
    let (path, op, server) = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(a) => {
            let Some(config) = a.config else {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "--config <FILE> is required",
                    )
                    .exit()
            };
            (config, Op::Serve { listen: a.listen }, None)
        }
        Command::Check(c) => {
            return match load(&c.config) {
                // Parsing is the check: every key, URL, cipher and limit is validated.
                Ok((config, _)) => {
                    println!("config OK: {} accounts", config.apps.len());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Command::AuthorizeUrl(c) => {
            return match load(&c.config) {
                Ok((config, _)) => match wxdesk::app::urls::authorize_page(&config) {
                    Ok(url) => {
                        println!("{url}");
                        ExitCode::SUCCESS
                    }
                    Err(why) => {
                        eprintln!("{why}");
                        ExitCode::FAILURE
                    }
                },
                Err(code) => code,
            };
        }
        Command::Urls { config, app, base } => {
            let loaded = match load(&config.config) {
                Ok((loaded, _)) => loaded,
                Err(code) => return code,
            };
            match app {
                // Not the config's: perhaps the registry's (the store is opened, or the
                // running server asked).
                Some(a) if loaded.app(&a).is_none() => {
                    let base = base.unwrap_or_else(|| format!("http://{}", loaded.server.listen));
                    let op = Op::Accounts(commands::AccountsOp::Urls { app: a, base });
                    (config.config, op, None)
                }
                app => return print_urls(&loaded, app.as_deref(), base),
            }
        }
        Command::Simulate {
            config,
            app,
            text,
            url,
            openid,
        } => {
            // Plays WeChat only: opens no store, so it runs beside a server on the config.
            return match load(&config.config) {
                Ok((config, _)) => simulate(&config, &app, &url, &openid, &text).await,
                Err(code) => code,
            };
        }
        Command::Doctor {
            config,
            app,
            server,
        } => (config.config, Op::Doctor { app }, server.server),
        Command::Outbox {
            command:
                OutboxCommand::List {
                    config,
                    app,
                    state,
                    server,
                },
        } => (config.config, Op::List { app, state }, server.server),
        Command::Outbox {
            command:
                OutboxCommand::Replay {
                    config,
                    key,
                    app,
                    server,
                    ..
                },
        } => (config.config, Op::Replay { key, app }, server.server),
        Command::Accounts { command } => match accounts_op(command) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };
    let (config, text) = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run(op, config, path, text, server).await
}

/// An `accounts` command as the store operation it runs (the file read here).
fn accounts_op(command: AccountsCommand) -> Result<(String, Op, Option<String>), ExitCode> {
    use commands::AccountsOp as A;
    Ok(match command {
        AccountsCommand::Add {
            config,
            file,
            server,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| fail(format!("cannot read {file}: {e}")))?;
            (config.config, Op::Accounts(A::Add(text)), server.server)
        }
        AccountsCommand::List { config, server } => {
            (config.config, Op::Accounts(A::List), server.server)
        }
        AccountsCommand::Disable(a) => (
            a.config.config,
            Op::Accounts(A::Disable(a.app)),
            a.server.server,
        ),
        AccountsCommand::Enable(a) => (
            a.config.config,
            Op::Accounts(A::Enable(a.app)),
            a.server.server,
        ),
        AccountsCommand::RotateKey {
            config,
            app,
            base,
            server,
        } => (
            config.config,
            Op::Accounts(A::RotateKey { app, base }),
            server.server,
        ),
    })
}

/// The config file, or the exit code of a config that does not load (it names the key).
fn load(path: &str) -> Result<(wxdesk::Config, String), ExitCode> {
    wxdesk::Config::load_file(path).map_err(|e| {
        eprintln!("wxdesk-local: {e}");
        ExitCode::from(1)
    })
}

pub(crate) fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("wxdesk-local: {e}");
    ExitCode::from(1)
}

async fn run(
    op: Op,
    config: wxdesk::Config,
    path: String,
    text: String,
    server: Option<String>,
) -> ExitCode {
    let admin_key = config.server.admin_key.clone();
    // doctor beside a running server checks the file, not the server's config.
    let file_config = matches!(op, Op::Doctor { .. }).then(|| config.clone());
    // Where a server holding the store listens (only a loopback address).
    let server = wxdesk::app::beside::server_base(&config, server.as_deref());
    let svc = match wxdesk::Services::build(config).await {
        Ok(s) => Arc::new(s),
        // The embedded store is held by a server on this config: ask that server.
        Err(wxdesk::app::InitError::Store(wxdesk::store::StoreError::InUse(_)))
            if !matches!(op, Op::Serve { .. }) =>
        {
            let Some(admin) = admin_key else {
                return fail(
                    "the store is in use by a running wxdesk-local; set [server] admin_key in the config (the server reads it on SIGHUP) to let this command ask it",
                );
            };
            let server = match server {
                Ok(base) => base,
                Err(e) => {
                    eprintln!("wxdesk-local: {e}");
                    return ExitCode::from(2);
                }
            };
            return beside(op, file_config, &server, &admin).await;
        }
        Err(e) => return fail(e),
    };
    match op {
        Op::List { app, state } => outbox_list(&svc, app.as_deref(), &state).await,
        Op::Replay { key, app } => outbox_replay(&svc, key.as_deref(), app.as_deref()).await,
        Op::Doctor { app } => doctor(&svc, app.as_deref()).await,
        Op::Accounts(a) => commands::accounts(&svc, a).await,
        Op::Serve { listen } => serve(svc, listen, path, &text).await,
    }
}

/// `op` asked of the running server that holds the store.
async fn beside(
    op: Op,
    file_config: Option<wxdesk::Config>,
    server: &str,
    admin: &wxdesk::support::secret::Secret,
) -> ExitCode {
    if let (Op::Doctor { app }, Some(file)) = (&op, file_config) {
        return match wxdesk::app::beside::doctor(file, server, admin, app.as_deref()).await {
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
            Err(e) => fail(e),
        };
    }
    let (method, path) = match &op {
        Op::Doctor { app } => (
            http::Method::GET,
            format!("/admin/doctor{}", app_query(app, "?")),
        ),
        Op::List { app, state } => (
            http::Method::GET,
            format!("/admin/outbox?state={state}{}", app_query(app, "&")),
        ),
        Op::Replay { key: Some(k), .. } => (
            http::Method::POST,
            format!(
                "/admin/outbox/replay?key={}",
                form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()
            ),
        ),
        Op::Replay { key: None, app } => (
            http::Method::POST,
            format!("/admin/outbox/replay?dead=1{}", app_query(app, "&")),
        ),
        Op::Accounts(a) => a.admin_request(),
        Op::Serve { .. } => return fail("the store is in use by a running wxdesk-local"),
    };
    match wxdesk::app::admin::call(server, admin, method, &path).await {
        Ok(v) => print_admin_answer(&v),
        Err(e) => fail(e),
    }
}

/// Serves until SIGTERM or Ctrl-C; the config is read again on SIGHUP.
async fn serve(
    svc: Arc<wxdesk::Services>,
    listen: Option<String>,
    config_path: String,
    config_text: &str,
) -> ExitCode {
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
        config_text,
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
