//! Gauges of what the operator manages, computed from the controllers'
//! caches on every scrape. Nothing is incremented or decremented, so a
//! deleted Database or DatabaseBackup simply stops being counted: the
//! numbers cannot drift from the cluster.

use database_operator_api::v1;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::condition::types;
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::{Database, Engine};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

const ENGINES: [Engine; 3] = [Engine::Postgresql, Engine::Mysql, Engine::Mongodb];
const PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Creating,
    Phase::Running,
    Phase::Scaling,
    Phase::Updating,
    Phase::Failed,
    Phase::Deleting,
];

/// Fails to compile when a phase is added without adding it to [`PHASES`].
const _: fn(Phase) = |phase| match phase {
    Phase::Pending
    | Phase::Creating
    | Phase::Running
    | Phase::Scaling
    | Phase::Updating
    | Phase::Failed
    | Phase::Deleting => {}
};

/// The caches to read; each is set once its controller has started.
#[derive(Default)]
pub struct Inventory {
    databases: OnceLock<Store<Database>>,
    backups: OnceLock<Store<DatabaseBackup>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").finish_non_exhaustive()
    }
}

impl Inventory {
    /// The Database controller's cache.
    pub fn watch_databases(&self, store: Store<Database>) {
        let _ = self.databases.set(store);
    }

    /// The DatabaseBackup controller's cache.
    pub fn watch_backups(&self, store: Store<DatabaseBackup>) {
        let _ = self.backups.set(store);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct EnginePhase {
    pub engine: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct BackupPhaseLabels {
    pub namespace: String,
    pub database: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct DatabaseLabels {
    pub namespace: String,
    pub database: String,
}

/// Databases by engine and phase, with a zero for every combination so a
/// phase that empties reads 0 rather than vanishing. A Database whose status
/// has no phase yet is Pending, as the API documents.
pub fn databases_by_phase<'a>(
    databases: impl IntoIterator<Item = &'a Database>,
) -> BTreeMap<EnginePhase, i64> {
    let mut counts: BTreeMap<EnginePhase, i64> = ENGINES
        .iter()
        .flat_map(|engine| {
            PHASES.iter().map(move |phase| EnginePhase {
                engine: engine.to_string(),
                phase: phase.to_string(),
            })
        })
        .map(|labels| (labels, 0))
        .collect();
    for db in databases {
        let phase = db
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(Phase::Pending);
        *counts
            .entry(EnginePhase {
                engine: db.spec.engine.to_string(),
                phase: phase.to_string(),
            })
            .or_default() += 1;
    }
    counts
}

/// DatabaseBackups by the Database they back up and their phase.
pub fn backups_by_phase<'a>(
    backups: impl IntoIterator<Item = &'a DatabaseBackup>,
) -> BTreeMap<BackupPhaseLabels, i64> {
    let mut counts = BTreeMap::new();
    for backup in backups {
        let phase = backup
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(BackupPhase::Pending);
        *counts
            .entry(BackupPhaseLabels {
                namespace: backup.namespace().unwrap_or_default(),
                database: backup.spec.database_ref.name.clone(),
                phase: format!("{phase:?}"),
            })
            .or_default() += 1;
    }
    counts
}

/// The newest completion time (Unix seconds) of a Completed backup, per Database.
pub fn last_success<'a>(
    backups: impl IntoIterator<Item = &'a DatabaseBackup>,
) -> BTreeMap<DatabaseLabels, f64> {
    let mut newest: BTreeMap<DatabaseLabels, f64> = BTreeMap::new();
    for backup in backups {
        let Some(status) = backup.status.as_ref() else {
            continue;
        };
        if status.phase != Some(BackupPhase::Completed) {
            continue;
        }
        // The agent's (or the Job's) completion time; the Ready transition
        // when neither was recorded.
        let Some(time) = status.completion_time.clone().or_else(|| {
            v1::condition::find(&status.conditions, types::READY)
                .and_then(|c| c.last_transition_time.clone())
        }) else {
            continue;
        };
        let seconds = time.0.as_millisecond() as f64 / 1000.0;
        let labels = DatabaseLabels {
            namespace: backup.namespace().unwrap_or_default(),
            database: backup.spec.database_ref.name.clone(),
        };
        let entry = newest.entry(labels).or_insert(seconds);
        *entry = entry.max(seconds);
    }
    newest
}

fn encode_family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: BTreeMap<L, M::Value>,
) -> Result<(), std::fmt::Error>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
    M: SetGauge,
{
    let family = Family::<L, M>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set_to(value);
    }
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

