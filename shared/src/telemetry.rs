//! Logging: JSON lines in Lambda (CloudWatch), compact text locally. `RUST_LOG` filters,
//! in the `level` or `target=level,...` form (no regex directives: the regex engine
//! behind them would add a megabyte to every function).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Libraries whose debug and trace lines can carry requests, headers and bodies (access
/// tokens in URLs, secrets in SDK traces): never more verbose than info, whatever
/// `RUST_LOG` asks.
const THIRD_PARTY: [&str; 8] = [
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_config",
];

/// `RUST_LOG`'s filter (info when unset), with the libraries above capped at info.
pub fn filter(rust_log: Option<&str>) -> Targets {
    let mut filter: Targets = rust_log
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    for target in THIRD_PARTY {
        let asked = [
            tracing::Level::TRACE,
            tracing::Level::DEBUG,
            tracing::Level::INFO,
            tracing::Level::WARN,
            tracing::Level::ERROR,
        ]
        .into_iter()
        .find(|l| filter.would_enable(target, l))
        .map_or(LevelFilter::OFF, LevelFilter::from_level);
        filter = filter.with_target(target, asked.min(LevelFilter::INFO));
    }
    filter
}

pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if in_lambda {
        // JSON escapes every field's text itself.
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
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(|| EscapedLines(std::io::stdout())),
            )
            .try_init()
    };
}

/// Text log lines with the text of others (a desk's error, an answer quoted in it) made
/// harmless: the formatter writes each event whole, so every control character but the
/// line's own end (a newline that would forge a second line, a terminal escape) is written
/// as an escape.
pub(crate) struct EscapedLines<W>(pub W);

impl<W: std::io::Write> std::io::Write for EscapedLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !body.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.push(b),
                b if b.is_ascii_control() => {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
                }
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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
/// A count of dead entries by why they died (a closed window, the quota, a refusal,
/// retries run out): the `Dead` metric with a `Reason` dimension beside the plain one.
pub(crate) fn dead_metric(reason: &'static str) {
    match lambda_function() {
        Some(function) => println!(
            "{}",
            dead_line(function, reason, crate::support::clock::unix_ms())
        ),
        None => {
            tracing::debug!(metric = "Dead", reason, "metric");
            // As the EMF line's dimension sets: the plain count, and one by reason.
            local::record("Dead", 1.0, "Count", None);
            local::record("DeadByReason", 1.0, "Count", Some(reason));
        }
    }
}

/// The embedded-metric-format document of one dead entry, with its reason.
fn dead_line(function: &str, reason: &str, timestamp_ms: i64) -> String {
    let mut doc = emf_doc(function, "Dead", 1.0, "Count", timestamp_ms);
    doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] =
        serde_json::json!([["Function"], ["Reason"], []]);
    doc["Reason"] = serde_json::Value::from(reason);
    doc.to_string()
}

pub(crate) fn metric(name: &str, value: f64, unit: &str) {
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
        None => {
            tracing::debug!(metric = name, value, unit, "metric");
            local::record(name, value, unit, None);
        }
    }
}

/// The local server's metrics: the same values the Lambda functions write as EMF, kept
/// in the process and served in Prometheus' text format (`/admin/metrics`).
pub mod local {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    use std::sync::Mutex;

    /// (sum, count) per metric and reason (a dead entry's; None for the rest).
    type Series = BTreeMap<(String, Option<&'static str>), (f64, u64, &'static str)>;
    static SERIES: Mutex<Series> = Mutex::new(BTreeMap::new());

