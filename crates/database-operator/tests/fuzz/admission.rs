//! Random and hostile specs of all four kinds against the real API server
//! and the builders (see the crate's doc).

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;

use database_operator_api::v1::backup::DatabaseBackup;
use database_operator_api::v1::monitor::DatabaseMonitor;
use database_operator_api::v1::user::DatabaseUser;
use database_operator_api::v1::{Database, Engine};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, NamespaceResourceScope};
use kube::{Api, Client, CustomResourceExt, Resource};
use operator::builders::monitoring::dashboard::dashboard_config_map;
use operator::builders::monitoring::rules::{RuleInput, prometheus_rule};
use operator::builders::monitoring::service_monitor::service_monitor;
use operator::builders::topology::Topology;
use operator::builders::{Desired, backup_job, credentials, monitoring, secret};
use operator::engine::driver_of;
use operator::users::{Password, UserSpec, login_admin};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use testkit::Cluster;

const NS: &str = "fuzz";
const DEFAULT_CASES: usize = 2_000;
const DEFAULT_SEED: u64 = 0x5eed_2026_1201;
/// Requests in flight at once.
const PARALLEL: usize = 8;

/// Strings that have broken parsers, SQL, shells and YAML before.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "'; DROP TABLE users; --",
    "\" OR 1=1 --",
    "$(reboot)",
    "`id`",
    "a;rm -rf /",
    "../../etc/passwd",
    "%s%s%n",
    "\n",
    "line\nbreak",
    "tab\tin",
    "nul\u{0}byte",
    "Ω≈ç√∫",
    "🐘",
    "-1",
    "0",
    "1e309",
    "0x10",
    "NaN",
    "null",
    "true",
    "*",
    "{{ .Values }}",
    "${HOME}",
    "a\\b",
    "UPPER",
    "-leading-dash",
    "trailing-dash-",
    "x.y",
    "0 0 31 2 *",
    "* * * * * *",
    "@every 1s",
    "1Pi",
    "-5Gi",
    "0Gi",
    "100m",
    "1.5Gi",
];

/// Values a real user writes, so mutations also reach deep into valid specs.
const PLAUSIBLE: &[&str] = &[
    "postgresql",
    "mysql",
    "mongodb",
    "mariadb",
    "16.4",
    "8.4",
    "7.0",
    "11.4",
    "1Gi",
    "5Gi",
    "standard",
    "0 2 * * *",
    "*/15 * * * *",
    "7d",
    "12h",
    "4w",
    "3",
    "agent",
    "velero",
    "Retain",
    "Delete",
    "Manual",
    "Automatic",
    "readOnly",
    "readWrite",
    "admin",
    "app",
    "app_user",
    "team-a",
    "default",
    "velero",
    "backups",
    "us-east-1",
    "http://127.0.0.1:7070",
    "30s",
    "1m",
    "500m",
    "postgresql-sample",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A JSON value: hostile, plausible, or of a type the schema may not want.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(HOSTILE).prop_map(|s| json!(s)),
        4 => prop::sample::select(PLAUSIBLE).prop_map(|s| json!(s)),
        1 => "[a-zA-Z0-9._ -]{0,80}".prop_map(|s| json!(s)),
        1 => "[a-z0-9-]{250,300}".prop_map(|s| json!(s)),
        2 => any::<i64>().prop_map(|n| json!(n)),
        2 => (-3i64..12).prop_map(|n| json!(n)),
        1 => any::<f64>().prop_filter("JSON numbers", |f| f.is_finite()).prop_map(|f| json!(f)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        1 => Just(Value::Null),
        1 => Just(json!({})),
        1 => prop::collection::vec(prop::sample::select(PLAUSIBLE), 0..3).prop_map(|v| json!(v)),
        1 => prop::collection::vec(prop::sample::select(HOSTILE), 1..3).prop_map(|v| json!(v)),
    ]
}

