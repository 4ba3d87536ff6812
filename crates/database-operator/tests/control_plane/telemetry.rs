//! The operator's own telemetry, against the real binary on the local
//! control plane: `/metrics` is valid OpenMetrics and its counters and
//! gauges follow Databases and DatabaseBackups as they come and go; the
//! probes answer; `--log-format json` logs parse as JSON and hold no
//! secret; the operator's dashboard only queries metrics the operator
//! exposes; the packaging in deploy/operator parses into the right types
//! and the API server accepts it.

use testkit::exposition;
use testkit::harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::database::Phase;
use exposition::Exposition;
use harness::{Env, create, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

const WAIT: Duration = Duration::from_secs(120);

static ENV: OnceCell<Env> = OnceCell::const_new();

/// One control plane and one operator for this file, logging JSON.
async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        harness::start(vec!["--log-format".into(), "json".into()])
            .await
            .expect("starting the integration environment")
    })
    .await
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// GET /metrics: checks the content type and that the exposition is valid.
async fn scrape(env: &Env) -> Exposition {
    let mut stream = tokio::net::TcpStream::connect(&env.metrics_address)
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    exposition::parse(body).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{body}"))
}

fn database(name: &str, namespace: &str, engine: &str) -> Database {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"engine": engine, "version": if engine == "mysql" { "8.0" } else { "16.4" },
            "storage": {"size": "1Gi"},
            "backup": {"enabled": false,
                "destination": {"s3": {"bucket": "backups", "region": "eu-west-1",
                    "endpoint": "http://s3.storage.svc:7070", "forcePathStyle": true,
                    "credentialsSecret": {"name": "s3-credentials"}}}}}
    }))
    .unwrap()
}

fn on_demand(name: &str, namespace: &str, database: &str) -> DatabaseBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"databaseRef": {"name": database}}
    }))
    .unwrap()
}

async fn wait_backup(env: &Env, backups: &Api<DatabaseBackup>, name: &str, phase: BackupPhase) {
    eventually(env, &format!("backup {name} {phase:?}"), WAIT, || async {
        let b = backups.get(name).await.ok()?;
        (b.status.as_ref()?.phase == Some(phase)).then_some(())
    })
    .await;
}

/// Polls the scrape until `check` holds on it.
async fn scraped(env: &Env, what: &str, check: impl Fn(&Exposition) -> bool) -> Exposition {
    eventually(env, what, WAIT, || async {
        let metrics = scrape(env).await;
        check(&metrics).then_some(metrics)
    })
    .await
}

const RECONCILES: &str = "database_operator_reconciliations_total";
const DATABASES: &str = "database_operator_databases";
const BACKUPS_TOTAL: &str = "database_operator_backups_total";
const BACKUPS_BY_PHASE: &str = "database_operator_backups_by_phase";
const LAST_SUCCESS: &str = "database_operator_backup_last_success_timestamp_seconds";

