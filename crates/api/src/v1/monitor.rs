//! `DatabaseMonitor`: scraping, alerting and dashboards for one Database.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::v1::condition::Condition;
use crate::v1::reference::DatabaseRef;

/// DatabaseMonitorSpec tunes monitoring and alerting for one Database
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "DatabaseMonitor",
    plural = "databasemonitors",
    singular = "databasemonitor",
    shortname = "dbmon",
    category = "databases",
    namespaced,
    status = "DatabaseMonitorStatus",
    derive = "PartialEq",
    doc = "DatabaseMonitor is the monitoring and alerting of one Database",
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".spec.databaseRef.name"
    ),
    printcolumn(
        name = "Alerting",
        type_ = "boolean",
        json_path = ".spec.alerting.enabled"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters: it names the ServiceMonitor, PrometheusRule and dashboard ConfigMap")
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseMonitorSpec {
    /// The Database to monitor
    pub database_ref: DatabaseRef,

    /// How often Prometheus scrapes the exporter
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m)$"))]
    pub scrape_interval: String,

    /// Labels added to every scraped series (names must be Prometheus label names)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !k.startsWith('__'))").message("extraLabels keys must be Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"))]
    pub extra_labels: BTreeMap<String, String>,

    /// Which alerts fire, and their thresholds
    #[serde(default)]
    pub alerting: AlertingSpec,
}

fn default_scrape_interval() -> String {
    "30s".to_owned()
}

/// Alerting settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertingSpec {
    /// Whether a PrometheusRule is installed
    #[serde(default)]
    pub enabled: bool,
    /// Alert names to leave out, e.g. DatabaseSlowQueries
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub disabled_alerts: Vec<String>,
    /// Percentage of max connections in use that fires DatabaseConnectionsNearLimit (default 80)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub connections_percent: Option<i32>,
    /// Percentage of the volume in use that fires DatabaseStorageFilling (default 85)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub storage_percent: Option<i32>,
    /// Replication lag in seconds that fires DatabaseReplicationLagging (default 30)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_lag_seconds: Option<i32>,
    /// Hours without a successful backup that fire DatabaseBackupMissed (default 26)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub backup_max_age_hours: Option<i32>,
    /// Container restarts within 15 minutes that fire DatabaseRestarting (default 3)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub restarts: Option<i32>,
    /// Seconds a query or transaction may run before DatabaseSlowQueries fires (default 300)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub slow_query_seconds: Option<i32>,
    /// Labels added to every alert, e.g. team or severity routing keys
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl AlertingSpec {
    /// `connectionsPercent`, defaulted.
    pub fn connections_percent(&self) -> i32 {
        self.connections_percent.unwrap_or(80)
    }
    /// `storagePercent`, defaulted.
    pub fn storage_percent(&self) -> i32 {
        self.storage_percent.unwrap_or(85)
    }
    /// `replicationLagSeconds`, defaulted.
    pub fn replication_lag_seconds(&self) -> i32 {
        self.replication_lag_seconds.unwrap_or(30)
    }
    /// `backupMaxAgeHours`, defaulted.
    pub fn backup_max_age_hours(&self) -> i32 {
        self.backup_max_age_hours.unwrap_or(26)
    }
    /// `restarts`, defaulted.
    pub fn restarts(&self) -> i32 {
        self.restarts.unwrap_or(3)
    }
    /// `slowQuerySeconds`, defaulted.
    pub fn slow_query_seconds(&self) -> i32 {
        self.slow_query_seconds.unwrap_or(300)
    }
    /// Whether an alert is on.
    pub fn fires(&self, alert: &str) -> bool {
        !self.disabled_alerts.iter().any(|a| a == alert)
    }
}

/// Condition types of a DatabaseMonitor.
pub mod conditions {
    /// The ServiceMonitor, PrometheusRule and dashboard are in place.
    pub const READY: &str = "Ready";
    /// Whether the prometheus-operator CRDs (ServiceMonitor, PrometheusRule) are installed.
    pub const PROMETHEUS_OPERATOR: &str = "PrometheusOperatorInstalled";
}

/// What the operator observed of a DatabaseMonitor: whether its
/// ServiceMonitor, PrometheusRule and dashboard are in place, and whether
/// the prometheus-operator CRDs are installed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseMonitorStatus {
    /// Latest observations, e.g. whether the prometheus-operator CRDs are installed
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Most recent generation observed by the controller
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
