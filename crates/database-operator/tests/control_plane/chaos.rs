//! Chaos, first part (issue 13): the operator is killed with SIGKILL ten
//! times, at moments drawn from a seed, while a hundred Databases are
//! created, scaled and edited, their children are deleted and edited by
//! hand, and a second client writes its own values into fields the
//! operator owns. Nothing is given a chance to finish: a kill cuts a
//! reconcile between two writes, and the new operator starts from what it
//! finds.
//!
//! At the end every Database is Running with exactly the children its spec
//! calls for (a table written here by hand, not the builders' output), no
//! child is left without a living owner, every hand edit and rival value is
//! undone, no admin password ever changed (watched throughout), the
//! operator never panicked, and it writes nothing at steady state.
//!
//! Repeatable: `CHAOS_SEED` picks the run (printed), `CHAOS_DATABASES` its
//! size (default 100). Runs with its own cluster and operator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::monitor::DatabaseMonitor;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use testkit::harness::{self, Env};

const DEFAULT_SEED: u64 = 0xc4a0_5013;
const KILLS: usize = 10;
/// Actions per Database: one creation, and about two edits, hand
/// deletions or rival writes.
const STEPS_PER_DATABASE: usize = 3;
const WRITES: &str = "database_operator_api_writes_total";
const RECONCILES: &str = "database_operator_reconciliations_total";
/// Longer than the failover delay (30 s) and the slowest attempt to reach
/// a server that is not there (the MongoDB driver gives up after 10 s).
const QUIET_AFTER_FAILOVER_DELAY: Duration = Duration::from_secs(35);
/// A value no operator would write: the rival client's mark.
const RIVAL: &str = "written-by-a-rival";
const RIVAL_PORT: i32 = 1111;

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the test asked of one Database, kept as it goes.
#[derive(Clone, Debug)]
struct Wanted {
    engine: &'static str,
    replicas: i32,
    monitoring: bool,
    /// Whether monitoring was ever turned on: see [`optional_child`].
    ever_monitored: bool,
}

const ENGINES: [(&str, &str); 3] = [("postgresql", "16.4"), ("mysql", "8.4"), ("mongodb", "7.0")];

fn database(name: &str, engine: &str, version: &str) -> Database {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1",
        "kind": "Database",
        "metadata": {"name": name},
        "spec": {"engine": engine, "version": version, "replicas": 1, "storage": {"size": "1Gi"}},
    }))
    .unwrap()
}

/// The children a Database has for what was asked of it, by kind and
/// name: read off a running cluster and written down here.
fn expected_children(name: &str, wanted: &Wanted) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &'static str, suffix: &str| {
        out.insert((kind, format!("{name}{suffix}")));
    };
    add("StatefulSet", "");
    add("PodDisruptionBudget", "");
    add("NetworkPolicy", "");
    add("Service", "-headless");
    add("Service", "-primary");
    add("ConfigMap", "-config");
    add("Secret", "-secret");
    add("Secret", "-replication");
    if wanted.replicas > 1 {
        add("Service", "-readonly");
    }
    // PostgreSQL and MySQL members run under the in-pod supervisor, which
    // has its own API access.
    if wanted.engine != "mongodb" {
        add("ServiceAccount", "-instance");
        add("Role", "-instance");
        add("RoleBinding", "-instance");
    }
    if wanted.monitoring {
        add("Service", "-metrics");
        add("ConfigMap", "-dashboard");
        add("DatabaseMonitor", "");
    }
    if wanted.monitoring {
        add("Secret", "-monitoring");
    }
    out
}

/// A child that may or may not be there: the monitoring login's Secret of
/// a Database whose monitoring was on for a while and is off now. It stays
/// once made (the login still exists in the database), but monitoring may
/// have been turned off again before the operator made it (a CI run found
/// one).
fn optional_child(name: &str, wanted: &Wanted) -> Option<(&'static str, String)> {
    (wanted.ever_monitored && !wanted.monitoring).then(|| ("Secret", format!("{name}-monitoring")))
}

/// Every object of kind `K` in `ns`, as (kind, name, owning Database's
/// name and uid, if a Database owns it).
async fn owned<K>(
    client: &Client,
    ns: &str,
    kind: &'static str,
) -> Vec<(&'static str, K, Option<(String, String)>)>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|object| {
            // A Database's dashboard belongs to its DatabaseMonitor.
            let owner = object
                .owner_references()
                .iter()
                .find(|o| o.kind == "Database" || o.kind == "DatabaseMonitor")
                .map(|o| (o.name.clone(), o.uid.clone()));
            (kind, object, owner)
        })
        .collect()
}

