//! PostgreSQL replication end to end: the real operator on the local
//! control plane, whose KWOK pods stand for three real PostgreSQL servers on
//! loopback. The operator reaches each pod's server through `--resolve`
//! (`<pod>.<name>-headless.<namespace>`), the replicas start through the
//! instance script the operator ships, and the test does what the kubelet
//! and kube-proxy would: it gives each server its pod's role label, points
//! the primary Service (a loopback proxy) at the pod labelled primary, and
//! restarts a server whose pod was deleted.
//!
//! The operator's failover acts on a real server: the primary's server is
//! killed while its KWOK pod stays Ready, and the operator promotes the most
//! advanced real replica, moves the labels, the Services follow, and the old
//! primary comes back as a replica that refuses writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{self, types};
use database_operator_api::v1::replication::MemberState;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use testkit::harness::{self, Env, create, eventually};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::Postgres;

const NS: &str = "replication";
const NAME: &str = "ledger";
const REPLICATION_PASSWORD: &str = "replPw1234567890";
const WAIT: Duration = Duration::from_secs(120);

fn pod(i: usize) -> String {
    format!("{NAME}-{i}")
}

fn address(pg: &Postgres) -> SocketAddr {
    format!("{}:{}", pg.host(), pg.port()).parse().unwrap()
}

fn secret(name: &str, user: &str, password: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": {"username": user, "password": password}
    }))
    .unwrap()
}

async fn roles(client: &Client) -> BTreeMap<String, String> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={NAME}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            let role = p
                .labels()
                .get("example.com/role")
                .cloned()
                .unwrap_or_default();
            (p.name_any(), role)
        })
        .collect()
}

/// Waits until pod `name` exists with `role`, and returns its uid.
async fn labelled(env: &Env, client: &Client, name: &str, role: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    eventually(env, &format!("{name} labelled {role}"), WAIT, || async {
        let p = pods.get_opt(name).await.ok()??;
        (p.labels().get("example.com/role").map(String::as_str) == Some(role))
            .then(|| p.uid().unwrap_or_default())
    })
    .await
}

