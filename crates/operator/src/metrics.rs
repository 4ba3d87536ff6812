//! The operator's own Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: String,
}

pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    api_writes: Family<VerbLabel, Counter>,
    writes_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("database_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            durations.clone(),
        );
        let api_writes = Family::<VerbLabel, Counter>::default();
        registry.register(
            "api_writes",
            "Write requests sent to the Kubernetes API",
            api_writes.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            api_writes,
            writes_total: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one reconcile; `error` is the error kind, or `None` on success.
    pub fn reconciled(&self, controller: &str, error: Option<&str>) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: error.unwrap_or("success").into(),
            })
            .inc();
    }

    /// Observes the duration of a reconcile when dropped.
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.durations.get_or_create_owned(&ControllerLabel {
                controller: controller.into(),
            }),
            start: Instant::now(),
        }
    }

    /// Counts one write request (any method other than GET/HEAD/OPTIONS).
    pub fn api_write(&self, verb: &str) {
        self.api_writes
            .get_or_create(&VerbLabel { verb: verb.into() })
            .inc();
        self.writes_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Every write request sent so far.
    pub fn writes_total(&self) -> u64 {
        self.writes_total.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
