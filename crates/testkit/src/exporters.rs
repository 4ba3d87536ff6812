//! For the monitoring tests: the pinned exporters (built by
//! hack/monitoring/install.sh), the committed metric-name lists, and the
//! metrics that come from elsewhere than the exporters.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use database_operator_api::v1::Engine;
use operator::builders::monitoring::Exporter;

pub const ENGINES: [Engine; 3] = [Engine::Postgresql, Engine::Mysql, Engine::Mongodb];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed list of metric names `exporter` emits, one per line.
pub fn list_path(exporter: Exporter) -> PathBuf {
    repo()
        .join("crates/operator/src/builders/monitoring/metrics")
        .join(format!("{}-{}.txt", exporter.binary(), exporter.version()))
}

pub fn committed_list(exporter: Exporter) -> BTreeSet<String> {
    let path = list_path(exporter);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Metrics the rules and dashboards may use that no exporter emits, with
/// where they come from. Kept small on purpose.
pub const OTHER_SOURCES: &[(&str, &str)] = &[
    ("up", "Prometheus itself, per scrape target"),
    (
        "kube_pod_container_status_restarts_total",
        "kube-state-metrics",
    ),
    (
        "kube_pod_container_status_waiting_reason",
        "kube-state-metrics",
    ),
    ("kubelet_volume_stats_used_bytes", "kubelet"),
    ("kubelet_volume_stats_capacity_bytes", "kubelet"),
    (
        "database_operator_backup_last_success_timestamp_seconds",
        "database-operator /metrics",
    ),
    (
        "database_operator_backups_total",
        "database-operator /metrics",
    ),
];

/// Metrics the test servers cannot make an exporter emit, so they are not
/// in the captured lists: each is held instead to the pinned exporter's
/// source (the file and the strings that build its name).
pub struct NotCaptured {
    pub engine: Engine,
    pub metric: &'static str,
    pub why: &'static str,
    pub file: &'static str,
    pub needles: &'static [&'static str],
}

pub const NOT_CAPTURED: &[NotCaptured] = &[
    NotCaptured {
        engine: Engine::Mysql,
        metric: "mysql_slave_status_seconds_behind_master",
        why: "emitted on replicas only, so not in the list captured from a standalone server; tests/servers/exporter_metrics.rs::the_lag_alert_metric_comes_from_a_real_mariadb_replica captures it live from a real replica",
        file: "collector/slave_status.go",
        // mysql_slave_status_<column, lowercased>; Seconds_Behind_Master is
        // a column of the server's SHOW SLAVE STATUS.
        needles: &[
            "slaveStatus = \"slave_status\"",
            "strings.ToLower(col)",
            "SHOW SLAVE STATUS",
        ],
    },
    NotCaptured {
        engine: Engine::Mongodb,
        metric: "mongodb_mongod_replset_member_replication_lag",
        why: "emitted by replica-set members only; FerretDB has no replica sets",
        file: "exporter/v1_compatibility.go",
        needles: &["\"mongodb_mongod_replset_\"", "\"member_replication_lag\""],
    },
    NotCaptured {
        engine: Engine::Mongodb,
        metric: "mongodb_connections",
        why: "compatible-mode name of serverStatus.connections; FerretDB has no getDiagnosticData, so the exporter reads no serverStatus from it",
        file: "exporter/v1_compatibility.go",
        needles: &[
            "oldName:          \"mongodb_connections\"",
            "newName:          \"mongodb_ss_connections\"",
        ],
    },
    NotCaptured {
        engine: Engine::Mongodb,
        metric: "mongodb_op_counters_total",
        why: "compatible-mode name of serverStatus.opcounters; see mongodb_connections",
        file: "exporter/v1_compatibility.go",
        needles: &[
            "oldName:          \"mongodb_op_counters_total\"",
            "newName:          \"mongodb_ss_opcounters\"",
        ],
    },
];

/// The Go module of an engine's exporter.
pub fn exporter_module(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "github.com/prometheus-community/postgres_exporter",
        Engine::Mysql => "github.com/prometheus/mysqld_exporter",
        Engine::Mongodb => "github.com/percona/mongodb_exporter",
    }
}

/// The exporter's binary, building it with hack/monitoring/install.sh when missing.
pub fn exporter_binary(exporter: Exporter) -> PathBuf {
    let cache = std::env::var_os("DATABASE_OPERATOR_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/database-operator"),
        PathBuf::from,
    );
    let path = cache
        .join("exporters")
        .join(format!("{}-{}", exporter.binary(), exporter.version()))
        .join(exporter.binary());
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(repo().join("hack/monitoring/install.sh"))
            .status()
            .expect("running hack/monitoring/install.sh");
        assert!(status.success(), "hack/monitoring/install.sh failed");
    }
    assert!(
        path.exists(),
        "{} missing after hack/monitoring/install.sh",
        path.display()
    );
    path
}

/// promtool, installed by hack/monitoring/install.sh (Debian's `prometheus`).
pub fn promtool() -> PathBuf {
    let found = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("promtool"))
                .find(|p| p.exists())
        })
    };
    if let Some(p) = found() {
        return p;
    }
    let _ = std::process::Command::new("bash")
        .arg(repo().join("hack/monitoring/install.sh"))
        .status();
    found().expect(
        "promtool is not installed: run hack/monitoring/install.sh (Debian package `prometheus`)",
    )
}

/// Metric names in a Prometheus text exposition.
pub fn exposed_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}
