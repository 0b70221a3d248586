//! Logging: JSON lines in Lambda (CloudWatch), compact text locally. `RUST_LOG` filters,
//! in the `level` or `target=level,...` form (no regex directives: the regex engine
//! behind them would add a megabyte to every function).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if in_lambda {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .without_time()
                    .with_target(false),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_target(false),
            )
            .try_init()
    };
}
