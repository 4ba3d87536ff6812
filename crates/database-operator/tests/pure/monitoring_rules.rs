//! The alert rules and dashboards the operator generates, checked by real
//! tools and against real metric names:
//! - `promtool check rules` on each engine's rule file, written from the
//!   builder for a sample Database;
//! - `promtool test rules`: for every alert of every engine, one case where
//!   it fires (labels and annotations compared exactly) and one where it
//!   stays quiet;
//! - every metric a rule or a dashboard query reads is one the pinned
//!   exporter really emits (the lists tests/exporter_metrics.rs captures),
//!   or one of a few documented metrics from elsewhere;
//! - dashboards are Grafana JSON with panels, targets and a data-source
//!   variable.
//!
//! promtool comes from hack/monitoring/install.sh (Debian's `prometheus`);
//! without it these tests fail.

use testkit::exporters;

use std::collections::BTreeMap;
use std::path::Path;

use database_operator_api::v1::Engine;
use database_operator_api::v1::monitor::AlertingSpec;
use exporters::{ENGINES, NOT_CAPTURED, OTHER_SOURCES, committed_list, exporter_module, promtool};
use operator::builders::monitoring::Exporter;
use operator::builders::monitoring::dashboard::dashboard_json;
use operator::builders::monitoring::promql::metric_names;
use operator::builders::monitoring::rules::{ALERTS, RuleInput, rule_groups, runbook_anchor};
use operator::builders::monitoring::types::RuleGroup;
use serde_json::{Value, json};

const NS: &str = "shop";
const DB: &str = "orders";
const RUNBOOKS: &str = "https://example.test/README.md";

fn groups(engine: Engine, alerting: &AlertingSpec) -> Vec<RuleGroup> {
    rule_groups(&RuleInput {
        namespace: NS,
        database: DB,
        engine,
        backups: true,
        alerting,
        runbook_base: RUNBOOKS,
    })
}

