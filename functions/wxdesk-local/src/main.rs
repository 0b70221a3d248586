//! `wxdesk-local --config <file.toml> --listen 127.0.0.1:8080`: every route on one port.
//! `wxdesk-local doctor --config <file.toml> [--app <appid>]`: checks each account.

use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: wxdesk-local --config <file.toml> [--listen 127.0.0.1:8080]\n       wxdesk-local doctor --config <file.toml> [--app <appid>]";

#[tokio::main]
async fn main() -> ExitCode {
    wxdesk::telemetry::init();
    let mut config = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut app = None;
    let mut args = std::env::args().skip(1).peekable();
    let doctor = args.next_if(|a| a == "doctor").is_some();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--config", Some(v)) => config = Some(v),
            ("--listen", Some(v)) if !doctor => listen = v,
            ("--app", Some(v)) if doctor => app = Some(v),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
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
    if doctor {
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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match wxdesk::app::local::serve(svc, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxdesk-local: {e}");
            ExitCode::from(1)
        }
    }
}
