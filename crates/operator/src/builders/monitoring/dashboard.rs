//! ConfigMap `<monitor>-dashboard`: a Grafana dashboard for one Database,
//! labelled `grafana_dashboard: "1"` so Grafana's dashboard sidecar loads
//! it. Every query selects the Database by the labels the ServiceMonitor
//! adds; the data source is a variable, so the dashboard works with any
//! Prometheus data source.

use std::collections::BTreeMap;

use database_operator_api::v1::Engine;
use database_operator_api::v1::monitor::DatabaseMonitor;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::monitor_meta;
use super::promql::matcher;

/// The label Grafana's dashboard sidecar looks for.
pub const SIDECAR_LABEL: &str = "grafana_dashboard";

/// One panel: title, unit, and its PromQL queries with their legends.
struct Panel {
    title: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
}

/// The panels of one engine's dashboard, for the Database selected by `db`
/// (exporter series), `pods` (kube-state-metrics) and `claims` (kubelet).
fn panels(engine: Engine, db: &str, pods: &str, claims: &str) -> Vec<Panel> {
    let mut out = Vec::new();
    let up = match engine {
        Engine::Postgresql => "pg_up",
        Engine::Mysql => "mysql_up",
        Engine::Mongodb => "mongodb_up",
    };
    out.push(Panel {
        title: "Up",
        unit: "none",
        queries: vec![(format!("{up}{{{db}}}"), "{{pod}}")],
    });
    match engine {
        Engine::Postgresql => {
            out.push(Panel {
                title: "Connections",
                unit: "none",
                queries: vec![
                    (
                        format!("sum by (pod, state) (pg_stat_activity_count{{{db}}})"),
                        "{{pod}} {{state}}",
                    ),
                    (
                        format!("max by (pod) (pg_settings_max_connections{{{db}}})"),
                        "{{pod}} max",
                    ),
                ],
            });
            out.push(Panel {
                title: "Transactions per second",
                unit: "ops",
                queries: vec![
                    (
                        format!("sum by (pod) (rate(pg_stat_database_xact_commit{{{db}}}[5m]))"),
                        "{{pod}} commits",
                    ),
                    (
                        format!("sum by (pod) (rate(pg_stat_database_xact_rollback{{{db}}}[5m]))"),
                        "{{pod}} rollbacks",
                    ),
                ],
            });
            out.push(Panel {
                title: "Cache hit ratio",
                unit: "percentunit",
                queries: vec![(
                    format!("sum by (pod) (rate(pg_stat_database_blks_hit{{{db}}}[5m])) / (sum by (pod) (rate(pg_stat_database_blks_hit{{{db}}}[5m])) + sum by (pod) (rate(pg_stat_database_blks_read{{{db}}}[5m])))"),
                    "{{pod}}",
                )],
            });
            out.push(Panel {
                title: "Replication lag",
                unit: "s",
                queries: vec![(format!("pg_replication_lag_seconds{{{db}}}"), "{{pod}}")],
            });
            out.push(Panel {
                title: "Longest transaction",
                unit: "s",
                queries: vec![(
                    format!("max by (pod, datname) (pg_stat_activity_max_tx_duration{{{db}}})"),
                    "{{pod}} {{datname}}",
                )],
            });
            out.push(Panel {
                title: "Deadlocks",
                unit: "none",
                queries: vec![(
                    format!("sum by (pod) (increase(pg_stat_database_deadlocks{{{db}}}[10m]))"),
                    "{{pod}}",
                )],
            });
            out.push(Panel {
                title: "Database size",
                unit: "bytes",
                queries: vec![(
                    format!("pg_database_size_bytes{{{db}}}"),
                    "{{pod}} {{datname}}",
                )],
            });
        }
        Engine::Mysql => {
            out.push(Panel {
                title: "Connections",
                unit: "none",
                queries: vec![
                    (
                        format!("mysql_global_status_threads_connected{{{db}}}"),
                        "{{pod}} connected",
                    ),
                    (
                        format!("mysql_global_variables_max_connections{{{db}}}"),
                        "{{pod}} max",
                    ),
                ],
            });
            out.push(Panel {
                title: "Queries per second",
                unit: "ops",
                queries: vec![(
                    format!("rate(mysql_global_status_queries{{{db}}}[5m])"),
                    "{{pod}}",
                )],
            });
            out.push(Panel {
                title: "Slow queries",
                unit: "none",
                queries: vec![(
                    format!("increase(mysql_global_status_slow_queries{{{db}}}[10m])"),
                    "{{pod}}",
                )],
            });
            out.push(Panel {
                title: "Replication lag",
                unit: "s",
                queries: vec![(
                    format!("mysql_slave_status_seconds_behind_master{{{db}}}"),
                    "{{pod}}",
                )],
            });
            out.push(Panel {
                title: "InnoDB deadlocks and row lock waits",
                unit: "none",
                queries: vec![
                    (
                        format!("increase(mysql_global_status_innodb_deadlocks{{{db}}}[10m])"),
                        "{{pod}} deadlocks",
                    ),
                    (
                        format!("increase(mysql_global_status_innodb_row_lock_waits{{{db}}}[10m])"),
                        "{{pod}} lock waits",
                    ),
                ],
            });
        }
        Engine::Mongodb => {
            out.push(Panel {
                title: "Connections",
                unit: "none",
                queries: vec![(format!("mongodb_connections{{{db}}}"), "{{pod}} {{state}}")],
            });
            out.push(Panel {
                title: "Operations per second",
                unit: "ops",
                queries: vec![(
                    format!(
                        "sum by (pod, legacy_op_type) (rate(mongodb_op_counters_total{{{db}}}[5m]))"
                    ),
                    "{{pod}} {{legacy_op_type}}",
                )],
            });
            out.push(Panel {
                title: "Replication lag",
                unit: "s",
                queries: vec![(
                    format!("mongodb_mongod_replset_member_replication_lag{{{db}}}"),
                    "{{pod}} {{name}}",
                )],
            });
        }
    }
    out.push(Panel {
        title: "Volume usage",
        unit: "percentunit",
        queries: vec![(
            format!("kubelet_volume_stats_used_bytes{{{claims}}} / kubelet_volume_stats_capacity_bytes{{{claims}}}"),
            "{{persistentvolumeclaim}}",
        )],
    });
    out.push(Panel {
        title: "Container restarts (15m)",
        unit: "none",
        queries: vec![(
            format!("increase(kube_pod_container_status_restarts_total{{{pods}}}[15m])"),
            "{{pod}} {{container}}",
        )],
    });
    out.push(Panel {
        title: "Time since last successful backup",
        unit: "s",
        queries: vec![(
            format!("time() - database_operator_backup_last_success_timestamp_seconds{{{db}}}"),
            "last backup",
        )],
    });
    out
}