#[tokio::test]
async fn metrics_follow_databases_and_backups_as_they_come_and_go() {
    let env = env().await;
    let client = env.client().await;
    let ns = env.namespace("telemetry-metrics").await;
    assert_eq!(env.http_get("/healthz").await.unwrap(), (200, "ok".into()));
    assert_eq!(
        env.http_get("/readyz").await.unwrap(),
        (200, "ready".into())
    );

    let before = scrape(env).await;
    let success = [("controller", "database"), ("result", "success")];
    let reconciled_before = before.value(RECONCILES, &success).unwrap();
    // Only this test makes PostgreSQL Databases in this cluster.
    assert_eq!(before.sum(DATABASES, &[("engine", "postgresql")]), 0.0);
    for controller in operator::metrics::CONTROLLERS {
        for kind in operator::error::Error::KINDS {
            let labels = [("controller", controller), ("kind", kind)];
            assert!(
                before
                    .value("database_operator_reconcile_errors_total", &labels)
                    .is_some(),
                "no zero series for {labels:?}"
            );
        }
    }

    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &database("orders", &ns, "postgresql")).await;
    eventually(env, "orders Running", WAIT, || async {
        (dbs.get("orders").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    let running = [("engine", "postgresql"), ("phase", "Running")];
    let metrics = scraped(env, "orders counted as a Running PostgreSQL", |m| {
        m.value(DATABASES, &running) == Some(1.0)
    })
    .await;
    assert!(metrics.value(RECONCILES, &success).unwrap() > reconciled_before);
    assert_eq!(metrics.sum(DATABASES, &[("engine", "postgresql")]), 1.0);
    let durations = metrics
        .value(
            "database_operator_reconcile_duration_seconds_count",
            &[("controller", "database")],
        )
        .unwrap();
    assert!(durations >= 1.0, "no reconcile duration observed");
    for (family, kind) in [
        ("database_operator_reconcile_duration_seconds", "histogram"),
        ("database_operator_reconciliations", "counter"),
        ("database_operator_databases", "gauge"),
        ("database_operator_reconciles_in_flight", "gauge"),
    ] {
        assert_eq!(
            metrics.family(family).map(|f| f.kind.as_str()),
            Some(kind),
            "{family}"
        );
    }
    assert!(
        metrics
            .value(
                "database_operator_reconciles_in_flight",
                &[("controller", "database")]
            )
            .is_some()
    );

    // One backup completes (KWOK completes its Job), one fails.
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns);
    create(&backups, &on_demand("orders-1", &ns, "orders")).await;
    create(&backups, &on_demand("ghost-1", &ns, "ghost")).await;
    wait_backup(env, &backups, "orders-1", BackupPhase::Completed).await;
    wait_backup(env, &backups, "ghost-1", BackupPhase::Failed).await;
    let completed = [
        ("namespace", ns.as_str()),
        ("database", "orders"),
        ("outcome", "completed"),
    ];
    let failed = [
        ("namespace", ns.as_str()),
        ("database", "ghost"),
        ("outcome", "failed"),
    ];
    let metrics = scraped(env, "both backups counted", |m| {
        m.value(BACKUPS_TOTAL, &completed) == Some(1.0)
            && m.value(BACKUPS_TOTAL, &failed) == Some(1.0)
    })
    .await;
    assert_eq!(
        metrics
            .family("database_operator_backups")
            .map(|f| f.kind.as_str()),
        Some("counter")
    );
    let by_phase = |database, phase| {
        [
            ("namespace", ns.as_str()),
            ("database", database),
            ("phase", phase),
        ]
    };
    assert_eq!(
        metrics.value(BACKUPS_BY_PHASE, &by_phase("orders", "Completed")),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(BACKUPS_BY_PHASE, &by_phase("ghost", "Failed")),
        Some(1.0)
    );
    let done = backups.get("orders-1").await.unwrap();
    let finished_at = done.status.unwrap().completion_time.unwrap().0.as_second() as f64;
    let database = [("namespace", ns.as_str()), ("database", "orders")];
    assert_eq!(metrics.value(LAST_SUCCESS, &database), Some(finished_at));
    assert_eq!(
        metrics.value(
            LAST_SUCCESS,
            &[("namespace", ns.as_str()), ("database", "ghost")]
        ),
        None,
        "a failed backup is no success"
    );

    // Every metric the operator's dashboard queries is one it exposes.
    let exposed = metrics.sample_names();
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|m| !exposed.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not have: {exposed:?}"
    );

    // Reconciling a finished backup again does not count it again.
    let backup_success = [("controller", "databasebackup"), ("result", "success")];
    let reconciles = metrics.value(RECONCILES, &backup_success).unwrap();
    backups
        .patch(
            "orders-1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    let metrics = scraped(env, "the touched backup reconciled", |m| {
        m.value(RECONCILES, &backup_success).unwrap() > reconciles
    })
    .await;
    assert_eq!(metrics.value(BACKUPS_TOTAL, &completed), Some(1.0));

    // Deleting brings the gauges back down; nothing drifts.
    for name in ["orders-1", "ghost-1"] {
        backups
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    dbs.delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    let metrics = scraped(env, "the gauges back to nothing", |m| {
        m.sum(DATABASES, &[("engine", "postgresql")]) == 0.0
            && m.sum(BACKUPS_BY_PHASE, &[("namespace", ns.as_str())]) == 0.0
            && m.value(LAST_SUCCESS, &database).is_none()
    })
    .await;
    assert_eq!(metrics.value(DATABASES, &running), Some(0.0));
    assert_eq!(metrics.value(BACKUPS_TOTAL, &completed), Some(1.0));
}

