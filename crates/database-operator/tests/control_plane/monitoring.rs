//! Monitoring end to end: the real operator on the local control plane,
//! first without the prometheus-operator CRDs (the DatabaseMonitor and the
//! Database say why; the operator stays healthy and does not retry in a
//! loop), then with the real CRDs installed mid-test (fetched from
//! prometheus-operator's Go module by hack/crds/fetch.sh): the exporter
//! sidecar, the metrics Service, the ServiceMonitor selecting it, a
//! PrometheusRule that passes promtool as the cluster stores it, and the
//! dashboard ConfigMap. The PostgreSQL Database is backed by a real server
//! on loopback (through `--resolve`), so the monitoring login the operator
//! creates is checked inside PostgreSQL. Last, a steady state writes nothing.

use database_operator_api::v1;
use testkit::exporters;
use testkit::harness;

use std::collections::BTreeMap;
use std::time::Duration;

use database_operator_api::v1::database::Phase;
use database_operator_api::v1::monitor::{DatabaseMonitor, conditions};
use database_operator_api::v1::{ConditionStatus, Database};
use harness::{create, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use operator::builders::monitoring::types::{PrometheusRule, ServiceMonitor};
use serde_json::json;
use testkit::servers::Postgres;

const WAIT: Duration = Duration::from_secs(90);
const NS: &str = "monitoring";

fn database(name: &str, engine: &str, version: &str) -> Database {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "engine": engine, "version": version, "storage": {"size": "1Gi"},
            "monitoring": {"enabled": true, "alerting": true},
            "backup": {"enabled": true, "schedule": "0 2 * * *"},
        }
    }))
    .unwrap()
}

fn condition(
    status: Option<&v1::monitor::DatabaseMonitorStatus>,
    type_: &str,
) -> Option<(ConditionStatus, String)> {
    let c = v1::condition::find(&status?.conditions, type_)?;
    Some((c.status, c.reason.clone()))
}