/// Every path into `schema` (an OpenAPI v3 schema as JSON) under `prefix`:
/// objects' properties, maps' keys and arrays' first items.
fn paths(schema: &Value, prefix: &[String], out: &mut Vec<(Vec<String>, Value)>) {
    if prefix.len() > 8 {
        return;
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, inner) in properties {
            let mut path = prefix.to_vec();
            path.push(name.clone());
            out.push((path.clone(), inner.clone()));
            paths(inner, &path, out);
        }
    }
    if schema["additionalProperties"].is_object() {
        let mut path = prefix.to_vec();
        path.push("fuzzed-key".into());
        out.push((path.clone(), schema["additionalProperties"].clone()));
        paths(&schema["additionalProperties"], &path, out);
    }
    if schema["items"].is_object() {
        let mut path = prefix.to_vec();
        path.push("0".into());
        out.push((path.clone(), schema["items"].clone()));
        paths(&schema["items"], &path, out);
    }
}

/// The paths of a kind, each with its schema: its spec's, and the
/// object's name.
fn kind_paths<K: CustomResourceExt>() -> Vec<(Vec<String>, Value)> {
    let crd = serde_json::to_value(K::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut out = vec![
        (
            vec!["metadata".to_owned(), "name".to_owned()],
            json!({"type": "string"}),
        ),
        (vec!["spec".to_owned()], schema.clone()),
    ];
    paths(schema, &["spec".to_owned()], &mut out);
    out
}

/// A value of the type `schema` declares (one of its enum's, a small
/// number, a plausible string): mutations that keep a spec well-typed, so
/// that many cases pass admission and reach the builders.
fn typed(schema: &Value) -> BoxedStrategy<Value> {
    if let Some(values) = schema["enum"].as_array().filter(|v| !v.is_empty()) {
        return prop::sample::select(values.clone()).boxed();
    }
    match schema["type"].as_str() {
        Some("boolean") => any::<bool>().prop_map(|b| json!(b)).boxed(),
        Some("integer") => prop_oneof![4 => 0i64..6, 1 => -2i64..200]
            .prop_map(|n| json!(n))
            .boxed(),
        Some("number") => (0f64..100.0).prop_map(|n| json!(n)).boxed(),
        Some("array") => Just(json!([])).boxed(),
        Some("object") => Just(json!({})).boxed(),
        _ => prop::sample::select(PLAUSIBLE)
            .prop_map(|s| json!(s))
            .boxed(),
    }
}

/// Sets `path` in `object` to `value` (None removes it), making the
/// objects and arrays on the way.
fn set(object: &mut Value, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for segment in parents {
        at = match segment.parse::<usize>() {
            Ok(_) => {
                if !at.is_array() || at.as_array().unwrap().is_empty() {
                    *at = json!([{}]);
                }
                &mut at.as_array_mut().unwrap()[0]
            }
            Err(_) => {
                if !at.is_object() {
                    *at = json!({});
                }
                at.as_object_mut()
                    .unwrap()
                    .entry(segment.clone())
                    .or_insert_with(|| json!({}))
            }
        };
    }
    match (last.parse::<usize>(), value) {
        (Ok(_), Some(v)) => *at = json!([v]),
        (Ok(_), None) => *at = json!([]),
        (Err(_), value) => {
            if !at.is_object() {
                *at = json!({});
            }
            let map = at.as_object_mut().unwrap();
            match value {
                Some(v) => {
                    map.insert(last.clone(), v);
                }
                None => {
                    map.remove(last);
                }
            }
        }
    }
}

/// `cases` mutated copies of `bases`, from one seeded generator.
fn generate(
    bases: &[Value],
    kind_paths: &[(Vec<String>, Value)],
    cases: usize,
    seed: u64,
) -> Vec<Value> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let schemas: Vec<Value> = kind_paths.iter().map(|(_, s)| s.clone()).collect();
    let mutation = (0..kind_paths.len()).prop_flat_map(move |i| {
        let value = prop_oneof![2 => typed(&schemas[i]), 1 => value()];
        (Just(i), prop::option::weighted(0.85, value))
    });
    let case = (0..bases.len(), prop::collection::vec(mutation, 1..=4));
    (0..cases)
        .map(|_| {
            let (base, mutations) = case.new_tree(&mut runner).unwrap().current();
            let mut object = bases[base].clone();
            for (path, value) in mutations {
                set(&mut object, &kind_paths[path].0, value);
            }
            object["metadata"]["namespace"] = json!(NS);
            object
        })
        .collect()
}