/// What differs from the table: missing, extra (duplicates included) and
/// orphaned children, and rival values still in place.
async fn differences(client: &Client, ns: &str, wanted: &BTreeMap<String, Wanted>) -> Vec<String> {
    let uids: BTreeMap<String, String> = Api::<Database>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|db| (db.name_any(), db.uid().unwrap_or_default()))
        .collect();
    // The monitors the operator made for them (named as their Database).
    let monitors: BTreeMap<String, String> = Api::<DatabaseMonitor>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|m| (m.name_any(), m.uid().unwrap_or_default()))
        .collect();
    let mut found: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    let mut problems = Vec::new();
    // What the rival left in place, apart from the children's ownership.
    let mut undone = Vec::new();
    let mut record = |kind: &'static str, name: String, owner: Option<(String, String)>| {
        match owner {
            Some((db, uid)) if uids.get(&db) == Some(&uid) || monitors.get(&db) == Some(&uid) => {
                found.entry(db).or_default().push((kind, name));
            }
            Some((db, uid)) => problems.push(format!(
                "orphan: {kind} {name} owned by {db} ({uid}), which does not exist"
            )),
            // What the cluster puts in every namespace.
            None if (kind, name.as_str()) == ("ConfigMap", "kube-root-ca.crt")
                || (kind, name.as_str()) == ("ServiceAccount", "default") => {}
            None => problems.push(format!("{kind} {name} has no owner")),
        }
    };
    for (kind, sts, owner) in owned::<StatefulSet>(client, ns, "StatefulSet").await {
        let replicas = sts.spec.replicas;
        if let Some((db, _)) = &owner
            && let Some(w) = wanted.get(db)
            && replicas != Some(w.replicas)
        {
            undone.push(format!(
                "StatefulSet {db} has {replicas:?} replicas, not {}",
                w.replicas
            ));
        }
        record(kind, sts.name_any(), owner);
    }
    for (kind, svc, owner) in owned::<Service>(client, ns, "Service").await {
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        if ports
            .iter()
            .any(|p| p.target_port == Some(IntOrString::Int(RIVAL_PORT)))
        {
            undone.push(format!(
                "Service {} keeps the rival's target port",
                svc.name_any()
            ));
        }
        record(kind, svc.name_any(), owner);
    }
    for (kind, cm, owner) in owned::<ConfigMap>(client, ns, "ConfigMap").await {
        if cm.data.iter().flatten().any(|(_, v)| v == RIVAL) {
            undone.push(format!(
                "ConfigMap {} keeps the rival's value",
                cm.name_any()
            ));
        }
        record(kind, cm.name_any(), owner);
    }
    for (kind, o, owner) in owned::<Secret>(client, ns, "Secret").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<PodDisruptionBudget>(client, ns, "PodDisruptionBudget").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<NetworkPolicy>(client, ns, "NetworkPolicy").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<ServiceAccount>(client, ns, "ServiceAccount").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<Role>(client, ns, "Role").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<RoleBinding>(client, ns, "RoleBinding").await {
        record(kind, o.name_any(), owner);
    }
    for (kind, o, owner) in owned::<DatabaseMonitor>(client, ns, "DatabaseMonitor").await {
        record(kind, o.name_any(), owner);
    }
    problems.extend(undone);
    for (name, w) in wanted {
        let expected = expected_children(name, w);
        let mut seen = found.remove(name).unwrap_or_default();
        seen.sort();
        let mut unique: BTreeSet<_> = seen.iter().cloned().collect();
        if unique.len() != seen.len() {
            problems.push(format!("{name}: duplicate children {seen:?}"));
        }
        if let Some(optional) = optional_child(name, w) {
            unique.remove(&optional);
        }
        if unique != expected {
            problems.push(format!(
                "{name} ({w:?}): missing {:?}, extra {:?}",
                expected.difference(&unique).collect::<Vec<_>>(),
                unique.difference(&expected).collect::<Vec<_>>()
            ));
        }
    }
    for (db, children) in found {
        problems.push(format!(
            "children of a Database the test never made, {db}: {children:?}"
        ));
    }
    problems
}

/// Every Database Running for its current spec, with its StatefulSet's
/// replicas as asked.
async fn not_yet_running(dbs: &Api<Database>, wanted: &BTreeMap<String, Wanted>) -> Vec<String> {
    let list = dbs.list(&ListParams::default()).await.unwrap().items;
    let mut waiting: Vec<String> = list
        .iter()
        .filter(|db| {
            let status = db.status.as_ref();
            status.and_then(|s| s.phase) != Some(Phase::Running)
                || status.and_then(|s| s.observed_generation) != db.metadata.generation
                || status.and_then(|s| s.ready_replicas)
                    != wanted.get(&db.name_any()).map(|w| w.replicas)
        })
        .map(|db| {
            let status = db.status.as_ref();
            format!(
                "{} {:?} observed {:?} of {:?}, ready {:?}",
                db.name_any(),
                status.and_then(|s| s.phase),
                status.and_then(|s| s.observed_generation),
                db.metadata.generation,
                status.and_then(|s| s.ready_replicas)
            )
        })
        .collect();
    if list.len() != wanted.len() {
        waiting.push(format!(
            "{} Databases listed, {} made",
            list.len(),
            wanted.len()
        ));
    }
    waiting
}