/// `database_operator_reconciliations_total{controller="databasemonitor",result!="success"}`.
async fn monitor_reconcile_errors(env: &harness::Env) -> f64 {
    let (_, body) = env.http_get("/metrics").await.unwrap();
    body.lines()
        .filter(|l| {
            l.starts_with("database_operator_reconciliations_total{")
                && l.contains("controller=\"databasemonitor\"")
                && !l.contains("result=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long no write must happen for the operator to count as settled.
const QUIET: Duration = Duration::from_secs(11);

async fn settle(env: &harness::Env) -> f64 {
    let mut last = env.metric("database_operator_api_writes_total").await;
    loop {
        // Longer than the slowest attempt to reach a server that is not
        // there (mongomon's: the MongoDB driver gives up after 10 s), whose
        // outcome may still be written.
        tokio::time::sleep(QUIET).await;
        let now = env.metric("database_operator_api_writes_total").await;
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn monitoring_without_then_with_the_prometheus_operator_crds() {
    let pg = Postgres::start().await.expect("PostgreSQL");
    let env = harness::start(vec![
        "--resolve".into(),
        format!("pgmon-primary.{NS}=127.0.0.1:{}", pg.port()),
        "--runbook-base-url".into(),
        "https://runbooks.example.test/README.md".into(),
    ])
    .await
    .expect("cluster and operator");
    let env = &env;
    let client = env.client().await;
    env.namespace(NS).await;
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    let monitors = Api::<DatabaseMonitor>::namespaced(client.clone(), NS);
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);

    // The PostgreSQL Database's admin is the real server's admin.
    let admin: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pgmon-secret", "namespace": NS},
        "stringData": {"username": pg.admin_user(), "password": pg.admin_password()},
    }))
    .unwrap();
    create(&secrets, &admin).await;
    for db in [
        database("pgmon", "postgresql", "16.4"),
        database("mymon", "mysql", "8.0"),
        database("mongomon", "mongodb", "7.0"),
    ] {
        create(&dbs, &db).await;
    }

    // --- Without the prometheus-operator CRDs ---------------------------
    for name in ["pgmon", "mymon", "mongomon"] {
        let sts = eventually(env, &format!("{name} StatefulSet"), WAIT, || async {
            Api::<StatefulSet>::namespaced(client.clone(), NS)
                .get_opt(name)
                .await
                .ok()?
        })
        .await;
        let pod = sts.spec.template.spec.unwrap();
        let exporter = pod
            .containers
            .iter()
            .find(|c| c.name == "exporter")
            .expect("exporter sidecar");
        let image = exporter.image.clone().unwrap();
        let expected = match name {
            "pgmon" => "quay.io/prometheuscommunity/postgres-exporter:v",
            "mymon" => "quay.io/prometheus/mysqld-exporter:v",
            _ => "percona/mongodb_exporter:0.",
        };
        assert!(image.starts_with(expected), "{image}");
        let port = &exporter.ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("metrics"));
        // Credentials come from the monitoring Secret, never inline.
        for var in exporter.env.as_ref().unwrap() {
            if var.name.contains("PASS") {
                let from = var
                    .value_from
                    .as_ref()
                    .unwrap()
                    .secret_key_ref
                    .as_ref()
                    .unwrap();
                assert_eq!(from.name, format!("{name}-monitoring"));
                assert!(var.value.is_none());
            }
        }
        let service = eventually(env, &format!("{name}-metrics Service"), WAIT, || async {
            Api::<Service>::namespaced(client.clone(), NS)
                .get_opt(&format!("{name}-metrics"))
                .await
                .ok()?
        })
        .await;
        let ports = service.spec.as_ref().unwrap().ports.clone().unwrap();
        assert_eq!(ports[0].name.as_deref(), Some("metrics"));
        let monitoring = eventually(env, &format!("{name}-monitoring Secret"), WAIT, || async {
            secrets.get_opt(&format!("{name}-monitoring")).await.ok()?
        })
        .await;
        assert_eq!(
            monitoring.data.as_ref().unwrap()["username"].0,
            b"dbop_monitor".to_vec()
        );
        // Immutable: the login inside the engine carries this password, and
        // nobody changes it by editing the Secret.
        assert_eq!(monitoring.immutable, Some(true));
        let edit = secrets
            .patch(
                &format!("{name}-monitoring"),
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"password": "edited"}})),
            )
            .await
            .expect_err("the API server accepted an edit of an immutable Secret");
        assert!(edit.to_string().contains("immutable"), "{edit}");
        let monitor = eventually(
            env,
            &format!("{name} DatabaseMonitor says the CRDs are missing"),
            WAIT,
            || async {
                let m = monitors.get_opt(name).await.ok()??;
                (condition(m.status.as_ref(), conditions::PROMETHEUS_OPERATOR)
                    == Some((ConditionStatus::False, "CRDsNotInstalled".into())))
                .then_some(m)
            },
        )
        .await;
        let owner = &monitor.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Database", name)
        );
        assert!(monitor.spec.alerting.enabled);
        assert_eq!(
            condition(monitor.status.as_ref(), conditions::READY),
            Some((ConditionStatus::False, "PrometheusOperatorMissing".into()))
        );
        eventually(
            env,
            &format!("{name} MonitoringReady mirrors it"),
            WAIT,
            || async {
                let db = dbs.get(name).await.ok()?;
                let c = v1::condition::find(&db.status?.conditions, "MonitoringReady")?.clone();
                (c.status == ConditionStatus::False && c.reason == "PrometheusOperatorMissing")
                    .then_some(())
            },
        )
        .await;
        // The dashboard does not need the CRDs.
        let dashboard = eventually(
            env,
            &format!("{name}-dashboard ConfigMap"),
            WAIT,
            || async {
                Api::<ConfigMap>::namespaced(client.clone(), NS)
                    .get_opt(&format!("{name}-dashboard"))
                    .await
                    .ok()?
            },
        )
        .await;
        assert_eq!(dashboard.labels()["grafana_dashboard"], "1");
        let json: serde_json::Value =
            serde_json::from_str(dashboard.data.as_ref().unwrap().values().next().unwrap())
                .unwrap();
        assert!(!json["panels"].as_array().unwrap().is_empty());
    }

    // The monitoring login exists inside the real PostgreSQL, in pg_monitor,
    // with the password of the Secret.
    eventually(env, "pgmon Running", WAIT, || async {
        (dbs.get("pgmon").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    eventually(env, "the monitoring login is ready", WAIT, || async {
        let m = monitors.get("pgmon").await.ok()?;
        (condition(m.status.as_ref(), "MonitoringUserReady")?
            == (ConditionStatus::True, "LoginReady".into()))
            .then_some(())
    })
    .await;
    let secret = secrets.get("pgmon-monitoring").await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let mut config = pg.config();
    config
        .user("dbop_monitor")
        .password(password.as_str())
        .dbname("postgres");
    let (as_monitor, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("log in as dbop_monitor");
    tokio::spawn(connection);
    let row = as_monitor
        .query_one(
            "SELECT pg_has_role('dbop_monitor', 'pg_monitor', 'member'), r.rolsuper, r.rolconnlimit FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert!(!row.get::<_, bool>(1));
    assert_eq!(row.get::<_, i32>(2), 3);

    // A DatabaseMonitor a user makes for a Database without an exporter, or
    // for no Database at all, says so.
    let mut plain = database("plain", "postgresql", "16.4");
    plain.spec.monitoring = None;
    create(&dbs, &plain).await;
    for (monitor, database, reason) in [
        ("plain-mon", "plain", "ExporterNotEnabled"),
        ("ghost-mon", "ghost", "DatabaseNotFound"),
    ] {
        let m: DatabaseMonitor = serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "DatabaseMonitor",
            "metadata": {"name": monitor, "namespace": NS},
            "spec": {"databaseRef": {"name": database}, "scrapeInterval": "15s"},
        }))
        .unwrap();
        create(&monitors, &m).await;
        eventually(env, &format!("{monitor} says {reason}"), WAIT, || async {
            let m = monitors.get(monitor).await.ok()?;
            (condition(m.status.as_ref(), conditions::READY)?
                == (ConditionStatus::False, reason.into()))
                .then_some(())
        })
        .await;
    }

    // No error loop: the monitor controller's reconciles did not fail, and
    // the operator is ready.
    assert_eq!(
        monitor_reconcile_errors(env).await,
        0.0,
        "{}",
        env.operator_log_tail()
    );
    assert_eq!(env.http_get("/readyz").await.unwrap().0, 200);

    // --- With the real prometheus-operator CRDs -----------------------------
    harness::install_crd_files(
        &client,
        &harness::prometheus_operator_crds(),
        "monitoring-e2e",
    )
    .await
    .expect("installing prometheus-operator's CRDs");
    let service_monitors = Api::<ServiceMonitor>::namespaced(client.clone(), NS);
    let rules = Api::<PrometheusRule>::namespaced(client.clone(), NS);
    for name in ["pgmon", "mymon", "mongomon"] {
        let sm = eventually(env, &format!("{name} ServiceMonitor"), WAIT, || async {
            service_monitors.get_opt(name).await.ok()?
        })
        .await;
        let service = Api::<Service>::namespaced(client.clone(), NS)
            .get(&format!("{name}-metrics"))
            .await
            .unwrap();
        let selector = sm.spec.selector.match_labels.clone().unwrap();
        let labels: &BTreeMap<String, String> = service.labels();
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "ServiceMonitor selector {selector:?} does not select {labels:?}"
        );
        // …and only that Service among the Database's.
        for other in [format!("{name}-primary"), format!("{name}-headless")] {
            let svc = Api::<Service>::namespaced(client.clone(), NS)
                .get(&other)
                .await
                .unwrap();
            assert!(
                !selector.iter().all(|(k, v)| svc.labels().get(k) == Some(v)),
                "{other} selected"
            );
        }
        assert_eq!(sm.spec.endpoints[0].port, "metrics");

        let rule = eventually(env, &format!("{name} PrometheusRule"), WAIT, || async {
            rules.get_opt(name).await.ok()?
        })
        .await;
        let alerts: Vec<&str> = rule.spec.groups[0]
            .rules
            .iter()
            .map(|r| r.alert.as_str())
            .collect();
        for alert in [
            "DatabaseDown",
            "DatabaseStorageFilling",
            "DatabaseBackupMissed",
            "DatabaseCrashLooping",
        ] {
            assert!(alerts.contains(&alert), "{alert} missing from {alerts:?}");
        }
        assert!(rule.spec.groups[0].rules.iter().all(|r| {
            r.annotations["runbook_url"].starts_with("https://runbooks.example.test/README.md#")
        }));
        // The rule as the API server stores it passes promtool.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yaml");
        let live = Api::<kube::api::DynamicObject>::namespaced_with(
            client.clone(),
            NS,
            &kube::api::ApiResource::erase::<PrometheusRule>(&()),
        )
        .get(name)
        .await
        .unwrap();
        std::fs::write(&file, serde_json::to_string(&live.data["spec"]).unwrap()).unwrap();
        let out = std::process::Command::new(exporters::promtool())
            .args(["check", "rules", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules on the live PrometheusRule {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eventually(
            env,
            &format!("{name} DatabaseMonitor Ready"),
            WAIT,
            || async {
                let m = monitors.get(name).await.ok()?;
                (condition(m.status.as_ref(), conditions::READY)?
                    == (ConditionStatus::True, "Monitored".into())
                    && condition(m.status.as_ref(), conditions::PROMETHEUS_OPERATOR)?.0
                        == ConditionStatus::True)
                    .then_some(())
            },
        )
        .await;
        eventually(env, &format!("{name} MonitoringReady"), WAIT, || async {
            let db = dbs.get(name).await.ok()?;
            let c = v1::condition::find(&db.status?.conditions, "MonitoringReady")?.clone();
            (c.status == ConditionStatus::True).then_some(())
        })
        .await;
    }

    // Turning alerting off removes the PrometheusRule; the ServiceMonitor stays.
    dbs.patch(
        "mymon",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitoring": {"enabled": true, "alerting": false}}})),
    )
    .await
    .unwrap();
    eventually(env, "mymon PrometheusRule removed", WAIT, || async {
        rules.get_opt("mymon").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(service_monitors.get_opt("mymon").await.unwrap().is_some());

    // --- Steady state: nothing to change, nothing written ------------------
    let before = settle(env).await;
    for name in ["pgmon", "mymon", "mongomon", "plain-mon", "ghost-mon"] {
        let poke = json!({"metadata": {"annotations": {"test/poke": "1"}}});
        monitors
            .patch(name, &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .unwrap();
        if !name.ends_with("-mon") {
            dbs.patch(name, &PatchParams::default(), &Patch::Merge(&poke))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.metric("database_operator_api_writes_total").await,
        before,
        "the operator wrote at steady state:\n{}",
        env.operator_log_tail()
    );

    // A restarted operator finds everything in place and writes nothing.
    let statuses = || async {
        let mut all = Vec::new();
        for db in dbs.list(&Default::default()).await.unwrap() {
            all.push(format!(
                "Database {}: {}",
                db.name_any(),
                serde_json::to_string(&db.status).unwrap()
            ));
        }
        for m in monitors.list(&Default::default()).await.unwrap() {
            all.push(format!(
                "DatabaseMonitor {}: {}",
                m.name_any(),
                serde_json::to_string(&m.status).unwrap()
            ));
        }
        all
    };
    let statuses_before = statuses().await;
    env.restart_operator().await;
    let at_start = settle(env).await;
    assert_eq!(
        at_start,
        0.0,
        "a restarted operator wrote while catching up:\n{}\nstatuses before: {statuses_before:#?}\nafter: {:#?}\n{}",
        env.metric_series("database_operator_api_writes_total")
            .await,
        statuses().await,
        env.operator_log_tail()
    );
}
