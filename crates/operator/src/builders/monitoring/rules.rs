//! PrometheusRule `<monitor>`: the alerts for one Database, per engine, with
//! the thresholds of its DatabaseMonitor. Each alert has a severity, a
//! summary, a description and a runbook (a README section, linked by
//! `runbook_url`).
//!
//! Series are matched by the labels the ServiceMonitor adds (`namespace`,
//! `database`), by pod and claim names for kube-state-metrics and kubelet,
//! and by `namespace`/`database` for the operator's own backup metrics
//! (scrape the operator with `honorLabels: true` so they keep them).

use std::collections::BTreeMap;

use database_operator_api::v1::Engine;
use database_operator_api::v1::monitor::{AlertingSpec, DatabaseMonitor};
use kube::ResourceExt;

use super::monitor_meta;
use super::promql::matcher;
use super::types::{AlertRule, PrometheusRule, PrometheusRuleSpec, RuleGroup};

/// Where the runbooks live: the book's "Alert runbooks" page.
pub const DEFAULT_RUNBOOK_BASE: &str =
    "https://github.com/example/database-operator/blob/main/docs/src/runbooks.md";

/// Every alert the operator can install, in the runbooks' order.
pub const ALERTS: &[&str] = &[
    "DatabaseDown",
    "DatabaseExporterDown",
    "DatabaseConnectionsNearLimit",
    "DatabaseReplicationLagging",
    "DatabaseStorageFilling",
    "DatabaseBackupMissed",
    "DatabaseBackupFailed",
    "DatabaseRestarting",
    "DatabaseCrashLooping",
    "DatabaseSlowQueries",
    "DatabaseDeadlocks",
];

/// What the rules are built for.
pub struct RuleInput<'a> {
    pub namespace: &'a str,
    pub database: &'a str,
    pub engine: Engine,
    /// Whether the Database runs scheduled backups (the backup alerts need them).
    pub backups: bool,
    pub alerting: &'a AlertingSpec,
    pub runbook_base: &'a str,
}

/// Label selectors for the series of one Database.
struct Selectors {
    /// Exporter series and the operator's per-database series.
    database: String,
    /// The Database's pods (kube-state-metrics).
    pods: String,
    /// The Database's data volume claims (kubelet).
    claims: String,
}

impl Selectors {
    fn of(input: &RuleInput<'_>) -> Self {
        let ns = matcher("namespace", "=", input.namespace);
        let db = regex_escape(input.database);
        Self {
            database: format!("{ns},{}", matcher("database", "=", input.database)),
            pods: format!("{ns},{}", matcher("pod", "=~", &format!("{db}-[0-9]+"))),
            claims: format!(
                "{ns},{}",
                matcher("persistentvolumeclaim", "=~", &format!("data-{db}-[0-9]+"))
            ),
        }
    }
}

/// Database names are DNS labels; escape anyway, the expression is ours.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

struct Alert {
    name: &'static str,
    expr: String,
    for_: &'static str,
    severity: &'static str,
    summary: String,
    description: String,
}

