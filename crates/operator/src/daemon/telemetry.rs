//! Logging: readable by default, JSON lines with `--log-format json`.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The kube client's HTTP trace layer. It logs every 5xx answer as an
/// error naming neither the object nor the step (under load, hundreds of
/// `failed with status 504 Gateway Timeout`), while the failed reconcile
/// is logged once by the error policy with its object, step and child, as
/// a warning, and counted by kind. Off unless `RUST_LOG` names it.
const KUBE_HTTP_TRACE: &str = "kube_client::client::builder";

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains(KUBE_HTTP_TRACE)) {
        filter = filter.add_directive(
            format!("{KUBE_HTTP_TRACE}=off")
                .parse()
                .expect("a valid directive"),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        // One object per line: timestamp, level, message and the event's
        // fields at the top level, the span (e.g. the object being
        // reconciled) under "span".
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