async fn ledger(pg: &Postgres) -> Vec<String> {
    let Ok(client) = pg.connect().await else {
        return Vec::new();
    };
    client
        .query("SELECT memo FROM ledger ORDER BY id", &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

async fn holds(env: &Env, pg: &Postgres, want: &[&str]) {
    eventually(
        env,
        &format!("server {} to hold {want:?}", pg.port()),
        WAIT,
        || async { (ledger(pg).await == want).then_some(()) },
    )
    .await;
}

async fn write(pg: &Postgres, memo: &str) -> Result<u64, tokio_postgres::Error> {
    let client = pg.connect().await.expect("connect");
    client
        .execute("INSERT INTO ledger (memo) VALUES ($1)", &[&memo])
        .await
}

/// The pods the Service's EndpointSlices name.
async fn endpoints(client: &Client, service: &str) -> Vec<String> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    let mut pods: Vec<String> = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    pods.sort();
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_fails_over_to_a_real_replica_and_fences_the_old_primary() {
    let script = InstanceScript::postgresql().unwrap();
    let settings = operator::replication::postgresql::settings(1 << 30);
    let mut servers = vec![Postgres::start_configured(&settings).await.unwrap()];
    let admin_password = servers[0].admin_password().to_owned();
    for _ in 1..3 {
        servers.push(Postgres::prepare_member(&admin_password).unwrap());
    }
    let service = Proxy::start(address(&servers[0])).await.unwrap();
    servers[0]
        .connect()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE ledger (id serial PRIMARY KEY, memo text);
             INSERT INTO ledger (memo) VALUES ('first');",
        )
        .await
        .unwrap();

    let mut args: Vec<String> = servers
        .iter()
        .enumerate()
        .flat_map(|(i, pg)| {
            [
                "--resolve".to_owned(),
                format!("{}.{NAME}-headless.{NS}=127.0.0.1:{}", pod(i), pg.port()),
            ]
        })
        .collect();
    args.extend([
        "--resolve".to_owned(),
        format!("{NAME}-primary.{NS}=127.0.0.1:{}", service.port()),
    ]);
    let env = harness::start(args).await.unwrap();
    let client = env.client().await;
    env.namespace(NS).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    create(
        &secrets,
        &secret(&format!("{NAME}-secret"), "postgres", &admin_password),
    )
    .await;
    create(
        &secrets,
        &secret(
            &format!("{NAME}-replication"),
            "dbop_replication",
            REPLICATION_PASSWORD,
        ),
    )
    .await;
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"engine": "postgresql", "version": "16.4", "replicas": 3,
                 "storage": {"size": "1Gi"},
                 "replication": {"failoverDelay": "5s"}}
    }))
    .unwrap();
    create(&dbs, &db).await;

    // Pod 0 is the primary from the start; the others replicas. The test,
    // as the kubelet, starts each replica's server with its label.
    labelled(&env, &client, &pod(0), "primary").await;
    for (i, server) in servers.iter_mut().enumerate().skip(1) {
        labelled(&env, &client, &pod(i), "replica").await;
        let member = script.member(
            &pod(i),
            "replica",
            (service.host(), service.port()),
            REPLICATION_PASSWORD,
        );
        server.restart_as(member).await.unwrap();
    }
    let services = Api::<Service>::namespaced(client.clone(), NS);
    let selector = |s: Service| s.spec.unwrap().selector.unwrap();
    let primary_selector = selector(services.get(&format!("{NAME}-primary")).await.unwrap());
    assert_eq!(primary_selector["example.com/role"], "primary");
    let readonly_selector = selector(services.get(&format!("{NAME}-readonly")).await.unwrap());
    assert_eq!(readonly_selector["example.com/role"], "replica");

    // The operator made the replication login and the slots: every replica
    // streams, and the status says so.
    let streaming = eventually(&env, "every replica streaming", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        let replicating = condition::find(&status.conditions, types::REPLICATING)?;
        (replicating.status == condition::ConditionStatus::True).then_some(status)
    })
    .await;
    let replication = streaming.replication.unwrap();
    assert_eq!(replication.primary.as_deref(), Some("ledger-0"));
    let states: Vec<_> = replication.members.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [
            MemberState::Primary,
            MemberState::Streaming,
            MemberState::Streaming
        ]
    );
    write(&servers[0], "replicated").await.unwrap();
    for replica in &servers[1..] {
        holds(&env, replica, &["first", "replicated"]).await;
    }
    assert_eq!(
        endpoints(&client, &format!("{NAME}-primary")).await,
        ["ledger-0"]
    );
    assert_eq!(
        endpoints(&client, &format!("{NAME}-readonly")).await,
        ["ledger-1", "ledger-2"]
    );

    // The primary's server dies; its KWOK pod stays Ready. Beyond the
    // failover delay the operator promotes a real replica.
    let old_uid = Api::<Pod>::namespaced(client.clone(), NS)
        .get(&pod(0))
        .await
        .unwrap()
        .uid()
        .unwrap();
    servers[0].kill();
    let promoted = eventually(&env, "a failover", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        let primary = status.replication?.primary?;
        (primary != pod(0)).then_some(primary)
    })
    .await;
    let new = promoted
        .trim_start_matches(&format!("{NAME}-"))
        .parse::<usize>()
        .unwrap();
    labelled(&env, &client, &promoted, "primary").await;
    // As kube-proxy: the primary Service now reaches the new primary.
    service.point_at(address(&servers[new]));
    write(&servers[new], "after the failover").await.unwrap();
    eventually(&env, "the primary Service to follow", WAIT, || async {
        (endpoints(&client, &format!("{NAME}-primary")).await == [promoted.clone()]).then_some(())
    })
    .await;

    // The old primary's pod was deleted and comes back as a replica: its
    // server restarts through the script, rewound, and refuses writes.
    let new_uid = labelled(&env, &client, &pod(0), "replica").await;
    assert_ne!(new_uid, old_uid, "the old primary's pod was replaced");
    let member = script.member(
        &pod(0),
        "replica",
        (service.host(), service.port()),
        REPLICATION_PASSWORD,
    );
    servers[0].restart_as(member).await.unwrap();
    let log = std::fs::read_to_string(servers[0].log_path()).unwrap();
    assert!(
        log.contains("pg_rewind: Done!"),
        "rewound, not copied afresh:\n{log}"
    );
    let want = ["first", "replicated", "after the failover"];
    for pg in &servers {
        holds(&env, pg, &want).await;
    }
    let refused = write(&servers[0], "must not land").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{refused}"
    );
    eventually(&env, "every replica streaming again", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        let replicating = condition::find(&status.conditions, types::REPLICATING)?;
        (replicating.status == condition::ConditionStatus::True).then_some(())
    })
    .await;
    assert_eq!(
        roles(&client)
            .await
            .values()
            .filter(|r| *r == "primary")
            .count(),
        1,
        "one primary"
    );
    let events = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    let failed_over: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedOver"))
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        failed_over
            .iter()
            .any(|m| m.contains(&promoted) && m.contains("lost")),
        "{failed_over:?}"
    );
}
