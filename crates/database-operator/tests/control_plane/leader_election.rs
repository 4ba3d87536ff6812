//! Two replicas of the real operator with `--leader-elect` on one local
//! control plane: one leads and reconciles, the other stands by — alive
//! and ready, reconciling nothing — and takes over when the leader stops.

use testkit::fixtures;
use testkit::harness;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use harness::{create, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};

const WAIT: Duration = Duration::from_secs(90);
const RECONCILES: &str = "database_operator_reconciliations_total";

async fn reconciles(address: &str) -> f64 {
    let (_, body) = harness::http_get(address, "/metrics").await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(RECONCILES))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn kill(pid: u32) {
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .expect("kill");
}

#[tokio::test]
async fn a_follower_stands_by_ready_and_takes_over_when_the_leader_stops() {
    let env = harness::start_with(vec!["--leader-elect".into()], async |cluster| {
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "database-operator"}}))?;
        Api::<Namespace>::all(cluster.client().await?)
            .patch(
                "database-operator",
                &PatchParams::apply("leader-test"),
                &Patch::Apply(&namespace),
            )
            .await?;
        Ok(None)
    })
    .await
    .expect("cluster and the first operator");
    let client = env.client().await;
    let leases = Api::<Lease>::namespaced(client.clone(), "database-operator");
    let holder = || async {
        leases
            .get_opt("database-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    };
    let first_leader = eventually(&env, "a leader", WAIT, holder).await;

    // The second replica follows: alive and ready, reconciling nothing.
    let port = testkit::processes::free_port().unwrap();
    let second = format!("127.0.0.1:{port}");
    let second_log = env.cluster.dir().join("operator-2.log");
    let second_pid = env.spawn_another_operator(&second, &second_log);
    eventually(&env, "the second replica ready", WAIT, || async {
        (harness::http_get(&second, "/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(harness::http_get(&second, "/healthz").await.unwrap().0, 200);

    let ns = env.namespace("leader").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &fixtures::sample_in("test-postgres.yaml", &ns)).await;
    eventually(&env, "test-postgres Running", WAIT, || async {
        (dbs.get("test-postgres").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    assert!(env.metric(RECONCILES).await > 0.0, "the leader reconciles");
    assert_eq!(reconciles(&second).await, 0.0, "the follower reconciled");
    assert_eq!(holder().await.as_deref(), Some(first_leader.as_str()));

    // The leader stops (SIGTERM, as in a rollout): it hands the lease over
    // and the follower leads from then on.
    kill(env.operator_pid());
    let second_leader = eventually(&env, "a new leader", WAIT, || async {
        holder().await.filter(|h| *h != first_leader)
    })
    .await;
    let mut db = fixtures::sample_in("test-postgres.yaml", &ns);
    db.metadata.name = Some("after-failover".into());
    create(&dbs, &db).await;
    eventually(&env, "after-failover Running", WAIT, || async {
        (dbs.get("after-failover").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    assert!(reconciles(&second).await > 0.0, "the new leader reconciles");
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        log.contains("became the leader") && log.contains(&second_leader),
        "{log}"
    );
    let first_log = std::fs::read_to_string(&env.operator_log).unwrap();
    assert!(first_log.contains("released the lease"), "{first_log}");
    kill(second_pid);
}
