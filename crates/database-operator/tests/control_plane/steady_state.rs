//! A reconcile that finds nothing to change writes nothing, and the admin
//! Secret survives operator restarts and re-applies. Runs with its own
//! cluster and operator, so no other test's writes are counted.

use testkit::harness;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition;
use database_operator_api::v1::database::Phase;
use harness::{env, eventually};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use testkit::fixtures::sample_in;

const WAIT: Duration = Duration::from_secs(90);
const WRITES: &str = "database_operator_api_writes_total";
const RECONCILES: &str = "database_operator_reconciliations_total";
/// How long no write must happen for the operator to count as settled:
/// longer than the slowest attempt to reach a server that is not there
/// (the MongoDB driver gives up after 10 s), whose outcome may be written.
const QUIET: Duration = Duration::from_secs(11);

/// Waits until the operator has made no write for `quiet`.
async fn settle(env: &harness::Env, quiet: Duration) -> f64 {
    let mut last = env.metric(WRITES).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = env.metric(WRITES).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

async fn poke_and_wait_for_reconciles(
    env: &harness::Env,
    dbs: &Api<Database>,
    names: &[&str],
    round: u32,
) {
    let before = env.metric(RECONCILES).await;
    for name in names {
        let patch =
            serde_json::json!({"metadata": {"annotations": {"test/poke": round.to_string()}}});
        dbs.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
    eventually(
        env,
        "the operator to reconcile every poked Database",
        WAIT,
        || async { (env.metric(RECONCILES).await >= before + names.len() as f64).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn steady_state_reconciles_make_no_writes_and_the_admin_secret_is_never_regenerated() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("steady").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let names = [
        "postgresql-sample",
        "mysql-sample",
        "mongodb-sample",
        "e2e-test-db",
        "s3-backed",
    ];
    for name in &names[..4] {
        dbs.create(
            &PostParams::default(),
            &sample_in(&format!("{name}.yaml"), &ns),
        )
        .await
        .unwrap();
    }
    // Backups to S3 with no endpoint: the CronJob's S3_ENDPOINT is empty,
    // which the API server stores as no value at all (once taken for drift,
    // re-applied on every pass).
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &testkit::fixtures::s3_credentials("s3-credentials", &ns),
        )
        .await
        .unwrap();
    dbs.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1",
            "kind": "Database",
            "metadata": {"name": "s3-backed"},
            "spec": {
                "engine": "postgresql", "version": "16.4", "replicas": 1,
                "storage": {"size": "1Gi"},
                "backup": {
                    "enabled": true, "schedule": "0 2 * * *", "retention": "7d",
                    "destination": {"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3-credentials"}}},
                },
            },
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    for name in names {
        eventually(env, &format!("{name} Running"), WAIT, || async {
            (dbs.get(name).await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
        })
        .await;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let original = secrets.get("mysql-sample-secret").await.unwrap();

    // e2e-test-db has two members and no server answers for them: once its
    // failover delay (30 s) has run out its status says no failover is
    // possible, a change of its own. Steady state is after that.
    eventually(
        env,
        "e2e-test-db to find no failover candidate",
        WAIT,
        || async {
            let status = dbs.get("e2e-test-db").await.ok()?.status?;
            let replicating = condition::find(&status.conditions, condition::types::REPLICATING)?;
            (replicating.reason == "NoFailoverCandidate").then_some(())
        },
    )
    .await;
    let writes_before = settle(env, QUIET).await;
    assert!(writes_before > 0.0, "the operator's writes are counted");
    let statuses = || async {
        let mut all = Vec::new();
        for name in names {
            all.push(serde_json::to_string(&dbs.get(name).await.unwrap().status).unwrap());
        }
        all
    };
    let before = statuses().await;
    poke_and_wait_for_reconciles(env, &dbs, &names, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_after = env.metric(WRITES).await;
    assert_eq!(
        writes_after,
        writes_before,
        "steady-state reconciles wrote to the API: statuses before {before:#?} and after {:#?}",
        statuses().await
    );

    // A restarted operator finds everything in place: no write, same Secret.
    env.restart_operator().await;
    let writes_at_start = settle(env, QUIET).await;
    poke_and_wait_for_reconciles(env, &dbs, &names, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.metric(WRITES).await,
        writes_at_start,
        "a restarted operator wrote at steady state"
    );
    assert_eq!(
        writes_at_start,
        0.0,
        "a restarted operator wrote while catching up: {writes_at_start}\n{}\nstatuses before: {before:#?}\nafter: {:#?}\n{}",
        env.metric_series(WRITES).await,
        statuses().await,
        env.operator_log_tail()
    );

    // Re-applying the Database unchanged, as `kubectl apply` would, changes nothing either.
    let mut again = sample_in("mysql-sample.yaml", &ns);
    again.metadata.managed_fields = None;
    dbs.patch(
        "mysql-sample",
        &PatchParams::apply("kubectl-client-side-apply").force(),
        &Patch::Apply(&again),
    )
    .await
    .unwrap();
    poke_and_wait_for_reconciles(env, &dbs, &["mysql-sample"], 3).await;
    let after = secrets.get("mysql-sample-secret").await.unwrap();
    assert_eq!(
        after.resource_version(),
        original.resource_version(),
        "the admin Secret was written"
    );
    assert_eq!(after.data, original.data);
}