/// What became of one case.
enum Outcome {
    Accepted,
    Refused,
}

/// Whether a refusal names the field it refuses.
fn names_a_field(status: &kube::core::Status) -> bool {
    let in_causes = status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| !c.field.is_empty()));
    // A wrong JSON type is refused by the API server's decoder, which names
    // the Go field (`ObjectMeta.name`).
    in_causes
        || status.message.contains("spec")
        || status.message.contains("metadata.name")
        || status.message.contains("ObjectMeta.")
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// A server-side dry-run create of a child the builders made.
async fn child<K>(client: &Client, object: &K) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = object.meta().namespace.clone().unwrap_or_else(|| NS.into());
    Api::<K>::namespaced(client.clone(), &namespace)
        .create(&dry_run(), object)
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the API server refused the child {} {:?}: {e}",
                K::kind(&()),
                object.meta().name
            )
        })
}

/// Runs `build` and turns a panic into an error naming `what`.
fn no_panic<T>(what: &str, build: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(build)).map_err(|p| {
        let text = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(ToString::to_string))
            .unwrap_or_default();
        format!("{what} panicked: {text}")
    })
}

/// The children of an accepted Database, each dry-run on the API server.
async fn database_children(client: &Client, db: Database) -> Result<(), String> {
    let desired = no_panic("building the Database's children", || {
        Desired::build_with(
            &db,
            "database-operator:0.1.0",
            None,
            Topology::of(&db, None),
        )
        .isolate(&db, "database-operator", true)
    })?;
    let (admin, replication, login, monitor) = no_panic("building its Secrets", || {
        let driver = driver_of(&db.spec);
        (
            secret::admin_secret(&db, driver, secret::generate_password()),
            secret::replication_secret(&db, secret::generate_password()),
            monitoring::exporter::monitoring_secret(&db, secret::generate_password()),
            monitoring::owned_monitor(&db),
        )
    })?;
    child(client, &desired.config_map).await?;
    child(client, &desired.statefulset).await?;
    for service in desired.all_services() {
        child(client, service).await?;
    }
    child(client, &desired.pdb).await?;
    for cronjob in desired.backup.iter().chain(&desired.verify) {
        child(client, cronjob).await?;
    }
    if let Some(policy) = &desired.network_policy {
        child(client, policy).await?;
    }
    if let Some(access) = &desired.instance_access {
        child(client, &access.service_account).await?;
        child(client, &access.role).await?;
        child(client, &access.role_binding).await?;
    }
    if let Some(schedule) = &desired.velero {
        // It lives in Velero's namespace, which this cluster does not have:
        // its validity is judged in ours.
        let mut schedule = schedule.clone();
        schedule.meta_mut().namespace = Some(NS.into());
        child(client, &schedule).await?;
    }
    if let Some(monitoring) = &desired.monitoring {
        child(client, &monitoring.service).await?;
        child(client, &monitor).await?;
    }
    for secret in [admin, replication, login] {
        child::<Secret>(client, &secret).await?;
    }
    Ok(())
}