/// Watches every admin Secret of `ns` from the start: the first password
/// seen for each, and every change after it.
fn watch_admin_passwords(
    client: &Client,
    ns: &str,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let changes: Arc<Mutex<Vec<String>>> = Arc::default();
    let first: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let seen = changes.clone();
    let task = tokio::spawn(
        watcher(
            Api::<Secret>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .applied_objects()
        .for_each(move |secret| {
            if let Ok(secret) = secret
                && secret.name_any().ends_with("-secret")
                && let Some(password) = secret.data.as_ref().and_then(|d| d.get("password"))
            {
                let mut first = first.lock().unwrap();
                let was = first
                    .entry(secret.name_any())
                    .or_insert_with(|| password.0.clone());
                if *was != password.0 {
                    seen.lock().unwrap().push(format!(
                        "{} changed its password (resourceVersion {:?})",
                        secret.name_any(),
                        secret.resource_version()
                    ));
                }
            }
            futures::future::ready(())
        }),
    );
    (changes, task)
}

/// One hand edit or rival write on a child of `name`; errors are part of
/// the chaos (the child may not exist yet, or be gone) and ignored.
async fn meddle(
    client: &Client,
    ns: &str,
    name: &str,
    engine: &str,
    rng: &mut StdRng,
) -> &'static str {
    let port = match engine {
        "postgresql" => 5432,
        "mysql" => 3306,
        _ => 27017,
    };
    let rival = PatchParams::apply("chaos-rival").force();
    match rng.random_range(0..6) {
        0 => {
            let _ = Api::<Service>::namespaced(client.clone(), ns)
                .delete(&format!("{name}-primary"), &DeleteParams::default())
                .await;
            "deleted its primary Service"
        }
        1 => {
            let _ = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .delete(&format!("{name}-config"), &DeleteParams::default())
                .await;
            "deleted its ConfigMap"
        }
        2 => {
            let _ = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await;
            "deleted its NetworkPolicy"
        }
        3 => {
            // Server-side apply, forced: the rival takes the field over.
            let patch = serde_json::json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name}, "spec": {"replicas": 3},
            });
            let _ = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &rival, &Patch::Apply(&patch))
                .await;
            "a rival set its StatefulSet's replicas"
        }
        4 => {
            // The rival takes over the target of the operator's own port.
            let service = format!("{name}-primary");
            let patch = serde_json::json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
                "spec": {"ports": [{"port": port, "protocol": "TCP", "targetPort": RIVAL_PORT}]},
            });
            let _ = Api::<Service>::namespaced(client.clone(), ns)
                .patch(&service, &rival, &Patch::Apply(&patch))
                .await;
            "a rival set the target of its primary Service's port"
        }
        _ => {
            let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
            let config = format!("{name}-config");
            if let Ok(Some(cm)) = api.get_opt(&config).await
                && let Some(key) = cm.data.as_ref().and_then(|d| d.keys().next().cloned())
            {
                let patch = serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": config}, "data": {key: RIVAL},
                });
                let _ = api.patch(&config, &rival, &Patch::Apply(&patch)).await;
            }
            "a rival rewrote a key of its ConfigMap"
        }
    }
}

/// Waits until the operator has made no write for `quiet`; fails, naming
/// what it keeps writing, if that takes longer than `limit`.
async fn settle(env: &Env, quiet: Duration, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    let mut last = env.metric(WRITES).await;
    let mut series = env.metric_series(WRITES).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = env.metric(WRITES).await;
        if now == last {
            return now;
        }
        let later = env.metric_series(WRITES).await;
        assert!(
            Instant::now() < deadline,
            "the operator still writes {limit:?} after every Database ran: from\n{series}\nto\n{later}"
        );
        last = now;
        series = later;
    }
}