#[tokio::test]
async fn json_logs_parse_line_by_line_and_hold_no_secret() {
    let env = env().await;
    let client = env.client().await;
    let ns = env.namespace("telemetry-logs").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &database("shop", &ns, "mysql")).await;
    eventually(env, "shop Running", WAIT, || async {
        (dbs.get("shop").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .get("shop-secret")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    let password = String::from_utf8(data["password"].0.clone()).unwrap();
    assert!(password.len() >= 16, "a generated password");

    let log = std::fs::read_to_string(&env.operator_log).unwrap();
    let mut about_shop = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for field in ["timestamp", "level", "message"] {
            assert!(entry.get(field).is_some(), "no {field} in {line}");
        }
        if line.contains("\"shop\"") {
            about_shop += 1;
        }
    }
    assert!(about_shop > 0, "no log line names the Database:\n{log}");
    assert!(!log.contains(&password), "the admin password is in the log");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&password);
    assert!(
        !log.contains(&encoded),
        "the encoded admin password is in the log"
    );
    dbs.delete("shop", &DeleteParams::default()).await.unwrap();
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn the_packaging_parses_into_its_types_and_the_api_server_accepts_it() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    let namespace: Namespace = read_yaml("deploy/operator/namespace.yaml");
    let account: ServiceAccount = read_yaml("deploy/operator/serviceaccount.yaml");
    let role: ClusterRole = read_yaml("deploy/operator/clusterrole.yaml");
    let binding: ClusterRoleBinding = read_yaml("deploy/operator/clusterrolebinding.yaml");
    let lease_role: Role = read_yaml("deploy/operator/leader-election-role.yaml");
    let lease_binding: RoleBinding = read_yaml("deploy/operator/leader-election-rolebinding.yaml");
    let deployment: Deployment = read_yaml("deploy/operator/deployment.yaml");
    let service: Service = read_yaml("deploy/operator/service.yaml");
    let dashboard: ConfigMap = read_yaml("deploy/monitoring/operator-dashboard-configmap.yaml");
    let monitor: serde_json::Value = read_yaml("deploy/monitoring/operator-servicemonitor.yaml");

    // The pieces refer to each other correctly.
    let ns = namespace.name_any();
    let sa = account.name_any();
    assert_eq!(account.namespace().as_deref(), Some(ns.as_str()));
    assert_eq!(binding.role_ref.name, role.name_any());
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", sa.as_str())
    );
    assert_eq!(subject.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(lease_binding.role_ref.name, lease_role.name_any());
    assert_eq!(lease_binding.subjects.as_ref().unwrap()[0], *subject);
    assert_eq!(lease_role.namespace().as_deref(), Some(ns.as_str()));
    for rule in role.rules.iter().chain(lease_role.rules.iter()).flatten() {
        assert!(!rule.verbs.iter().any(|v| v == "*"), "wildcard verb");
        assert!(
            !rule.resources.iter().flatten().any(|r| r.contains('*')),
            "wildcard resource"
        );
    }
    let spec = &deployment.spec;
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selects = |selector: &std::collections::BTreeMap<String, String>| {
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(spec.selector.match_labels.as_ref().unwrap()));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(sa.as_str()));
    let container = &pod.containers[0];
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
    };
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    let metrics_port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a named metrics port");
    let service_spec = service.spec.as_ref().unwrap();
    assert!(selects(service_spec.selector.as_ref().unwrap()));
    let service_port = &service_spec.ports.as_ref().unwrap()[0];
    assert_eq!(
        service_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()))
    );
    assert_eq!(service_port.port, metrics_port.container_port);

    // The ServiceMonitor selects that Service and its port.
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let service_labels = service.labels();
    let match_labels = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(
        match_labels
            .iter()
            .all(|(k, v)| service_labels.get(k).map(String::as_str) == v.as_str())
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        ns.as_str()
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), service_port.name.as_deref());
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(dashboard.labels()["grafana_dashboard"], "1");

    // The API server accepts every object as written: the namespace for
    // real, the rest as a strict server-side dry run (unknown or duplicate
    // fields fail), the ServiceMonitor against prometheus-operator's real CRD.
    let env = env().await;
    let client = env.client().await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for file in prometheus_operator_crds() {
        let mut crd: CustomResourceDefinition =
            serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        crd.metadata.managed_fields = None;
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("packaging-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    let service_monitors = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    );
    let apply = PatchParams {
        field_manager: Some("packaging-test".into()),
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(&ns, &apply, &Patch::Apply(&namespace))
        .await
        .unwrap();
    let dry = PatchParams {
        dry_run: true,
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..apply
    };
    async fn dry_run<K>(api: Api<K>, object: &K, params: &PatchParams)
    where
        K: kube::Resource
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = object.meta().name.clone().unwrap();
        api.patch(&name, params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("{name} refused: {e}"));
    }
    dry_run(Api::namespaced(client.clone(), &ns), &account, &dry).await;
    dry_run(Api::all(client.clone()), &role, &dry).await;
    dry_run(Api::all(client.clone()), &binding, &dry).await;
    dry_run(Api::namespaced(client.clone(), &ns), &lease_role, &dry).await;
    dry_run(Api::namespaced(client.clone(), &ns), &lease_binding, &dry).await;
    dry_run(Api::namespaced(client.clone(), &ns), &deployment, &dry).await;
    dry_run(Api::namespaced(client.clone(), &ns), &service, &dry).await;
    dry_run(Api::namespaced(client.clone(), &ns), &dashboard, &dry).await;
    let monitor: DynamicObject = serde_json::from_value(monitor).unwrap();
    // The CRD was just installed: wait until it is served.
    eventually(env, "the ServiceMonitor accepted", WAIT, || async {
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &service_monitors)
            .patch("database-operator", &dry, &Patch::Apply(&monitor))
            .await
            .map_err(|e| eprintln!("ServiceMonitor not (yet) accepted: {e}"))
            .ok()
    })
    .await;
}

