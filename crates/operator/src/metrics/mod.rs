//! The operator's own Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Counters and histograms are updated as the controllers work; the
//! inventory gauges (databases by phase, backups, last successful backup)
//! are computed from the controllers' caches at scrape time, so they follow
//! deletions without bookkeeping (see [`inventory`]).

pub mod inventory;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Error;

/// Every controller's name as it appears in the `controller` label.
pub const CONTROLLERS: [&str; 4] = [
    "database",
    "databaseuser",
    "databasemonitor",
    "databasebackup",
];

/// The `result` label of the reconciles counter.
pub const SUCCESS: &str = "success";
pub const ERROR: &str = "error";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupOutcomeLabels {
    pub namespace: String,
    pub database: String,
    pub outcome: String,
}

pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    in_flight: Family<ControllerLabel, Gauge>,
    api_requests: Family<RequestLabels, Counter>,
    api_writes: Family<RequestLabels, Counter>,
    backups_finished: Family<BackupOutcomeLabels, Counter>,
    writes_total: AtomicU64,
    /// The caches the inventory gauges are read from.
    pub inventory: std::sync::Arc<inventory::Inventory>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("database_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciles by controller and result (success or error)",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by controller and error kind",
            errors.clone(),
        );
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            durations.clone(),
        );
        // kube-runtime's Controller has no queue API. Each controller runs
        // at most `--max-concurrent-reconciles` reconciles at once; the
        // objects due beyond that wait. The reconciles running now are
        // counted by wrapping each one: a gauge that sits at the cap (and
        // rising durations) says objects are waiting.
        let in_flight = Family::<ControllerLabel, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller (at most --max-concurrent-reconciles each; at the cap, objects wait)",
            in_flight.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API, by verb (get, list, watch, create, patch, update, delete) and resource",
            api_requests.clone(),
        );
        let api_writes = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Write requests sent to the Kubernetes API (a steady state sends none), by verb and resource",
            api_writes.clone(),
        );
        let backups_finished = Family::<BackupOutcomeLabels, Counter>::default();
        registry.register(
            "backups",
            "DatabaseBackups that finished, by outcome (completed or failed), counted once each",
            backups_finished.clone(),
        );
        let inventory = std::sync::Arc::new(inventory::Inventory::default());
        registry.register_collector(Box::new(inventory.clone()));
        // Zero series for every controller, so rate() and alerts see a 0
        // rather than no data before the first error.
        for controller in CONTROLLERS {
            for result in [SUCCESS, ERROR] {
                let _ = reconciles.get_or_create(&ReconcileLabels {
                    controller: controller.into(),
                    result: result.into(),
                });
            }
            for kind in Error::KINDS {
                let _ = errors.get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    kind: kind.into(),
                });
            }
            let _ = in_flight.get_or_create(&ControllerLabel {
                controller: controller.into(),
            });
        }
        Self {
            registry,
            reconciles,
            errors,
            durations,
            in_flight,
            api_requests,
            api_writes,
            backups_finished,
            writes_total: AtomicU64::new(0),
            inventory,
        }
    }
}

impl Metrics {
    /// Counts one reconcile; `error` is the error kind, or `None` on success.
    pub fn reconciled(&self, controller: &str, error: Option<&str>) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: if error.is_some() { ERROR } else { SUCCESS }.into(),
            })
            .inc();
        if let Some(kind) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    kind: kind.into(),
                })
                .inc();
        }
    }

    /// Marks a reconcile as running; when the guard drops (however the
    /// reconcile ends, even cancelled) it is no longer in flight and its
    /// duration is observed.
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer {
        let label = ControllerLabel {
            controller: controller.into(),
        };
        let in_flight = self.in_flight.get_or_create_owned(&label);
        in_flight.inc();
        ReconcileTimer {
            histogram: self.durations.get_or_create_owned(&label),
            in_flight,
            start: Instant::now(),
        }
    }

    /// Counts a DatabaseBackup that just reached Completed or Failed. The
    /// backup controller calls this once, when it writes that phase.
    pub fn backup_finished(&self, namespace: &str, database: &str, completed: bool) {
        self.backups_finished
            .get_or_create(&BackupOutcomeLabels {
                namespace: namespace.into(),
                database: database.into(),
                outcome: if completed { "completed" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Counts one request to the Kubernetes API; a write (any verb but
    /// get, list and watch) is also counted in `api_writes`.
    pub fn api_request(&self, verb: &str, resource: String) {
        let labels = RequestLabels {
            verb: verb.into(),
            resource,
        };
        if !matches!(verb, "get" | "list" | "watch") {
            self.api_writes.get_or_create(&labels).inc();
            self.writes_total.fetch_add(1, Ordering::Relaxed);
        }
        self.api_requests.get_or_create(&labels).inc();
    }

    /// Every write request sent so far.
    pub fn writes_total(&self) -> u64 {
        self.writes_total.load(Ordering::Relaxed)
    }

    /// The metrics in OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What [`Metrics::encode`] produces: OpenMetrics 1.0 (counter families
/// named without `_total`, `# EOF` at the end), which Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct ReconcileTimer {
    histogram: Histogram,
    in_flight: Gauge,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.in_flight.dec();
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn an_error_counts_as_a_reconcile_and_under_its_kind() {
        let metrics = Metrics::default();
        metrics.reconciled("database", None);
        metrics.reconciled("database", Some("api_conflict"));
        let text = metrics.encode();
        let ok =
            r#"database_operator_reconciliations_total{controller="database",result="success"}"#;
        let err =
            r#"database_operator_reconciliations_total{controller="database",result="error"}"#;
        let kind = r#"database_operator_reconcile_errors_total{controller="database",kind="api_conflict"}"#;
        let other = r#"database_operator_reconcile_errors_total{controller="databaseuser",kind="transport"}"#;
        assert_eq!(sample(&text, ok), Some(1.0), "{text}");
        assert_eq!(sample(&text, err), Some(1.0), "{text}");
        assert_eq!(sample(&text, kind), Some(1.0), "{text}");
        assert_eq!(sample(&text, other), Some(0.0), "{text}");
    }

    #[test]
    fn a_reconcile_is_in_flight_until_its_timer_drops() {
        let metrics = Metrics::default();
        let series = r#"database_operator_reconciles_in_flight{controller="databasebackup"}"#;
        let timer = metrics.reconcile_timer("databasebackup");
        assert_eq!(sample(&metrics.encode(), series), Some(1.0));
        drop(timer);
        let text = metrics.encode();
        assert_eq!(sample(&text, series), Some(0.0));
        let count =
            r#"database_operator_reconcile_duration_seconds_count{controller="databasebackup"}"#;
        assert_eq!(sample(&text, count), Some(1.0), "{text}");
    }

    #[test]
    fn a_finished_backup_is_counted_by_outcome() {
        let metrics = Metrics::default();
        metrics.backup_finished("shop", "orders", true);
        metrics.backup_finished("shop", "orders", false);
        metrics.backup_finished("shop", "orders", true);
        let text = metrics.encode();
        let completed = r#"database_operator_backups_total{namespace="shop",database="orders",outcome="completed"}"#;
        let failed = r#"database_operator_backups_total{namespace="shop",database="orders",outcome="failed"}"#;
        assert_eq!(sample(&text, completed), Some(2.0), "{text}");
        assert_eq!(sample(&text, failed), Some(1.0), "{text}");
    }
}
