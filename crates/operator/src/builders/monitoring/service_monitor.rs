//! ServiceMonitor `<monitor>`: Prometheus scrapes the Database's
//! `<name>-metrics` Service on its `metrics` port.

use std::collections::BTreeMap;

use database_operator_api::v1::labels;
use database_operator_api::v1::monitor::DatabaseMonitor;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::exporter::{COMPONENT, METRICS_PORT_NAME};
use super::types::{Endpoint, Relabeling, ServiceMonitor, ServiceMonitorSpec};
use crate::builders::monitoring::monitor_meta;

/// Labels every scraped series gets, so alerts and dashboards can say which
/// Database a series belongs to without knowing pod or Service names.
pub const DATABASE_LABEL: &str = "database";

pub fn service_monitor(monitor: &DatabaseMonitor) -> ServiceMonitor {
    let database = &monitor.spec.database_ref.name;
    let mut relabelings: Vec<Relabeling> = monitor
        .spec
        .extra_labels
        .iter()
        .map(|(k, v)| replace(k, v))
        .collect();
    // Ours last, so an extra label cannot mislabel the Database.
    relabelings.push(replace(DATABASE_LABEL, database));
    ServiceMonitor {
        metadata: monitor_meta(monitor, monitor.name_any()),
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::NAME.to_owned(), labels::APP_NAME.to_owned()),
                    (labels::INSTANCE.to_owned(), database.clone()),
                    (labels::COMPONENT.to_owned(), COMPONENT.to_owned()),
                ])),
                ..Default::default()
            },
            endpoints: vec![Endpoint {
                port: METRICS_PORT_NAME.into(),
                path: Some("/metrics".into()),
                interval: Some(monitor.spec.scrape_interval.clone()),
                scrape_timeout: None,
                relabelings,
            }],
            target_labels: Vec::new(),
        },
    }
}

fn replace(label: &str, value: &str) -> Relabeling {
    Relabeling {
        action: "replace".into(),
        target_label: label.into(),
        replacement: value.into(),
    }
}