/// Writes `{groups: …}` as a rule file (JSON is YAML) and returns its path.
fn write_rule_file(dir: &Path, engine: Engine, groups: &[RuleGroup]) -> std::path::PathBuf {
    let path = dir.join(format!("{engine}.rules.yaml"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    path
}

fn run(args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn generated_rules_pass_promtool_check_rules() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let file = write_rule_file(
            dir.path(),
            engine,
            &groups(engine, &AlertingSpec::default()),
        );
        let (ok, output) = run(&["check", "rules", file.to_str().unwrap()], dir.path());
        assert!(ok, "promtool check rules failed for {engine}:\n{output}");
        assert!(output.contains("SUCCESS"), "{output}");
    }
}

/// One promtool test: input series, an evaluation time, and the alert's
/// expected firing (series labels the alert keeps, and `$value` humanized)
/// or None for "stays quiet".
struct Case {
    alert: &'static str,
    series: Vec<(String, String)>,
    eval: &'static str,
    fires: Option<(Vec<(&'static str, &'static str)>, &'static str)>,
}

fn exporter_labels(extra: &str) -> String {
    format!(
        r#"namespace="{NS}",database="{DB}",pod="{DB}-0",job="{DB}-metrics",instance="10.0.0.7:9100"{extra}"#
    )
}

const EXPORTER_KEPT: &[(&str, &str)] = &[
    ("pod", "orders-0"),
    ("job", "orders-metrics"),
    ("instance", "10.0.0.7:9100"),
];
const POD_KEPT: &[(&str, &str)] = &[("pod", "orders-0")];

fn case(
    alert: &'static str,
    series: &[(&str, String, &str)],
    eval: &'static str,
    fires: Option<(Vec<(&'static str, &'static str)>, &'static str)>,
) -> Case {
    Case {
        alert,
        series: series
            .iter()
            .map(|(metric, labels, values)| (format!("{metric}{{{labels}}}"), values.to_string()))
            .collect(),
        eval,
        fires,
    }
}

/// Both cases (fires, quiet) of every alert of `engine`.
fn cases(engine: Engine) -> Vec<Case> {
    let e = exporter_labels("");
    let up = match engine {
        Engine::Postgresql => "pg_up",
        Engine::Mysql => "mysql_up",
        Engine::Mongodb => "mongodb_up",
    };
    let kept = |extra: &[(&'static str, &'static str)]| {
        let mut v = EXPORTER_KEPT.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut out = vec![
        case(
            "DatabaseDown",
            &[(up, e.clone(), "0x10")],
            "5m",
            Some((kept(&[]), "")),
        ),
        case("DatabaseDown", &[(up, e.clone(), "1x10")], "5m", None),
        case(
            "DatabaseExporterDown",
            &[("up", e.clone(), "0x15")],
            "10m",
            Some((kept(&[]), "")),
        ),
        case(
            "DatabaseExporterDown",
            &[("up", e.clone(), "1x15")],
            "10m",
            None,
        ),
    ];
    // Connections: 90 of 100 in use fires at the default 80%; 10 does not.
    let connections = |in_use: &str| -> Vec<(&'static str, String, String)> {
        match engine {
            Engine::Postgresql => vec![
                (
                    "pg_stat_activity_count",
                    exporter_labels(r#",datname="app",state="active""#),
                    format!("{in_use}x15"),
                ),
                (
                    "pg_stat_activity_count",
                    exporter_labels(r#",datname="app",state="idle""#),
                    "0x15".into(),
                ),
                ("pg_settings_max_connections", e.clone(), "100x15".into()),
            ],
            Engine::Mysql => vec![
                (
                    "mysql_global_status_threads_connected",
                    e.clone(),
                    format!("{in_use}x15"),
                ),
                (
                    "mysql_global_variables_max_connections",
                    e.clone(),
                    "100x15".into(),
                ),
            ],
            Engine::Mongodb => vec![
                (
                    "mongodb_connections",
                    exporter_labels(r#",state="current""#),
                    format!("{in_use}x15"),
                ),
                (
                    "mongodb_connections",
                    exporter_labels(r#",state="available""#),
                    format!("{}x15", 100 - in_use.parse::<i32>().unwrap()),
                ),
            ],
        }
    };
    let owned =
        |v: Vec<(&'static str, String, String)>| -> Vec<(&'static str, String, &'static str)> {
            v.into_iter()
                .map(|(m, l, vals)| (m, l, &*Box::leak(vals.into_boxed_str())))
                .collect()
        };
    out.push(case(
        "DatabaseConnectionsNearLimit",
        &owned(connections("90")),
        "10m",
        Some((POD_KEPT.to_vec(), "90")),
    ));
    out.push(case(
        "DatabaseConnectionsNearLimit",
        &owned(connections("10")),
        "10m",
        None,
    ));
    let lag_metric = match engine {
        Engine::Postgresql => "pg_replication_lag_seconds",
        Engine::Mysql => "mysql_slave_status_seconds_behind_master",
        Engine::Mongodb => "mongodb_mongod_replset_member_replication_lag",
    };
    out.push(case(
        "DatabaseReplicationLagging",
        &[(lag_metric, e.clone(), "60x15")],
        "10m",
        Some((POD_KEPT.to_vec(), "1m 0s")),
    ));
    out.push(case(
        "DatabaseReplicationLagging",
        &[(lag_metric, e.clone(), "5x15")],
        "10m",
        None,
    ));
    let claim = format!(r#"namespace="{NS}",persistentvolumeclaim="data-{DB}-0",node="node-1""#);
    let other_claim =
        format!(r#"namespace="{NS}",persistentvolumeclaim="data-{DB}-archive-0",node="node-1""#);
    out.push(case(
        "DatabaseStorageFilling",
        &[
            ("kubelet_volume_stats_used_bytes", claim.clone(), "90x20"),
            (
                "kubelet_volume_stats_capacity_bytes",
                claim.clone(),
                "100x20",
            ),
        ],
        "15m",
        Some((
            vec![
                ("persistentvolumeclaim", "data-orders-0"),
                ("node", "node-1"),
            ],
            "90",
        )),
    ));
    // Quiet: this Database's volume is half full; another Database's
    // (orders-archive) is full but is not this one's.
    out.push(case(
        "DatabaseStorageFilling",
        &[
            ("kubelet_volume_stats_used_bytes", claim.clone(), "50x20"),
            ("kubelet_volume_stats_capacity_bytes", claim, "100x20"),
            (
                "kubelet_volume_stats_used_bytes",
                other_claim.clone(),
                "99x20",
            ),
            ("kubelet_volume_stats_capacity_bytes", other_claim, "100x20"),
        ],
        "15m",
        None,
    ));
    let backup = format!(r#"namespace="{NS}",database="{DB}""#);
    // Last success at t=0, looked at 28h later (threshold 26h); quiet: a backup every minute.
    out.push(case(
        "DatabaseBackupMissed",
        &[(
            "database_operator_backup_last_success_timestamp_seconds",
            backup.clone(),
            "0x1700",
        )],
        "1680m",
        Some((vec![], "1d 4h 0m 0s")),
    ));
    out.push(case(
        "DatabaseBackupMissed",
        &[(
            "database_operator_backup_last_success_timestamp_seconds",
            backup.clone(),
            "0+60x1700",
        )],
        "1680m",
        None,
    ));
    out.push(case(
        "DatabaseBackupFailed",
        &[
            (
                "database_operator_backups_total",
                format!(r#"{backup},outcome="failed""#),
                "0 0 1 1 1 1",
            ),
            (
                "database_operator_backups_total",
                format!(r#"{backup},outcome="succeeded""#),
                "0 1 1 2 2 3",
            ),
        ],
        "5m",
        Some((vec![("outcome", "failed")], "")),
    ));
    out.push(case(
        "DatabaseBackupFailed",
        &[
            (
                "database_operator_backups_total",
                format!(r#"{backup},outcome="failed""#),
                "2x5",
            ),
            (
                "database_operator_backups_total",
                format!(r#"{backup},outcome="succeeded""#),
                "0 1 2 3 4 5",
            ),
        ],
        "5m",
        None,
    ));
    let container = match engine {
        Engine::Postgresql => "postgres",
        Engine::Mysql => "mysql",
        Engine::Mongodb => "mongodb",
    };
    let pod = format!(r#"namespace="{NS}",pod="{DB}-0",container="{container}""#);
    let container_kept: Vec<(&'static str, &'static str)> =
        vec![("pod", "orders-0"), ("container", container)];
    out.push(case(
        "DatabaseRestarting",
        &[(
            "kube_pod_container_status_restarts_total",
            pod.clone(),
            "0 1 2 3 4 5 6",
        )],
        "6m",
        Some((container_kept.clone(), "")),
    ));
    out.push(case(
        "DatabaseRestarting",
        &[
            (
                "kube_pod_container_status_restarts_total",
                pod.clone(),
                "4x6",
            ),
            // Another Database whose name starts the same restarts a lot.
            (
                "kube_pod_container_status_restarts_total",
                format!(r#"namespace="{NS}",pod="{DB}-archive-0",container="{container}""#),
                "0 2 4 6 8 10 12",
            ),
        ],
        "6m",
        None,
    ));
    let mut crash_kept = container_kept.clone();
    crash_kept.push(("reason", "CrashLoopBackOff"));
    out.push(case(
        "DatabaseCrashLooping",
        &[(
            "kube_pod_container_status_waiting_reason",
            format!(r#"{pod},reason="CrashLoopBackOff""#),
            "1x15",
        )],
        "10m",
        Some((crash_kept, "")),
    ));
    out.push(case(
        "DatabaseCrashLooping",
        &[(
            "kube_pod_container_status_waiting_reason",
            format!(r#"{pod},reason="CrashLoopBackOff""#),
            "0x15",
        )],
        "10m",
        None,
    ));
    match engine {
        Engine::Postgresql => {
            let app = exporter_labels(r#",datname="app",state="active""#);
            let template = exporter_labels(r#",datname="template1",state="active""#);
            out.push(case(
                "DatabaseSlowQueries",
                &[("pg_stat_activity_max_tx_duration", app.clone(), "600x10")],
                "5m",
                Some((vec![("pod", "orders-0"), ("datname", "app")], "10m 0s")),
            ));
            out.push(case(
                "DatabaseSlowQueries",
                &[
                    ("pg_stat_activity_max_tx_duration", app.clone(), "10x10"),
                    ("pg_stat_activity_max_tx_duration", template, "600x10"),
                ],
                "5m",
                None,
            ));
            let app = exporter_labels(r#",datname="app""#);
            out.push(case(
                "DatabaseDeadlocks",
                &[("pg_stat_database_deadlocks", app.clone(), "0 0 1 2 2 2")],
                "5m",
                Some((vec![("pod", "orders-0"), ("datname", "app")], "")),
            ));
            out.push(case(
                "DatabaseDeadlocks",
                &[("pg_stat_database_deadlocks", app, "3x10")],
                "5m",
                None,
            ));
        }
        Engine::Mysql => {
            out.push(case(
                "DatabaseSlowQueries",
                &[("mysql_global_status_slow_queries", e.clone(), "0 0 1 2 2 2")],
                "5m",
                Some((POD_KEPT.to_vec(), "")),
            ));
            out.push(case(
                "DatabaseSlowQueries",
                &[("mysql_global_status_slow_queries", e.clone(), "7x10")],
                "5m",
                None,
            ));
            out.push(case(
                "DatabaseDeadlocks",
                &[(
                    "mysql_global_status_innodb_deadlocks",
                    e.clone(),
                    "0 0 1 2 2 2",
                )],
                "5m",
                Some((POD_KEPT.to_vec(), "")),
            ));
            out.push(case(
                "DatabaseDeadlocks",
                &[("mysql_global_status_innodb_deadlocks", e.clone(), "1x10")],
                "5m",
                None,
            ));
        }
        Engine::Mongodb => {}
    }
    out
}

/// The annotations promtool must see: the rule's templates with `$labels.x`
/// and `$value` filled in.
fn expand(template: &str, labels: &BTreeMap<String, String>, value: &str) -> String {
    let mut out = template
        .replace("{{ $value | humanizeDuration }}", value)
        .replace("{{ $value | humanize }}", value);
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    assert!(!out.contains("{{"), "unexpanded template in {out}");
    out
}

#[test]
fn promtool_unit_tests_cover_every_alert_firing_and_staying_quiet() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let groups = groups(engine, &AlertingSpec::default());
        let file = write_rule_file(dir.path(), engine, &groups);
        let rules: BTreeMap<&str, _> = groups[0]
            .rules
            .iter()
            .map(|r| (r.alert.as_str(), r))
            .collect();
        let cases = cases(engine);
        // Every alert this engine has, both ways.
        for alert in rules.keys() {
            for fires in [true, false] {
                assert!(
                    cases
                        .iter()
                        .any(|c| c.alert == *alert && c.fires.is_some() == fires),
                    "{engine}: no promtool case where {alert} {}",
                    if fires { "fires" } else { "stays quiet" }
                );
            }
        }
        let tests: Vec<Value> = cases
            .iter()
            .map(|c| {
                let rule = rules
                    .get(c.alert)
                    .unwrap_or_else(|| panic!("{engine} has no rule {}", c.alert));
                let exp_alerts: Vec<Value> = match &c.fires {
                    None => vec![],
                    Some((kept, value)) => {
                        let mut labels = rule.labels.clone();
                        for (k, v) in kept {
                            labels.insert(k.to_string(), v.to_string());
                        }
                        let annotations: BTreeMap<String, String> = rule
                            .annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), expand(v, &labels, value)))
                            .collect();
                        vec![json!({"exp_labels": labels, "exp_annotations": annotations})]
                    }
                };
                json!({
                    "interval": "1m",
                    "input_series": c.series.iter().map(|(s, v)| json!({"series": s, "values": v})).collect::<Vec<_>>(),
                    "alert_rule_test": [{"eval_time": c.eval, "alertname": c.alert, "exp_alerts": exp_alerts}],
                })
            })
            .collect();
        let test_file = dir.path().join(format!("{engine}.test.yaml"));
        std::fs::write(
            &test_file,
            serde_json::to_string_pretty(&json!({
                "rule_files": [file.file_name().unwrap().to_str().unwrap()],
                "evaluation_interval": "1m",
                "tests": tests,
            }))
            .unwrap(),
        )
        .unwrap();
        let (ok, output) = run(&["test", "rules", test_file.to_str().unwrap()], dir.path());
        assert!(ok, "promtool test rules failed for {engine}:\n{output}");
        assert!(output.contains("SUCCESS"), "{output}");
    }
}

#[test]
fn thresholds_labels_and_disabled_alerts_reach_the_rules() {
    let alerting = AlertingSpec {
        enabled: true,
        disabled_alerts: vec!["DatabaseDeadlocks".into()],
        connections_percent: Some(65),
        storage_percent: Some(70),
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        ..Default::default()
    };
    let groups = groups(Engine::Postgresql, &alerting);
    let rules = &groups[0].rules;
    assert!(rules.iter().all(|r| r.alert != "DatabaseDeadlocks"));
    let find = |name: &str| rules.iter().find(|r| r.alert == name).unwrap();
    assert!(find("DatabaseConnectionsNearLimit").expr.ends_with("> 65"));
    assert!(find("DatabaseStorageFilling").expr.ends_with("> 70"));
    for rule in rules {
        assert_eq!(rule.labels["team"], "payments");
        assert!(["critical", "warning"].contains(&rule.labels["severity"].as_str()));
        assert!(rule.annotations.contains_key("summary"));
        assert!(rule.annotations.contains_key("description"));
        assert_eq!(
            rule.annotations["runbook_url"],
            format!("{RUNBOOKS}#{}", runbook_anchor(&rule.alert))
        );
    }
}

/// Where a metric may come from, or None.
fn source_of(
    engine: Engine,
    metric: &str,
    emitted: &std::collections::BTreeSet<String>,
) -> Option<&'static str> {
    if emitted.contains(metric) {
        return Some("captured from the exporter");
    }
    if let Some((_, source)) = OTHER_SOURCES.iter().find(|(m, _)| *m == metric) {
        return Some(source);
    }
    NOT_CAPTURED
        .iter()
        .find(|n| n.engine == engine && n.metric == metric)
        .map(|n| n.why)
}

#[test]
fn every_metric_in_rules_and_dashboards_is_one_the_exporter_emits() {
    for engine in ENGINES {
        let emitted = committed_list(Exporter::of(engine));
        let mut queries: Vec<String> = groups(engine, &AlertingSpec::default())[0]
            .rules
            .iter()
            .map(|r| r.expr.clone())
            .collect();
        let dashboard = dashboard_json(NS, DB, engine);
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                queries.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
        let mut unknown = Vec::new();
        for query in &queries {
            for metric in metric_names(query) {
                if source_of(engine, &metric, &emitted).is_none() {
                    unknown.push(format!("{metric} (in {query})"));
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "{engine}: metrics no source emits:\n{}",
            unknown.join("\n")
        );
    }
}

#[test]
fn metrics_the_test_servers_cannot_produce_are_named_in_the_pinned_exporter_source() {
    for n in NOT_CAPTURED {
        let module = exporter_module(n.engine);
        let version = Exporter::of(n.engine).version();
        let out = std::process::Command::new("go")
            .args(["mod", "download", "-json", &format!("{module}@{version}")])
            .current_dir(std::env::temp_dir())
            .env("GOFLAGS", "-mod=mod")
            .output()
            .expect("go mod download");
        let info: Value = serde_json::from_slice(&out.stdout).expect("go mod download -json");
        let dir = info["Dir"].as_str().expect("module directory");
        let source = std::fs::read_to_string(Path::new(dir).join(n.file)).unwrap();
        for needle in n.needles {
            assert!(
                source.contains(needle),
                "{}: {module}@{version} {} lacks {needle}",
                n.metric,
                n.file
            );
        }
        // And the captured list really lacks it (else it belongs there).
        assert!(!committed_list(Exporter::of(n.engine)).contains(n.metric));
    }
}

#[test]
fn dashboards_are_grafana_json_with_panels_targets_and_a_datasource_variable() {
    for engine in ENGINES {
        let d = dashboard_json(NS, DB, engine);
        // Round-trips as JSON text, as the ConfigMap carries it.
        let d: Value = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert!(d["uid"].as_str().unwrap().len() <= 40);
        assert!(d["title"].as_str().unwrap().contains(DB));
        assert!(d["schemaVersion"].as_i64().unwrap() >= 36);
        let variables = d["templating"]["list"].as_array().unwrap();
        assert!(variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"));
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 5, "{engine}: {} panels", panels.len());
        let mut ids = std::collections::BTreeSet::new();
        for p in panels {
            assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate panel id");
            assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(["stat", "timeseries"].contains(&p["type"].as_str().unwrap()));
            assert_eq!(p["datasource"]["uid"], "${datasource}");
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_u64());
            }
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty());
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}");
                assert!(t["refId"].as_str().is_some());
                let expr = t["expr"].as_str().unwrap();
                assert!(expr.contains(&format!("namespace=\"{NS}\"")), "{expr}");
            }
        }
    }
}

#[test]
fn every_alert_has_a_runbook_section_in_the_docs() {
    let runbooks = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src/runbooks.md"),
    )
    .unwrap();
    for alert in ALERTS {
        assert!(
            runbooks.contains(&format!("\n## {alert}\n")),
            "docs/src/runbooks.md has no runbook heading `## {alert}`"
        );
    }
}
