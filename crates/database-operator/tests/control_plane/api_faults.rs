//! An API server under load: the real one, behind a front that answers
//! one request in ten with 429, 503, 504 or 500 ([`FaultyApi`], seeded). The
//! operator must still bring every Database to Running, never report a
//! Database Failed for what is the server's trouble, count the failures by
//! kind, and log each object's first failure as a warning that names the
//! object, the step and the child, never as an error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use testkit::faulty_api::FaultyApi;
use testkit::fixtures::sample_in;
use testkit::harness;

const SEED: u64 = 0x5eed_0013;
/// One request in ten fails: a reconcile sends ten to twenty, so most of
/// them meet a failure, and one in four of those is a 500.
const PER_MILLE: u64 = 100;

#[tokio::test]
async fn under_injected_api_failures_every_database_runs_and_a_failed_reconcile_is_a_warning_naming_object_step_and_child()
 {
    let front: Arc<Mutex<Option<FaultyApi>>> = Arc::default();
    let slot = front.clone();
    let env = harness::start_with(
        vec!["--log-format".into(), "json".into()],
        async move |cluster| {
            let api = FaultyApi::start(cluster.client().await?, PER_MILLE, SEED).await?;
            let kubeconfig = api.kubeconfig(cluster.dir())?;
            *slot.lock().unwrap() = Some(api);
            Ok(Some(kubeconfig))
        },
    )
    .await
    .expect("cluster and operator behind the faulty front");
    let client = env.client().await;
    let ns = env.namespace("api-faults").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);

    // Every phase each Database shows, seen through the real API server.
    let phases: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let seen = phases.clone();
    let watch = tokio::spawn(
        watcher(dbs.clone(), watcher::Config::default())
            .applied_objects()
            .for_each(move |db| {
                if let Ok(db) = db
                    && let Some(phase) = db.status.as_ref().and_then(|s| s.phase)
                {
                    let name = db.metadata.name.clone().unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .entry(name)
                        .or_default()
                        .insert(format!("{phase:?}"));
                }
                futures::future::ready(())
            }),
    );

    let samples = [
        "postgresql-sample",
        "mysql-sample",
        "mongodb-sample",
        "e2e-test-db",
    ];
    for name in samples {
        dbs.create(
            &PostParams::default(),
            &sample_in(&format!("{name}.yaml"), &ns),
        )
        .await
        .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let list = dbs.list(&Default::default()).await.unwrap();
        let phases: Vec<_> = list
            .items
            .iter()
            .map(|db| {
                let status = db.status.as_ref();
                (
                    db.metadata.name.clone().unwrap_or_default(),
                    status.and_then(|s| s.phase),
                    status.map(|s| s.conditions.clone()).unwrap_or_default(),
                )
            })
            .collect();
        if phases
            .iter()
            .all(|(_, phase, _)| *phase == Some(Phase::Running))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every Database Running while one request in ten fails: {phases:#?}\n{}",
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (injected, passed, failed) = {
        let guard = front.lock().unwrap();
        let api = guard.as_ref().unwrap();
        (api.injected(), api.passed(), api.failed_requests())
    };
    let total: u64 = injected.iter().map(|(_, n)| n).sum();
    println!(
        "injected {injected:?} ({total} in all), passed {passed}:\n{}",
        failed.join("\n")
    );
    assert!(
        injected.iter().all(|(_, n)| *n > 0),
        "each kind of failure was injected: {injected:?}"
    );

    // 429, 503 and 504 are retried inside the client (with backoff, after
    // Retry-After): only a 500 fails a reconcile, counted by kind as
    // `api_unavailable`, and no more of them than 500s were drawn.
    let errors = env
        .metric_series("database_operator_reconcile_errors_total")
        .await;
    let counted = env.metric("database_operator_reconcile_errors_total").await;
    let internal = injected
        .iter()
        .find(|(code, _)| *code == 500)
        .map_or(0, |(_, n)| *n);
    println!("failed reconciles by kind:\n{errors}");
    assert!(
        errors.contains("kind=\"api_unavailable\""),
        "failed reconciles counted as api_unavailable:\n{errors}"
    );
    assert!(
        counted <= internal as f64,
        "{counted} failed reconciles for {internal} injected 500s: a retried answer failed one\n{errors}"
    );

    // Never Failed, at any moment a watcher saw.
    watch.abort();
    for (name, seen) in phases.lock().unwrap().iter() {
        assert!(
            !seen.contains("Failed"),
            "{name} was reported Failed for the server's trouble: {seen:?}"
        );
    }

    // The log: no error; each failed reconcile's warning names the
    // object, and, when a step failed, the step and its child.
    let log = std::fs::read_to_string(env.cluster.dir().join("operator.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let errors: Vec<_> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "reconcile failed")
        .collect();
    assert!(!failed.is_empty(), "some reconcile failed and said so");
    for line in &failed {
        assert_eq!(line["level"], "WARN", "{line}");
        let object = line["object"].as_str().unwrap_or_default();
        assert!(
            object.contains(&format!("/{ns}/")),
            "names its object: {line}"
        );
        let error = line["error"].as_str().unwrap_or_default();
        match line["kind"].as_str() {
            Some("api_unavailable") => {
                assert!(error.contains("injected by the test"), "{line}");
                // `applying ConfigMap shop/orders-config: Kubernetes API: …`
                assert!(
                    !error.starts_with("Kubernetes API"),
                    "names its step and child: {line}"
                );
            }
            // A write that lost a race with the retry of another: retried.
            Some("api_conflict") => {}
            _ => panic!("a failure the front did not cause: {line}"),
        }
    }
    // Once per object and run of failures: the retries are debug lines.
    let per_object = failed
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, l| {
            *m.entry(l["object"].as_str().unwrap_or_default())
                .or_default() += 1;
            m
        });
    let retries = lines
        .iter()
        .filter(|l| l["message"] == "reconcile failed again")
        .count();
    println!("warnings by object {per_object:?}; retries at debug level {retries}");
    assert_eq!(
        (failed.len() + retries) as f64,
        counted,
        "each failed reconcile is logged once: a warning for the first of a run, debug for its retries"
    );
}