#[tokio::test]
async fn killed_ten_times_while_databases_are_created_scaled_and_edited_the_operator_ends_with_every_database_running_and_exactly_its_children()
 {
    let seed = from_env("CHAOS_SEED", DEFAULT_SEED);
    let size = from_env("CHAOS_DATABASES", 100) as usize;
    println!("chaos: seed {seed} (CHAOS_SEED), {size} Databases (CHAOS_DATABASES)");
    let env = harness::start(Vec::new())
        .await
        .expect("cluster and operator");
    let client = env.client().await;
    let ns = env.namespace("chaos").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let (password_changes, password_watch) = watch_admin_passwords(&client, &ns);
    // Let the watch list once, so that it sees every Secret from its start.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut rng = StdRng::seed_from_u64(seed);
    let steps = size * STEPS_PER_DATABASE;
    let mut kill_at = BTreeSet::new();
    while kill_at.len() < KILLS {
        kill_at.insert(rng.random_range(1..steps));
    }
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut done: BTreeMap<&'static str, usize> = BTreeMap::new();
    let started = Instant::now();
    for step in 0..steps {
        if kill_at.contains(&step) {
            env.kill_and_restart_operator().await;
            *done.entry("operator killed and restarted").or_default() += 1;
        }
        // Creations are spread over the run: the n-th is due by step 3n.
        let due = names.len() < size
            && (names.is_empty()
                || rng.random_bool(0.4)
                || step >= names.len() * STEPS_PER_DATABASE + 2);
        let action = if due {
            let (engine, version) = ENGINES[names.len() % ENGINES.len()];
            let name = format!("db-{}", names.len());
            dbs.create(&PostParams::default(), &database(&name, engine, version))
                .await
                .unwrap();
            wanted.insert(
                name.clone(),
                Wanted {
                    engine,
                    replicas: 1,
                    monitoring: false,
                    ever_monitored: false,
                },
            );
            names.push(name);
            "created a Database"
        } else {
            let name = names[rng.random_range(0..names.len())].clone();
            let w = wanted.get_mut(&name).unwrap();
            match rng.random_range(0..4) {
                0 => {
                    w.replicas = if w.replicas == 1 { 2 } else { 1 };
                    let patch = serde_json::json!({"spec": {"replicas": w.replicas}});
                    dbs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap();
                    "scaled a Database"
                }
                1 => {
                    w.monitoring = !w.monitoring;
                    w.ever_monitored |= w.monitoring;
                    let patch =
                        serde_json::json!({"spec": {"monitoring": {"enabled": w.monitoring}}});
                    dbs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap();
                    "turned a Database's monitoring on or off"
                }
                _ => meddle(&client, &ns, &name, w.engine, &mut rng).await,
            }
        };
        *done.entry(action).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
    }
    println!(
        "chaos: {:.0} s of changes: {done:#?}",
        started.elapsed().as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let waiting = not_yet_running(&dbs, &wanted).await;
        let problems = if waiting.is_empty() {
            differences(&client, &ns, &wanted).await
        } else {
            waiting
        };
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: not every Database Running with exactly its children {:.0} s after the chaos:\n{}\n{}",
            started.elapsed().as_secs_f64(),
            problems.join("\n"),
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "chaos: all Running with their children after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Zero writes at steady state, even when every Database is reconciled.
    // Steady state comes after the last change's failover delay has run
    // out: two members with no server answering for them are found to have
    // no failover candidate 30 s after it, a change of their status.
    let writes = settle(&env, QUIET_AFTER_FAILOVER_DELAY, Duration::from_secs(180)).await;
    let series = env.metric_series(WRITES).await;
    let statuses = || async {
        dbs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|db| (db.name_any(), serde_json::to_string(&db.status).unwrap()))
            .collect::<BTreeMap<_, _>>()
    };
    let before = statuses().await;
    let reconciles = env.metric(RECONCILES).await;
    for name in &names {
        let poke = serde_json::json!({"metadata": {"annotations": {"test/poke": "1"}}});
        dbs.patch(name, &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .unwrap();
    }
    harness::eventually(
        &env,
        "every poked Database reconciled",
        Duration::from_secs(120),
        || async {
            (env.metric(RECONCILES).await >= reconciles + names.len() as f64).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.metric(WRITES).await,
        writes,
        "seed {seed}: the operator wrote at steady state: from\n{series}\nto\n{}\nstatuses that changed: {:#?}",
        env.metric_series(WRITES).await,
        statuses()
            .await
            .into_iter()
            .filter(|(name, after)| before.get(name) != Some(after))
            .map(|(name, after)| (before.get(&name).cloned().unwrap_or_default(), after))
            .collect::<Vec<_>>()
    );

    password_watch.abort();
    let changes = password_changes.lock().unwrap().clone();
    assert!(changes.is_empty(), "seed {seed}: {changes:#?}");
    let log = std::fs::read_to_string(&env.operator_log).unwrap();
    assert!(
        !log.contains("panicked"),
        "seed {seed}: the operator panicked:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(done.get("operator killed and restarted"), Some(&KILLS));
}
