//! A primary cut off from the Kubernetes API stops taking writes by itself,
//! before the operator promotes another member, and comes back only in the
//! role the API gives it then.
//!
//! Pod 0's real PostgreSQL server runs under the operator's in-pod
//! supervisor (`database-operator instance`, the database container's
//! command), which reads the API as the Database's own ServiceAccount
//! (a token the API issued for `<name>-instance`) through a loopback proxy
//! the test can cut. The partition cuts both that proxy and the operator's
//! own route to pod 0's server, as a node cut off from the cluster would:
//! the operator counts the failover delay from the cut, and the supervisor
//! must have stopped the server before it runs out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{self, types};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use testkit::harness::{create, eventually};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::Postgres;

use crate::replication::{
    NAME, NS, REPLICATION_PASSWORD, WAIT, address, create_ledger, holds, labelled, pod, stage,
    write,
};

/// Nothing listens here: a proxy pointed at it refuses every connection.
const NOWHERE: &str = "127.0.0.1:1";

/// Whether `pg` answers, and as a primary (`Some(true)`) or a standby.
async fn primary(pg: &Postgres) -> Option<bool> {
    let client = pg.connect().await.ok()?;
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .ok()?;
    Some(!row.get::<_, bool>(0))
}

/// The operator's binary, where the servers' user can run it, and a
/// kubeconfig that reaches the API at `api` as the ServiceAccount whose
/// `token` it holds.
fn supervisor_files(dir: &std::path::Path, api: &Proxy, ca: &str, token: &str) -> (String, String) {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let binary = dir.join("database-operator");
    std::fs::copy(env!("CARGO_BIN_EXE_database-operator"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: pod
  cluster:
    server: https://{}:{}
    certificate-authority-data: {ca}
users:
- name: instance
  user:
    token: {token}
contexts:
- name: pod
  context: {{cluster: pod, user: instance, namespace: {NS}}}
current-context: pod
",
            api.host(),
            api.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
    (
        binary.display().to_string(),
        kubeconfig.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_from_the_api_stops_before_a_replica_is_promoted_and_returns_as_a_replica()
 {
    let script = InstanceScript::postgresql().unwrap();
    let settings = operator::replication::postgresql::settings(1 << 30);
    let mut servers = vec![Postgres::start_configured(&settings).await.unwrap()];
    let admin_password = servers[0].admin_password().to_owned();
    servers.push(Postgres::prepare_member(&admin_password).unwrap());
    create_ledger(&servers[0]).await;
    // The operator reaches pod 0's server through `route`, which the
    // partition cuts; the primary Service follows the primary's label.
    let route = Proxy::start(address(&servers[0])).await.unwrap();
    let service = Arc::new(Proxy::start(address(&servers[0])).await.unwrap());
    let routes: Vec<SocketAddr> = vec![
        format!("127.0.0.1:{}", route.port()).parse().unwrap(),
        address(&servers[1]),
    ];
    let (env, client, _kube_proxy) = stage(
        &routes,
        &service,
        ("postgres", &admin_password),
        REPLICATION_PASSWORD,
    )
    .await;
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"engine": "postgresql", "version": "16.4", "replicas": 2,
                 "storage": {"size": "1Gi"},
                 "replication": {"failoverDelay": "10s"}}
    }))
    .unwrap();
    create(&dbs, &db).await;
    labelled(&env, &client, &pod(0), "primary").await;
    labelled(&env, &client, &pod(1), "replica").await;
    let member = |pod: &str, role: &str| {
        script.member(
            pod,
            role,
            (service.host(), service.port()),
            REPLICATION_PASSWORD,
        )
    };
    servers[1]
        .restart_as(member(&pod(1), "replica"))
        .await
        .unwrap();

    // The operator made the pods' ServiceAccount; the API issues it a
    // token, as the kubelet would for the pod.
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), NS);
    let account = format!("{NAME}-instance");
    eventually(&env, "the pods' ServiceAccount", WAIT, || async {
        accounts.get_opt(&account).await.ok()?
    })
    .await;
    let token = accounts
        .create_token_request(
            &account,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .and_then(|s| s.token)
        .unwrap();
    let apiserver: SocketAddr = env
        .cluster
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let api = Proxy::start(apiserver).await.unwrap();
    let ca = std::fs::read_to_string(env.cluster.dir().join("pki/ca.crt")).unwrap();
    let files = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (binary, kubeconfig) = supervisor_files(files.path(), &api, &ca, &token);

    // Pod 0's container restarts with the supervisor as its command.
    let mut supervised = member(&pod(0), "primary");
    supervised.supervisor = vec![
        binary,
        "instance".into(),
        "--pod".into(),
        pod(0),
        "--namespace".into(),
        NS.into(),
        "--database".into(),
        NAME.into(),
        "--role-file".into(),
        servers[0]
            .dir()
            .join("confirmed-labels")
            .display()
            .to_string(),
        "--stop-signal".into(),
        "int".into(),
        "--".into(),
    ];
    supervised
        .env
        .push(("KUBECONFIG".into(), kubeconfig.clone()));
    servers[0].restart_as(supervised.clone()).await.unwrap();
    assert_eq!(primary(&servers[0]).await, Some(true));
    write(&servers[0], "supervised").await.unwrap();
    holds(&env, &servers[1], &["first", "supervised"]).await;
    eventually(&env, "every replica streaming", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        let replicating = condition::find(&status.conditions, types::REPLICATING)?;
        (replicating.status == condition::ConditionStatus::True).then_some(())
    })
    .await;

    // The partition: pod 0 loses the API, the operator loses pod 0.
    let cut = Instant::now();
    api.point_at(NOWHERE.parse().unwrap());
    route.point_at(NOWHERE.parse().unwrap());
    let fenced = eventually(&env, "pod 0's server to stop by itself", WAIT, || async {
        primary(&servers[0]).await.is_none().then(|| cut.elapsed())
    })
    .await;
    let promoted = eventually(&env, "the operator to promote pod 1", WAIT, || async {
        (primary(&servers[1]).await == Some(true)).then(|| cut.elapsed())
    })
    .await;
    // Half the failover delay (5 s) without an answer, counted from the
    // last answer (up to a check, 1.25 s, before the cut) and found within
    // a check and a request's timeout; the operator waits the whole delay
    // from the moment it loses the server.
    assert!(
        fenced >= Duration::from_millis(3750) && fenced < Duration::from_secs(10),
        "pod 0 stopped {fenced:?} after the cut"
    );
    assert!(
        fenced < promoted,
        "pod 1 was promoted {promoted:?} after the cut, while pod 0 took writes until {fenced:?}"
    );
    eprintln!("pod 0 stopped {fenced:?} after the cut; pod 1 was promoted {promoted:?} after it");
    // While the API stays away, the supervisor starts nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        primary(&servers[0]).await,
        None,
        "a cut-off primary started again"
    );
    labelled(&env, &client, &pod(1), "primary").await;
    write(&servers[1], "after the failover").await.unwrap();

    // The partition heals: the supervisor reads pod 0's new role and starts
    // it as a replica of pod 1, which refuses writes.
    api.point_at(apiserver);
    route.point_at(address(&servers[0]));
    labelled(&env, &client, &pod(0), "replica").await;
    holds(
        &env,
        &servers[0],
        &["first", "supervised", "after the failover"],
    )
    .await;
    assert_eq!(primary(&servers[0]).await, Some(false));
    let refused = write(&servers[0], "on the old primary").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{refused:?}"
    );
    let confirmed = std::fs::read_to_string(servers[0].dir().join("confirmed-labels")).unwrap();
    assert!(
        confirmed.contains("example.com/role=\"replica\""),
        "{confirmed}"
    );
}
