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

/// The function name in Lambda, where metrics are CloudWatch embedded-metric-format lines.
fn lambda_function() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok())
        .as_deref()
}

/// One CloudWatch metric, in namespace `wxdesk`, by function and in total. In Lambda an
/// embedded-metric-format line on stdout (CloudWatch turns it into the metric, no API
/// call); elsewhere a debug log line.
pub fn metric(name: &str, value: f64, unit: &str) {
    match lambda_function() {
        Some(function) => println!(
            "{}",
            emf_line(
                function,
                name,
                value,
                unit,
                crate::support::clock::unix_ms()
            )
        ),
        None => tracing::debug!(metric = name, value, unit, "metric"),
    }
}

/// The embedded-metric-format document for one value.
pub fn emf_line(function: &str, name: &str, value: f64, unit: &str, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "wxdesk",
                "Dimensions": [["Function"], []],
                "Metrics": [{ "Name": name, "Unit": unit }],
            }],
        },
        "Function": function,
        name: value,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_emf_line_names_its_metric_and_carries_the_value() {
        let line = super::emf_line("deliver-worker", "Dead", 1.0, "Count", 1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Dead"], 1.0);
        assert_eq!(v["Function"], "deliver-worker");
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "wxdesk");
        assert_eq!(m["Metrics"][0]["Name"], "Dead");
        assert_eq!(m["Metrics"][0]["Unit"], "Count");
        assert_eq!(m["Dimensions"][0][0], "Function");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
