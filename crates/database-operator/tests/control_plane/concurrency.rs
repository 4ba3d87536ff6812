//! `--max-concurrent-reconciles` caps the reconciles a controller runs at
//! once. MongoDB Databases whose servers never answer make slow reconciles
//! (the driver waits 10 s to select a server), so three of them at once
//! would show three in flight; with a cap of one, no more than one ever
//! runs, and all three still get their status. Runs with its own cluster
//! and operator.

use std::time::{Duration, Instant};

use database_operator_api::v1::Database;
use kube::Api;
use kube::api::PostParams;
use testkit::fixtures::sample_in;
use testkit::harness;

const WAIT: Duration = Duration::from_secs(120);

/// The Database controller's reconciles in flight, from `/metrics`.
async fn in_flight(env: &harness::Env) -> f64 {
    let (_, body) = env.http_get("/metrics").await.unwrap();
    body.lines()
        .find(|l| {
            l.starts_with("database_operator_reconciles_in_flight{")
                && l.contains("controller=\"database\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_burst_of_slow_reconciles_runs_one_at_a_time_under_a_cap_of_one() {
    let env = harness::start(vec!["--max-concurrent-reconciles".into(), "1".into()])
        .await
        .expect("cluster and operator");
    let client = env.client().await;
    let ns = env.namespace("concurrency").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    for name in ["slow-a", "slow-b", "slow-c"] {
        let mut db = sample_in("mongodb-sample.yaml", &ns);
        db.metadata.name = Some(name.into());
        db.spec.monitoring = None;
        dbs.create(&PostParams::default(), &db).await.unwrap();
    }
    // Their pods appear within seconds; from then on each reconcile waits
    // for a server that never answers. Watch for as long as two such waits.
    let deadline = Instant::now() + WAIT;
    let mut most = 0.0f64;
    let mut all_seen_at = None;
    loop {
        most = most.max(in_flight(&env).await);
        let statuses =
            futures::future::join_all(["slow-a", "slow-b", "slow-c"].map(|n| dbs.get(n))).await;
        let all_seen = statuses
            .iter()
            .all(|d| d.as_ref().is_ok_and(|d| d.status.is_some()));
        if all_seen {
            let since = *all_seen_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(25) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every Database got a status\n{}",
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most, 1.0, "reconciles in flight at most: {most}");
}