    pub(super) fn record(name: &str, value: f64, unit: &str, reason: Option<&'static str>) {
        let unit: &'static str = if unit == "Milliseconds" {
            "milliseconds"
        } else {
            "total"
        };
        let mut series = SERIES.lock().unwrap_or_else(|e| e.into_inner());
        let s = series
            .entry((name.to_owned(), reason))
            .or_insert((0.0, 0, unit));
        s.0 += value;
        s.1 += 1;
    }

    /// `DeskLatency` → `desk_latency`.
    fn snake(name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 4);
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// Every series in Prometheus' text exposition format (version 0.0.4): counts as
    /// `wxdesk_<name>_total` counters (dead ones also by reason), latencies as summaries
    /// without quantiles (`_milliseconds_sum`, `_milliseconds_count`).
    pub(crate) fn prometheus() -> String {
        let series = SERIES.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        let mut typed = std::collections::HashSet::new();
        for ((name, reason), (sum, count, unit)) in series {
            let base = format!("wxdesk_{}", snake(&name));
            let labels = reason
                .map(|r| format!("{{reason=\"{r}\"}}"))
                .unwrap_or_default();
            if unit == "milliseconds" {
                let m = format!("{base}_milliseconds");
                if typed.insert(m.clone()) {
                    let _ = writeln!(out, "# TYPE {m} summary");
                }
                let _ = writeln!(out, "{m}_sum{labels} {sum}");
                let _ = writeln!(out, "{m}_count{labels} {count}");
            } else {
                let m = format!("{base}_total");
                if typed.insert(m.clone()) {
                    let _ = writeln!(out, "# TYPE {m} counter");
                }
                let _ = writeln!(out, "{m}{labels} {sum}");
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn series_in_prometheus_text() {
            super::record("TestLatency", 12.5, "Milliseconds", None);
            super::record("TestLatency", 7.5, "Milliseconds", None);
            super::record("TestByReason", 1.0, "Count", Some("window_closed"));
            let text = super::prometheus();
            assert!(
                text.contains("# TYPE wxdesk_test_latency_milliseconds summary\n"),
                "{text}"
            );
            assert!(
                text.contains("wxdesk_test_latency_milliseconds_count 2\n"),
                "{text}"
            );
            assert!(
                text.contains("wxdesk_test_latency_milliseconds_sum 20\n"),
                "{text}"
            );
            assert!(
                text.contains("wxdesk_test_by_reason_total{reason=\"window_closed\"} 1\n"),
                "{text}"
            );
            assert_eq!(text.matches("# TYPE wxdesk_test_latency").count(), 1);
        }
    }
}

/// The embedded-metric-format document for one value.
pub fn emf_line(function: &str, name: &str, value: f64, unit: &str, timestamp_ms: i64) -> String {
    emf_doc(function, name, value, unit, timestamp_ms).to_string()
}

fn emf_doc(
    function: &str,
    name: &str,
    value: f64,
    unit: &str,
    timestamp_ms: i64,
) -> serde_json::Value {
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
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    /// Review 2, §4: a desk's error text with newlines wrote forged lines into the log.
    #[test]
    fn a_line_of_others_text_stays_one_line() {
        let mut w = super::EscapedLines(Vec::new());
        w.write_all(b"WARN desk failed: error=oops\nERROR forged line\x1b[2J\n")
            .unwrap();
        w.write_all(b"INFO plain\tline\n").unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(
            out,
            "WARN desk failed: error=oops\\nERROR forged line\\x1b[2J\nINFO plain\tline\n"
        );
        assert_eq!(out.lines().count(), 2);
    }

    #[test]
    fn libraries_stay_at_info_whatever_rust_log_asks() {
        use tracing::Level;
        let f = super::filter(Some("debug"));
        assert!(f.would_enable("wxdesk", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::DEBUG));
        assert!(f.would_enable("hyper", &Level::INFO));
        let quiet = super::filter(Some("warn"));
        assert!(!quiet.would_enable("reqwest", &Level::INFO));
        assert!(quiet.would_enable("reqwest", &Level::WARN));
        let default = super::filter(None);
        assert!(default.would_enable("wxdesk", &Level::INFO));
        assert!(!default.would_enable("h2", &Level::DEBUG));
    }
    #[test]
    fn a_dead_line_carries_its_reason_beside_the_plain_count() {
        let v: serde_json::Value =
            serde_json::from_str(&super::dead_line("deliver-worker", "quota", 1)).unwrap();
        assert_eq!(v["Reason"], "quota");
        assert_eq!(v["Dead"], 1.0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function"], ["Reason"], []])
        );
    }

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