/// The alerting rules for one Database, before the disabled ones are left out.
fn alerts(input: &RuleInput<'_>) -> Vec<Alert> {
    let s = Selectors::of(input);
    let a = input.alerting;
    let who = format!("{}/{}", input.namespace, input.database);
    let engine = input.engine;
    let mut out = Vec::new();
    let up = match engine {
        Engine::Postgresql => "pg_up",
        Engine::Mysql => "mysql_up",
        Engine::Mongodb => "mongodb_up",
    };
    out.push(Alert {
        name: "DatabaseDown",
        expr: format!("{up}{{{}}} == 0", s.database),
        for_: "1m",
        severity: "critical",
        summary: format!("Database {who} is down"),
        description: format!(
            "The {engine} server in pod {{{{ $labels.pod }}}} does not answer its exporter."
        ),
    });
    out.push(Alert {
        name: "DatabaseExporterDown",
        expr: format!("up{{{}}} == 0", s.database),
        for_: "5m",
        severity: "warning",
        summary: format!("Metrics of Database {who} cannot be scraped"),
        description: "Prometheus cannot scrape the exporter sidecar in pod {{ $labels.pod }}: every other alert of this Database is blind.".into(),
    });
    let pct = a.connections_percent();
    let connections = match engine {
        Engine::Postgresql => format!(
            "sum by (namespace, database, pod) (pg_stat_activity_count{{{0}}}) / max by (namespace, database, pod) (pg_settings_max_connections{{{0}}}) * 100 > {pct}",
            s.database
        ),
        Engine::Mysql => format!(
            "max by (namespace, database, pod) (mysql_global_status_threads_connected{{{0}}}) / max by (namespace, database, pod) (mysql_global_variables_max_connections{{{0}}}) * 100 > {pct}",
            s.database
        ),
        Engine::Mongodb => format!(
            "max by (namespace, database, pod) (mongodb_connections{{{0},state=\"current\"}}) / (max by (namespace, database, pod) (mongodb_connections{{{0},state=\"current\"}}) + max by (namespace, database, pod) (mongodb_connections{{{0},state=\"available\"}})) * 100 > {pct}",
            s.database
        ),
    };
    out.push(Alert {
        name: "DatabaseConnectionsNearLimit",
        expr: connections,
        for_: "5m",
        severity: "warning",
        summary: format!("Database {who} uses more than {pct}% of its connections"),
        description: "{{ $value | humanize }}% of the connection limit is in use on pod {{ $labels.pod }}; new clients will soon be refused.".into(),
    });
    let lag = a.replication_lag_seconds();
    let replication = match engine {
        Engine::Postgresql => format!(
            "max by (namespace, database, pod) (pg_replication_lag_seconds{{{}}}) > {lag}",
            s.database
        ),
        Engine::Mysql => format!(
            "max by (namespace, database, pod) (mysql_slave_status_seconds_behind_master{{{}}}) > {lag}",
            s.database
        ),
        Engine::Mongodb => format!(
            "max by (namespace, database, pod) (mongodb_mongod_replset_member_replication_lag{{{}}}) > {lag}",
            s.database
        ),
    };
    out.push(Alert {
        name: "DatabaseReplicationLagging",
        expr: replication,
        for_: "5m",
        severity: "warning",
        summary: format!("A replica of Database {who} lags more than {lag}s"),
        description: "Pod {{ $labels.pod }} replays changes {{ $value | humanizeDuration }} behind the primary; reads from it are stale.".into(),
    });
    let storage = a.storage_percent();
    out.push(Alert {
        name: "DatabaseStorageFilling",
        expr: format!(
            "kubelet_volume_stats_used_bytes{{{0}}} / kubelet_volume_stats_capacity_bytes{{{0}}} * 100 > {storage}",
            s.claims
        ),
        for_: "10m",
        severity: "warning",
        summary: format!("A data volume of Database {who} is more than {storage}% full"),
        description: "Volume claim {{ $labels.persistentvolumeclaim }} is {{ $value | humanize }}% full; the database stops accepting writes when it is full.".into(),
    });
    if input.backups {
        let hours = a.backup_max_age_hours();
        out.push(Alert {
            name: "DatabaseBackupMissed",
            expr: format!(
                "time() - database_operator_backup_last_success_timestamp_seconds{{{}}} > {}",
                s.database,
                i64::from(hours) * 3600
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("Database {who} has had no successful backup for {hours}h"),
            description: "The last successful backup finished {{ $value | humanizeDuration }} ago."
                .into(),
        });
        out.push(Alert {
            name: "DatabaseBackupFailed",
            expr: format!(
                "increase(database_operator_backups_total{{{},outcome=\"failed\"}}[1h]) > 0",
                s.database
            ),
            for_: "0m",
            severity: "warning",
            summary: format!("A backup of Database {who} failed"),
            description: "A backup failed within the last hour; the DatabaseBackup's Ready condition says why.".into(),
        });
    }
    let restarts = a.restarts();
    out.push(Alert {
        name: "DatabaseRestarting",
        expr: format!(
            "increase(kube_pod_container_status_restarts_total{{{}}}[15m]) >= {restarts}",
            s.pods
        ),
        for_: "0m",
        severity: "warning",
        summary: format!("Containers of Database {who} keep restarting"),
        description: format!(
            "Container {{{{ $labels.container }}}} in pod {{{{ $labels.pod }}}} restarted at least {restarts} times in 15 minutes."
        ),
    });
    out.push(Alert {
        name: "DatabaseCrashLooping",
        expr: format!(
            "max_over_time(kube_pod_container_status_waiting_reason{{{},reason=\"CrashLoopBackOff\"}}[5m]) >= 1",
            s.pods
        ),
        for_: "5m",
        severity: "critical",
        summary: format!("A container of Database {who} is crash-looping"),
        description: "Container {{ $labels.container }} in pod {{ $labels.pod }} is in CrashLoopBackOff.".into(),
    });
    let slow = a.slow_query_seconds();
    match engine {
        Engine::Postgresql => {
            out.push(Alert {
                name: "DatabaseSlowQueries",
                expr: format!(
                    "max by (namespace, database, pod, datname) (pg_stat_activity_max_tx_duration{{{},datname!~\"template.*\"}}) > {slow}",
                    s.database
                ),
                for_: "2m",
                severity: "warning",
                summary: format!("Database {who} has a transaction open longer than {slow}s"),
                description: "A transaction in database {{ $labels.datname }} has run for {{ $value | humanizeDuration }}; long transactions hold locks and block vacuum.".into(),
            });
            out.push(Alert {
                name: "DatabaseDeadlocks",
                expr: format!(
                    "sum by (namespace, database, pod, datname) (increase(pg_stat_database_deadlocks{{{}}}[10m])) > 0",
                    s.database
                ),
                for_: "0m",
                severity: "warning",
                summary: format!("Deadlocks in Database {who}"),
                description: "PostgreSQL rolled back deadlocked transactions in database {{ $labels.datname }} within 10 minutes.".into(),
            });
        }
        Engine::Mysql => {
            out.push(Alert {
                name: "DatabaseSlowQueries",
                expr: format!(
                    "sum by (namespace, database, pod) (increase(mysql_global_status_slow_queries{{{}}}[10m])) > 0",
                    s.database
                ),
                for_: "0m",
                severity: "warning",
                summary: format!("Slow queries in Database {who}"),
                description: "Queries in pod {{ $labels.pod }} ran longer than long_query_time within 10 minutes.".into(),
            });
            out.push(Alert {
                name: "DatabaseDeadlocks",
                expr: format!(
                    "sum by (namespace, database, pod) (increase(mysql_global_status_innodb_deadlocks{{{}}}[10m])) > 0",
                    s.database
                ),
                for_: "0m",
                severity: "warning",
                summary: format!("InnoDB deadlocks in Database {who}"),
                description: "InnoDB rolled back deadlocked transactions in pod {{ $labels.pod }} within 10 minutes.".into(),
            });
        }
        // mongodb_exporter has no slow-query or deadlock metric.
        Engine::Mongodb => {}
    }
    out
}

/// The rule groups for one Database: what the PrometheusRule holds, and what
/// a plain rule file for promtool holds.
pub fn rule_groups(input: &RuleInput<'_>) -> Vec<RuleGroup> {
    let mut common = BTreeMap::from([
        ("namespace".to_owned(), input.namespace.to_owned()),
        ("database".to_owned(), input.database.to_owned()),
        ("engine".to_owned(), input.engine.to_string()),
    ]);
    for (k, v) in &input.alerting.labels {
        common.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let rules = alerts(input)
        .into_iter()
        .filter(|alert| input.alerting.fires(alert.name))
        .map(|alert| {
            let mut labels = common.clone();
            labels.insert("severity".into(), alert.severity.into());
            AlertRule {
                alert: alert.name.into(),
                expr: alert.expr,
                for_: (alert.for_ != "0m").then(|| alert.for_.to_owned()),
                labels,
                annotations: BTreeMap::from([
                    ("summary".to_owned(), alert.summary),
                    ("description".to_owned(), alert.description),
                    (
                        "runbook_url".to_owned(),
                        format!("{}#{}", input.runbook_base, runbook_anchor(alert.name)),
                    ),
                ]),
            }
        })
        .collect();
    vec![RuleGroup {
        name: format!("database-operator.{}.{}", input.namespace, input.database),
        interval: None,
        rules,
    }]
}

/// The heading anchor of an alert's runbook (`## DatabaseDown` → `databasedown`).
pub fn runbook_anchor(alert: &str) -> String {
    alert.to_ascii_lowercase()
}

/// PrometheusRule `<monitor>`.
pub fn prometheus_rule(monitor: &DatabaseMonitor, input: &RuleInput<'_>) -> PrometheusRule {
    PrometheusRule {
        metadata: monitor_meta(monitor, monitor.name_any()),
        spec: PrometheusRuleSpec {
            groups: rule_groups(input),
        },
    }
}