/// The two gauge kinds used here: integer counts and float timestamps.
trait SetGauge:
    EncodeMetric + prometheus_client::metrics::TypedMetric + Default + std::fmt::Debug + 'static
{
    type Value;
    fn set_to(&self, value: Self::Value);
}

impl SetGauge for Gauge {
    type Value = i64;
    fn set_to(&self, value: i64) {
        self.set(value);
    }
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

impl SetGauge for FloatGauge {
    type Value = f64;
    fn set_to(&self, value: f64) {
        self.set(value);
    }
}

impl Collector for Inventory {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(store) = self.databases.get() {
            let databases = store.state();
            encode_family::<_, Gauge>(
                &mut encoder,
                "databases",
                "Databases managed by the operator, by engine and phase",
                databases_by_phase(databases.iter().map(Arc::as_ref)),
            )?;
        }
        if let Some(store) = self.backups.get() {
            let backups = store.state();
            // Not `database_operator_backups`: in OpenMetrics that is the
            // family name of the `backups_total` counter.
            encode_family::<_, Gauge>(
                &mut encoder,
                "backups_by_phase",
                "DatabaseBackups that exist now, by Database and phase",
                backups_by_phase(backups.iter().map(Arc::as_ref)),
            )?;
            encode_family::<_, FloatGauge>(
                &mut encoder,
                "backup_last_success_timestamp_seconds",
                "When the newest Completed backup of each Database finished (Unix time)",
                last_success(backups.iter().map(Arc::as_ref)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(engine: &str, phase: Option<&str>) -> Database {
        let mut value = serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {"engine": engine, "version": "16", "storage": {"size": "1Gi"}}
        });
        if let Some(phase) = phase {
            value["status"] = serde_json::json!({ "phase": phase });
        }
        serde_json::from_value(value).unwrap()
    }

    fn backup(database: &str, phase: &str, completed: Option<&str>) -> DatabaseBackup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"databaseRef": {"name": database}},
            "status": {"phase": phase, "completionTime": completed}
        }))
        .unwrap()
    }

    fn count(counts: &BTreeMap<EnginePhase, i64>, engine: &str, phase: &str) -> i64 {
        counts[&EnginePhase {
            engine: engine.into(),
            phase: phase.into(),
        }]
    }

    #[test]
    fn databases_are_counted_by_engine_and_phase_with_zeros_for_the_rest() {
        let dbs = [
            database("postgresql", Some("Running")),
            database("postgresql", Some("Running")),
            database("mysql", None),
        ];
        let counts = databases_by_phase(&dbs);
        assert_eq!(count(&counts, "postgresql", "Running"), 2);
        assert_eq!(count(&counts, "mysql", "Pending"), 1);
        assert_eq!(count(&counts, "mongodb", "Failed"), 0);
        assert_eq!(counts.len(), ENGINES.len() * PHASES.len());
        // Nothing left: every series reads 0, none disappears.
        assert!(databases_by_phase([]).values().all(|&n| n == 0));
    }

    #[test]
    fn the_last_success_is_the_newest_completed_backup() {
        let backups = [
            backup("orders", "Completed", Some("2026-11-26T10:00:00Z")),
            backup("orders", "Completed", Some("2026-11-26T11:00:00Z")),
            backup("orders", "Failed", Some("2026-11-26T12:00:00Z")),
            backup("users", "Running", None),
        ];
        let last = last_success(&backups);
        assert_eq!(last.len(), 1);
        let orders = DatabaseLabels {
            namespace: "ns".into(),
            database: "orders".into(),
        };
        let expected = "2026-11-26T11:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second() as f64;
        assert_eq!(last[&orders], expected);
        let phases = backups_by_phase(&backups);
        assert_eq!(phases.values().sum::<i64>(), 4);
    }
}