/// The dashboard JSON for one Database.
pub fn dashboard_json(namespace: &str, database: &str, engine: Engine) -> Value {
    let ns = matcher("namespace", "=", namespace);
    let db = format!("{ns},{}", matcher("database", "=", database));
    let pods = format!(
        "{ns},{}",
        matcher("pod", "=~", &format!("{database}-[0-9]+"))
    );
    let claims = format!(
        "{ns},{}",
        matcher(
            "persistentvolumeclaim",
            "=~",
            &format!("data-{database}-[0-9]+")
        )
    );
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let panels: Vec<Value> = panels(engine, &db, &pods, &claims)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .into_iter()
                .enumerate()
                .map(|(j, (expr, legend))| {
                    json!({
                        "refId": ((b'A' + j as u8) as char).to_string(),
                        "datasource": datasource,
                        "expr": expr,
                        "legendFormat": legend,
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": if p.title == "Up" { "stat" } else { "timeseries" },
                "title": p.title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": dashboard_uid(namespace, database),
        "title": format!("{} {}/{}", engine_title(engine), namespace, database),
        "tags": ["database-operator", engine.as_str()],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    })
}

fn engine_title(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "PostgreSQL",
        Engine::Mysql => "MySQL",
        Engine::Mongodb => "MongoDB",
    }
}

/// Grafana uids are at most 40 characters: a stable hash of the Database.
pub fn dashboard_uid(namespace: &str, database: &str) -> String {
    format!("dbop-{}", crate::builders::hash_of(&(namespace, database)))
}

/// The dashboard ConfigMap's file name inside `data`.
pub fn file_name(namespace: &str, database: &str) -> String {
    format!("{namespace}-{database}.json")
}

/// ConfigMap `<monitor>-dashboard`.
pub fn dashboard_config_map(monitor: &DatabaseMonitor, engine: Engine) -> ConfigMap {
    let namespace = monitor.namespace().unwrap_or_default();
    let database = &monitor.spec.database_ref.name;
    let mut metadata = monitor_meta(monitor, format!("{}-dashboard", monitor.name_any()));
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(SIDECAR_LABEL.into(), "1".into());
    let json = dashboard_json(&namespace, database, engine);
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            file_name(&namespace, database),
            serde_json::to_string_pretty(&json).expect("JSON serialises"),
        )])),
        ..Default::default()
    }
}