/// What the operator makes of an accepted DatabaseUser, for a Database of
/// each engine: the engine's own checks (which may refuse, naming the
/// field, but must not panic) and the credentials Secret.
async fn user_children(client: &Client, user: DatabaseUser) -> Result<(), String> {
    for engine in Engine::ALL {
        let db = fixture(engine);
        let password = Password::new(secret::generate_password());
        let valid = no_panic("the engine's checks of a user", || {
            login_admin(engine)
                .validate(&UserSpec::of(&user.spec, &password))
                .is_ok()
        })?;
        if valid {
            let secret = no_panic("building the credentials Secret", || {
                credentials::credentials_secret(&user, &db, NS, &password)
            })?;
            child(client, &secret).await?;
        }
    }
    Ok(())
}

/// The Job of an accepted on-demand DatabaseBackup, for a Database that
/// backs up to S3.
async fn backup_children(client: &Client, backup: DatabaseBackup) -> Result<(), String> {
    let mut db = fixture(Engine::Postgresql);
    db.spec.backup = Some(
        serde_json::from_value(json!({"enabled": true, "destination": {"s3": {
            "bucket": "backups", "endpoint": "http://127.0.0.1:7070",
            "credentialsSecret": {"name": "s3-credentials"}}}}))
        .unwrap(),
    );
    let s3 = db
        .spec
        .backup
        .as_ref()
        .unwrap()
        .destination
        .clone()
        .unwrap()
        .s3
        .unwrap();
    let job = no_panic("building the backup Job", || {
        backup_job::on_demand_job(&backup, &db, &s3, "database-operator:0.1.0")
    })?
    .ok_or("an accepted DatabaseBackup without a uid")?;
    child(client, &job).await
}

/// What the operator makes of an accepted DatabaseMonitor.
async fn monitor_children(client: &Client, monitor: DatabaseMonitor) -> Result<(), String> {
    let engine = Engine::Postgresql;
    let (scrape, rules, dashboard) = no_panic("building the monitor's children", || {
        let input = RuleInput {
            namespace: NS,
            database: &monitor.spec.database_ref.name,
            engine,
            backups: true,
            alerting: &monitor.spec.alerting,
            runbook_base: "https://example.com/runbooks.md",
        };
        (
            service_monitor(&monitor),
            prometheus_rule(&monitor, &input),
            dashboard_config_map(&monitor, engine),
        )
    })?;
    child(client, &scrape).await?;
    child(client, &rules).await?;
    child(client, &dashboard).await
}

fn fixture(engine: Engine) -> Database {
    let version = match engine {
        Engine::Postgresql => "16.4",
        Engine::Mysql => "8.4",
        Engine::Mongodb => "7.0",
    };
    let mut db = operator::fixtures::database("db", engine, version, 1);
    db.metadata.namespace = Some(NS.into());
    db.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    db
}

/// Sends one case of kind `K` to the API server and, if accepted, through
/// `children`.
async fn check<K, F, Fut>(client: &Client, case: Value, children: F) -> Result<Outcome, String>
where
    K: Resource<DynamicType = ()> + CustomResourceExt + DeserializeOwned,
    F: FnOnce(K) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let resource = ApiResource::erase::<K>(&());
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource);
    // The raw JSON, as any client could send it, types and all.
    let request = kube::core::Request::new(api.resource_url())
        .create(&dry_run(), serde_json::to_vec(&case).unwrap())
        .unwrap();
    match client.request::<Value>(request).await {
        Ok(accepted) => {
            let typed: K = serde_json::from_value(accepted)
                .map_err(|e| format!("accepted, but the operator cannot read it: {e}"))?;
            children(typed).await?;
            Ok(Outcome::Accepted)
        }
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422) => {
            if names_a_field(&status) {
                Ok(Outcome::Refused)
            } else {
                Err(format!(
                    "refused without naming the field: {}",
                    status.message
                ))
            }
        }
        Err(e) => Err(format!("the API server failed: {e}")),
    }
}

/// The samples of one kind, from `deploy/samples` (and friends).
fn samples(kind: &str) -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/samples");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in serde_saphyr::from_str_multiple::<Value, Vec<_>>(&text).unwrap() {
                    if doc["kind"] == kind {
                        out.push(doc);
                    }
                }
            }
        }
    }
    out
}

