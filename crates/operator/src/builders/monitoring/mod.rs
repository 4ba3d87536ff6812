//! Monitoring: the exporter sidecar and its Service and Secret (children of
//! the Database), and what a DatabaseMonitor turns into — a ServiceMonitor,
//! a PrometheusRule and a Grafana dashboard ConfigMap. Pure builders.

pub mod dashboard;
pub mod exporter;
pub mod promql;
pub mod rules;
pub mod service_monitor;
pub mod types;

use database_operator_api::v1::monitor::{AlertingSpec, DatabaseMonitor, DatabaseMonitorSpec};
use database_operator_api::v1::{Database, DatabaseRef};
use kube::ResourceExt;

pub use exporter::{
    Exporter, METRICS_PORT_NAME, MONITORING_CONNECTION_LIMIT, MONITORING_USERNAME, metrics_service,
    monitoring_secret, sidecar,
};

use super::meta::{Names, child_meta};

/// The DatabaseMonitor the operator creates for a Database with monitoring
/// on. Created once; afterwards it is the user's to tune, except
/// `alerting.enabled`, which follows `spec.monitoring.alerting`.
pub fn owned_monitor(db: &Database) -> DatabaseMonitor {
    let alerting = db.spec.monitoring.as_ref().is_some_and(|m| m.alerting);
    DatabaseMonitor {
        metadata: child_meta(db, Names(&db.name_any()).monitor(), exporter::COMPONENT),
        spec: DatabaseMonitorSpec {
            database_ref: DatabaseRef {
                name: db.name_any(),
            },
            scrape_interval: "30s".into(),
            extra_labels: Default::default(),
            alerting: AlertingSpec {
                enabled: alerting,
                ..Default::default()
            },
        },
        status: None,
    }
}

/// Metadata for a child of a DatabaseMonitor: owned by it (so the garbage
/// collector removes it with the monitor) and labelled like the Database's
/// other children.
pub fn monitor_meta(
    monitor: &DatabaseMonitor,
    name: String,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    use database_operator_api::v1::labels;
    use kube::Resource;
    let labels = std::collections::BTreeMap::from([
        (labels::NAME.to_owned(), labels::APP_NAME.to_owned()),
        (
            labels::INSTANCE.to_owned(),
            monitor.spec.database_ref.name.clone(),
        ),
        (labels::COMPONENT.to_owned(), "monitoring".to_owned()),
        (labels::MANAGED_BY.to_owned(), labels::OPERATOR.to_owned()),
    ]);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: monitor.namespace(),
        labels: Some(labels),
        owner_references: monitor.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}
