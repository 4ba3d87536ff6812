//! `DatabaseMonitor`: scraping, alerting and dashboards for one Database.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::reference::DatabaseRef;

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
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseMonitorSpec {
    /// The Database to monitor
    pub database_ref: DatabaseRef,

    /// How often Prometheus scrapes the exporter
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m)$"))]
    pub scrape_interval: String,

    /// Labels added to every scraped series
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
    /// Alert names to leave out
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_alerts: Vec<String>,
    /// Percentage of max connections in use that fires ConnectionsNearLimit
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub connections_percent: Option<i32>,
    /// Percentage of the volume in use that fires StorageFilling
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub storage_percent: Option<i32>,
    /// Replication lag in seconds that fires ReplicationLagging
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_lag_seconds: Option<i32>,
}

/// DatabaseMonitorStatus is the observed state of a DatabaseMonitor
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