/// A DatabaseMonitor as the operator makes one for a Database.
fn monitor_base() -> Value {
    let db = fixture(Engine::Postgresql);
    let mut monitor = serde_json::to_value(monitoring::owned_monitor(&db)).unwrap();
    monitor["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "namespace");
    monitor
}

/// Runs every case of one kind; returns (accepted, refused) or the failures.
async fn run_kind<K, F, Fut>(
    client: &Client,
    bases: Vec<Value>,
    cases: usize,
    seed: u64,
    children: F,
) -> (usize, usize, Vec<String>)
where
    K: Resource<DynamicType = ()> + CustomResourceExt + DeserializeOwned,
    F: Fn(Client, K) -> Fut + Copy,
    Fut: Future<Output = Result<(), String>>,
{
    assert!(!bases.is_empty(), "no sample of {}", K::kind(&()));
    let generated = generate(&bases, &kind_paths::<K>(), cases, seed);
    let outcomes: Vec<(Value, Result<Outcome, String>)> = futures::stream::iter(generated)
        .map(|case| async move {
            let outcome =
                check::<K, _, _>(client, case.clone(), |k| children(client.clone(), k)).await;
            (case, outcome)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut accepted = 0;
    let mut refused = 0;
    let mut failures = Vec::new();
    for (case, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Accepted) => accepted += 1,
            Ok(Outcome::Refused) => refused += 1,
            Err(why) => failures.push(format!("{why}\n  case: {case}")),
        }
    }
    (accepted, refused, failures)
}

#[tokio::test]
async fn hostile_specs_of_every_kind_are_refused_naming_the_field_or_build_accepted_children() {
    let cases = env_or("FUZZ_CASES", DEFAULT_CASES);
    let seed = env_or("FUZZ_SEED", DEFAULT_SEED);
    let cluster = Cluster::start().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    testkit::harness::install_crds(&client).await.unwrap();
    testkit::harness::install_crd_files(
        &client,
        &testkit::harness::prometheus_operator_crds(),
        "fuzz",
    )
    .await
    .unwrap();
    testkit::harness::install_velero_schedule_crd(&client, "fuzz")
        .await
        .unwrap();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut tally = |kind: &str, (accepted, refused, failed): (usize, usize, Vec<String>)| {
        report.push(format!(
            "{kind}: {} cases, {accepted} accepted (children dry-run), {refused} refused naming the field, {} failed",
            accepted + refused + failed.len(),
            failed.len()
        ));
        failures.extend(failed.into_iter().map(|f| format!("{kind}: {f}")));
    };
    let c = &client;
    tally(
        "Database",
        run_kind::<Database, _, _>(
            c,
            samples("Database"),
            cases,
            seed,
            |client, db| async move { database_children(&client, db).await },
        )
        .await,
    );
    tally(
        "DatabaseUser",
        run_kind::<DatabaseUser, _, _>(
            c,
            samples("DatabaseUser"),
            cases,
            seed,
            |client, user| async move { user_children(&client, user).await },
        )
        .await,
    );
    tally(
        "DatabaseBackup",
        run_kind::<DatabaseBackup, _, _>(
            c,
            samples("DatabaseBackup"),
            cases,
            seed,
            |client, backup| async move { backup_children(&client, backup).await },
        )
        .await,
    );
    tally(
        "DatabaseMonitor",
        run_kind::<DatabaseMonitor, _, _>(
            c,
            vec![monitor_base()],
            cases,
            seed,
            |client, monitor| async move { monitor_children(&client, monitor).await },
        )
        .await,
    );
    println!("fuzzed with seed {seed:#x} (FUZZ_SEED), {cases} cases per kind (FUZZ_CASES):");
    for line in &report {
        println!("  {line}");
    }
    assert!(
        failures.is_empty(),
        "{} failures (seed {seed:#x}); the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