/// The metric names a PromQL expression reads: every identifier that is
/// not a function, keyword, label matcher, range or grouping label.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let strip = |text: &str, pattern: &str| {
        regex::Regex::new(pattern)
            .unwrap()
            .replace_all(text, "")
            .into_owned()
    };
    let mut text = strip(expr, r#""(?:[^"\\]|\\.)*""#);
    text = strip(&text, r"\{[^}]*\}");
    text = strip(&text, r"\[[^\]]*\]");
    text = strip(
        &text,
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
    );
    let identifier = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?").unwrap();
    identifier
        .captures_iter(&text)
        .filter(|c| c.get(1).is_none())
        .map(|c| c[0].to_owned())
        .filter(|name| !["and", "or", "unless", "bool", "offset"].contains(&name.as_str()))
        .collect()
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("deploy/monitoring/operator-dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn dashboard_metrics() -> BTreeSet<String> {
    dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| metrics_in(t["expr"].as_str().unwrap()))
        .collect()
}

#[test]
fn promql_metric_names_are_found_and_nothing_else() {
    let found = metrics_in(
        r#"histogram_quantile(0.99, sum by (controller, le) (rate(a_bucket{result="x{y}"}[$__rate_interval]))) / on (controller) b_total and time() - c"#,
    );
    assert_eq!(found, ["a_bucket", "b_total", "c"].map(String::from).into());
}

