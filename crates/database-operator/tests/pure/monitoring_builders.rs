//! Snapshot tests of the monitoring builders, per engine: the exporter
//! sidecar, the metrics Service, the monitoring Secret, the DatabaseMonitor
//! the operator creates, and what that monitor becomes (ServiceMonitor,
//! PrometheusRule, dashboard ConfigMap).

use database_operator_api::v1;
use testkit::fixtures;

use database_operator_api::v1::Engine;
use database_operator_api::v1::database::MonitoringSpec;
use database_operator_api::v1::monitor::DatabaseMonitor;
use fixtures::{database, with_backup};
use operator::builders::Desired;
use operator::builders::monitoring::dashboard::dashboard_config_map;
use operator::builders::monitoring::rules::{RuleInput, prometheus_rule};
use operator::builders::monitoring::service_monitor::service_monitor;
use operator::builders::monitoring::{metrics_service, monitoring_secret, owned_monitor};
use rstest::rstest;

fn monitored(engine: Engine) -> v1::Database {
    let version = match engine {
        Engine::Postgresql => "16.4",
        Engine::Mysql => "8.4",
        Engine::Mongodb => "7.0",
    };
    let mut db = with_backup(database("orders", engine, version, 3), "0 2 * * *");
    db.spec.monitoring = Some(MonitoringSpec {
        enabled: true,
        alerting: true,
    });
    db
}

/// The monitor as the API server returns it (with a uid, so children get an owner).
fn stored(mut monitor: DatabaseMonitor) -> DatabaseMonitor {
    monitor.metadata.uid = Some("00000000-0000-0000-0000-000000000002".into());
    monitor
        .spec
        .extra_labels
        .insert("team".into(), "payments".into());
    monitor
}

/// The containers of the database's pod.
fn containers(desired: &Desired) -> &[k8s_openapi::api::core::v1::Container] {
    let pod = desired.statefulset.spec.template.spec.as_ref();
    &pod.expect("a pod spec").containers
}

#[rstest]
fn monitoring_children(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let db = monitored(engine);
    let desired = Desired::build(&db);
    let containers = containers(&desired);
    assert_eq!(containers.len(), 2, "database and exporter");
    let monitoring = desired.monitoring.as_ref().expect("monitoring children");
    let monitor = stored(monitoring.monitor.clone());
    let input = RuleInput {
        namespace: "default",
        database: "orders",
        engine,
        backups: true,
        alerting: &monitor.spec.alerting,
        runbook_base: "https://example.test/README.md",
    };
    let snapshot = serde_json::json!({
        "exporterSidecar": containers[1],
        "metricsService": metrics_service(&db),
        "monitoringSecret": monitoring_secret(&db, "<generated>".into()),
        "databaseMonitor": owned_monitor(&db),
        "serviceMonitor": service_monitor(&monitor),
        "prometheusRule": prometheus_rule(&monitor, &input),
        "dashboard": dashboard_config_map(&monitor, engine),
    });
    insta::with_settings!({sort_maps => true}, {
        insta::assert_yaml_snapshot!(format!("monitoring_{engine}"), snapshot);
    });
}

#[test]
fn without_monitoring_there_is_no_sidecar_and_no_monitoring_children() {
    let mut db = monitored(Engine::Postgresql);
    db.spec.monitoring = Some(MonitoringSpec {
        enabled: false,
        alerting: true,
    });
    let desired = Desired::build(&db);
    assert_eq!(containers(&desired).len(), 1);
    assert!(desired.monitoring.is_none());
}

#[test]
fn alerting_follows_the_database_and_backup_alerts_need_backups() {
    let mut db = monitored(Engine::Mysql);
    db.spec.monitoring.as_mut().unwrap().alerting = false;
    assert!(!owned_monitor(&db).spec.alerting.enabled);
    let monitor = stored(owned_monitor(&db));
    let input = RuleInput {
        namespace: "default",
        database: "orders",
        engine: Engine::Mysql,
        backups: false,
        alerting: &monitor.spec.alerting,
        runbook_base: "https://example.test/README.md",
    };
    let rule = prometheus_rule(&monitor, &input);
    assert!(
        rule.spec.groups[0]
            .rules
            .iter()
            .all(|r| !r.alert.starts_with("DatabaseBackup"))
    );
}