#[test]
fn the_dashboard_is_grafana_json_and_its_configmap_carries_it_verbatim() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "database-operator");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let datasource_uid = format!("${{{}}}", datasource["name"].as_str().unwrap());

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate id");
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
        assert!(x + w <= 24 && w > 0 && h > 0, "{grid}");
        for col in x..x + w {
            for row in y..y + h {
                assert!(cells.insert((col, row)), "panels overlap at {col},{row}");
            }
        }
        let kind = panel["type"].as_str().unwrap();
        assert!(
            ["row", "timeseries", "stat", "table", "gauge", "bargauge"].contains(&kind),
            "{kind}"
        );
        if kind == "row" {
            continue;
        }
        titles.push(panel["title"].as_str().unwrap().to_owned());
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(datasource_uid.as_str())
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty());
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(
            ref_ids.len(),
            targets.len(),
            "duplicate refId in {}",
            titles.last().unwrap()
        );
        for target in targets {
            let metrics = metrics_in(target["expr"].as_str().unwrap());
            assert!(!metrics.is_empty());
            assert!(
                metrics.iter().all(|m| m.starts_with("database_operator_")),
                "{metrics:?} are not the operator's"
            );
        }
    }
    // What the issue asks the dashboard to show.
    for wanted in [
        "Reconciles per second",
        "Reconcile errors per second",
        "Reconcile latency",
        "Databases by phase",
        "Backups finished",
    ] {
        assert!(titles.iter().any(|t| t == wanted), "no panel {wanted}");
    }

    let configmap: k8s_openapi::api::core::v1::ConfigMap =
        read_yaml("deploy/monitoring/operator-dashboard-configmap.yaml");
    let data = configmap.data.unwrap();
    let embedded: serde_json::Value =
        serde_json::from_str(&data["operator-dashboard.json"]).unwrap();
    assert_eq!(
        embedded, dashboard,
        "the ConfigMap drifted from operator-dashboard.json"
    );
}

/// prometheus-operator's CRDs, fetched by hack/crds/fetch.sh (run here when
/// the cache lacks them).
fn prometheus_operator_crds() -> Vec<PathBuf> {
    if let Ok(files) = testkit::crds::prometheus_operator_crds() {
        return files;
    }
    let ok = std::process::Command::new("bash")
        .arg(repo("hack/crds/fetch.sh"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "hack/crds/fetch.sh failed");
    testkit::crds::prometheus_operator_crds().unwrap()
}

/// The operator's event recorder on the real API server: an event is an
/// events.k8s.io/v1 Event about its object; the same event again is one
/// more on its series, not another object; another note is another event.
#[tokio::test]
async fn an_event_repeated_counts_on_its_series_and_another_note_is_another_event() {
    use k8s_openapi::api::events::v1::Event;
    use kube::runtime::events::EventType;
    use operator::controller::shared::events::Recorder;

    let env = env().await;
    let client = env.client().await;
    let ns = env.namespace("event-series").await;
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("example.com/v1".into()),
        kind: Some("Database".into()),
        namespace: Some(ns.clone()),
        name: Some("orders".into()),
        uid: Some("0c9a7d4e-0000-4000-8000-000000000001".into()),
        ..Default::default()
    };
    let recorder = Recorder::new(client.clone(), "database-operator", None);
    for note in ["first note", "first note", "first note", "second note"] {
        recorder
            .publish(EventType::Warning, "Tested", note.into(), &regarding)
            .await
            .unwrap();
    }
    assert_eq!(recorder.remembered(), 2);
    let events = Api::<Event>::namespaced(client, &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let seen: BTreeSet<(String, Option<i32>)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.regarding.as_ref(), Some(&regarding));
            assert_eq!(e.reason.as_deref(), Some("Tested"));
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(e.reporting_controller.as_deref(), Some("database-operator"));
            (
                e.note.clone().unwrap_or_default(),
                e.series.as_ref().map(|s| s.count),
            )
        })
        .collect();
    assert_eq!(
        seen,
        BTreeSet::from([("first note".into(), Some(3)), ("second note".into(), None)]),
        "{events:#?}"
    );
}
