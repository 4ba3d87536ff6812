//! MySQL and MariaDB replication end to end: the real operator on the local
//! control plane, whose KWOK pods stand for three real servers of the
//! flavor on loopback (MySQL from Debian unstable, MariaDB from Debian),
//! as in `replication.rs` for PostgreSQL (the same test kubelet and
//! kube-proxy: role labels to the servers, the primary Service a loopback
//! proxy that follows the pod labelled primary).
//!
//! The replicas copy the primary through the instance script the operator
//! ships and follow it by GTID; the operator makes the replication login,
//! turns on semi-synchronous replication (sync mode) on every member, sees
//! every replica stream, and when the primary's server dies under a writer
//! (its KWOK pod still Ready) it promotes a real replica holding every
//! acknowledged write, moves the labels, and the old primary returns as a
//! replica that refuses writes. A switchover back with a writer running
//! through the primary Service loses no acknowledged write either. Scaling
//! 3 -> 5 -> 2 with the primary on pod 4 moves the primary before the
//! StatefulSet shrinks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use database_operator_api::v1::condition::{self, types};
use database_operator_api::v1::replication::MemberState;
use database_operator_api::v1::{Database, Flavor};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use mysql_async::prelude::Queryable;
use operator::replication::mysql;
use testkit::harness::{self, create, eventually};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::{Mariadb, Mysql};

use crate::replication::{
    NAME, NS, WAIT, ask_for_primary, endpoints, index, labelled, one_primary_and_events, pod,
    scale_to_two_off, stage,
};

const REPLICATION_PASSWORD: &str = "replMaria12345678";

fn address(server: &Mariadb) -> SocketAddr {
    format!("{}:{}", server.host(), server.port())
        .parse()
        .unwrap()
}

/// The operator's server settings for `flavor` as options.
fn options(flavor: Flavor) -> Vec<String> {
    match flavor {
        Flavor::Mariadb => testkit::replication::mariadb_options(),
        Flavor::Mysql => testkit::replication::mysql_options(),
    }
}

async fn ledger(server: &Mariadb) -> Vec<String> {
    let Ok(mut conn) = server.connect().await else {
        return Vec::new();
    };
    conn.query("SELECT memo FROM app.ledger WHERE memo <> 'writer' ORDER BY id")
        .await
        .unwrap_or_default()
}

async fn holds(env: &harness::Env, server: &Mariadb, want: &[&str]) {
    eventually(
        env,
        &format!("server {} to hold {want:?}", server.port()),
        WAIT,
        || async { (ledger(server).await == want).then_some(()) },
    )
    .await;
}

async fn write(server: &Mariadb, memo: &str) -> Result<(), mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(server.opts()).await?;
    conn.exec_drop("INSERT INTO app.ledger (memo) VALUES (?)", (memo,))
        .await
}

/// The admin's write is refused as on a read-only server.
async fn refuses_writes(server: &Mariadb) {
    let refused = write(server, "must not land").await.unwrap_err();
    assert!(
        matches!(&refused, mysql_async::Error::Server(s) if s.code == 1290),
        "{refused}"
    );
}

/// Writes rows through the primary Service until `stop`, reconnecting after
/// errors, and returns the ids the server acknowledged (autocommit: the
/// INSERT's reply is its commit).
fn writer(
    service: (String, u16),
    password: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(service.0)
            .tcp_port(service.1)
            .user(Some("root"))
            .pass(Some(password))
            .prefer_socket(false)
            .into();
        while !stop.load(Ordering::SeqCst) {
            let connecting =
                tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone()));
            let Ok(Ok(mut conn)) = connecting.await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            while !stop.load(Ordering::SeqCst) {
                let insert = conn.query_drop("INSERT INTO app.ledger (memo) VALUES ('writer')");
                match tokio::time::timeout(Duration::from_secs(5), insert).await {
                    Ok(Ok(())) => acked.push(conn.last_insert_id().unwrap_or_default()),
                    _ => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked
    })
}

/// Starts a [`writer`] through the primary Service.
fn start_writer(
    service: &Proxy,
    password: &str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<u64>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(
        (service.host().to_owned(), service.port()),
        password.to_owned(),
        stop.clone(),
    );
    (stop, writing)
}

/// Asserts that `server` holds every acknowledged id in `acked` (of which
/// there must be more than 10).
async fn holds_every(server: &Mariadb, acked: &[u64]) {
    assert!(acked.len() > 10, "the writer wrote little: {}", acked.len());
    let stored: std::collections::BTreeSet<u64> = server
        .connect()
        .await
        .unwrap()
        .query("SELECT id FROM app.ledger")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<&u64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// The admin login at `server`, as the operator reaches a member.
fn admin(server: &Mariadb) -> operator::users::Target {
    operator::users::Target {
        host: server.host().to_owned(),
        port: server.port(),
        admin_user: "root".into(),
        admin_password: operator::users::Password::new(server.admin_password()),
        default_database: "mysql".into(),
    }
}

/// Whether every replica's server says it streams, and the operator too.
async fn all_streaming(
    flavor: Flavor,
    dbs: &Api<Database>,
    servers: &[Mariadb],
    replicas: &[usize],
) -> bool {
    let said = dbs
        .get(NAME)
        .await
        .ok()
        .and_then(|d| d.status)
        .and_then(|s| condition::find(&s.conditions, types::REPLICATING).cloned())
        .is_some_and(|c| c.status == condition::ConditionStatus::True);
    let mut streaming = said;
    for &i in replicas {
        let member = mysql::member(flavor, &admin(&servers[i])).await;
        streaming &= member.is_ok_and(|m| m.in_recovery && m.streaming);
    }
    streaming
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_fails_over_mariadb_and_switches_back_without_losing_a_write() {
    fails_over_and_switches_back_without_losing_a_write(Flavor::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_fails_over_mysql_and_switches_back_without_losing_a_write() {
    fails_over_and_switches_back_without_losing_a_write(Flavor::Mysql).await;
}

async fn fails_over_and_switches_back_without_losing_a_write(flavor: Flavor) {
    let (script, spec) = match flavor {
        Flavor::Mariadb => (
            InstanceScript::mariadb().unwrap(),
            serde_json::json!({"engine": "mysql", "flavor": "mariadb", "version": "11.4"}),
        ),
        Flavor::Mysql => (
            InstanceScript::mysql().unwrap(),
            serde_json::json!({"engine": "mysql", "version": "8.4"}),
        ),
    };
    let mut primary_options = options(flavor);
    primary_options.push("--server-id=1".into());
    let primary_options: Vec<&str> = primary_options.iter().map(String::as_str).collect();
    let mut servers = vec![match flavor {
        Flavor::Mariadb => Mariadb::start_with(&primary_options).await.unwrap(),
        Flavor::Mysql => Mysql::start_with(&primary_options)
            .await
            .unwrap()
            .into_inner(),
    }];
    let admin_password = servers[0].admin_password().to_owned();
    let member_options = options(flavor);
    let member_options: Vec<&str> = member_options.iter().map(String::as_str).collect();
    // Pods 0-2 first; pods 3 and 4 when the Database scales to 5.
    for _ in 1..5 {
        servers.push(match flavor {
            Flavor::Mariadb => Mariadb::prepare_member(&admin_password, &member_options).unwrap(),
            Flavor::Mysql => Mysql::prepare_member(&admin_password, &member_options)
                .unwrap()
                .into_inner(),
        });
    }
    {
        let mut conn = servers[0].connect().await.unwrap();
        conn.query_drop("CREATE DATABASE app").await.unwrap();
        conn.query_drop("CREATE TABLE app.ledger (id INT AUTO_INCREMENT PRIMARY KEY, memo TEXT)")
            .await
            .unwrap();
    }
    write(&servers[0], "first").await.unwrap();
    let service = Arc::new(Proxy::start(address(&servers[0])).await.unwrap());
    let addresses: Vec<SocketAddr> = servers.iter().map(address).collect();
    let (env, client, _kube_proxy) = stage(
        &addresses,
        &service,
        ("root", &admin_password),
        REPLICATION_PASSWORD,
    )
    .await;
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    let mut spec = spec;
    spec["replicas"] = 3.into();
    spec["storage"] = serde_json::json!({"size": "1Gi"});
    spec["replication"] = serde_json::json!({"failoverDelay": "5s", "mode": "sync"});
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": spec
    }))
    .unwrap();
    create(&dbs, &db).await;
    let member = |pod: &str, role: &str| {
        script.member(
            pod,
            role,
            (service.host(), service.port()),
            REPLICATION_PASSWORD,
        )
    };

    // Pod 0 is the primary from the start; pods 1 and 2 replicas, whose
    // servers the test kubelet starts through the instance script: they
    // copy the primary.
    labelled(&env, &client, &pod(0), "primary").await;
    for (i, server) in servers.iter_mut().enumerate().skip(1).take(2) {
        labelled(&env, &client, &pod(i), "replica").await;
        server.restart_as(member(&pod(i), "replica")).await.unwrap();
    }
    // The operator made the replication login: every replica streams, and
    // the status says so.
    eventually(&env, "every replica streaming", WAIT, || async {
        all_streaming(flavor, &dbs, &servers, &[1, 2])
            .await
            .then_some(())
    })
    .await;
    // The status follows: a replica that has just caught up may still be
    // reported CatchingUp until the next pass reads it.
    let expected = [
        MemberState::Primary,
        MemberState::Streaming,
        MemberState::Streaming,
    ];
    eventually(
        &env,
        "the status to show every replica streaming",
        WAIT,
        || async {
            let states: Vec<_> = dbs
                .get(NAME)
                .await
                .ok()?
                .status?
                .replication?
                .members
                .iter()
                .map(|m| m.state)
                .collect();
            (states == expected).then_some(())
        },
    )
    .await;
    // Sync mode: the primary waits for a replica's acknowledgement, which
    // every replica sends.
    for (i, server) in servers.iter().enumerate().take(3) {
        eventually(
            &env,
            "semi-synchronous replication on every member",
            WAIT,
            || async {
                let member = mysql::member(flavor, &admin(server)).await.ok()?;
                let semi = member.semi_sync?;
                let want = if i == 0 {
                    semi.source && semi.waiting
                } else {
                    semi.replica && !semi.source
                };
                want.then_some(())
            },
        )
        .await;
    }
    write(&servers[0], "replicated").await.unwrap();
    for replica in &servers[1..3] {
        holds(&env, replica, &["first", "replicated"]).await;
        refuses_writes(replica).await;
    }
    eventually(
        &env,
        "the replicas behind the read-only Service",
        WAIT,
        || async {
            let pods = endpoints(&client, &format!("{NAME}-readonly")).await;
            (pods == ["ledger-1", "ledger-2"]).then_some(())
        },
    )
    .await;

    // The primary's server dies under a writer; its KWOK pod stays Ready.
    // Beyond the failover delay the operator promotes a real replica.
    let (stop, writing) = start_writer(&service, &admin_password);
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers[0].kill();
    let promoted = eventually(&env, "a failover", WAIT, || async {
        let primary = dbs.get(NAME).await.ok()?.status?.replication?.primary?;
        (primary != pod(0)).then_some(primary)
    })
    .await;
    let new = index(&promoted);
    let other = 3 - new;
    labelled(&env, &client, &promoted, "primary").await;
    eventually(&env, "the primary Service to follow", WAIT, || async {
        (endpoints(&client, &format!("{NAME}-primary")).await == [promoted.clone()]).then_some(())
    })
    .await;
    // Sync mode: every write the old primary acknowledged is on the new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    holds_every(&servers[new], &writing.await.unwrap()).await;
    write(&servers[new], "after the failover").await.unwrap();
    let want = ["first", "replicated", "after the failover"];
    holds(&env, &servers[other], &want).await;

    // The old primary's pod was deleted and comes back as a replica; its
    // server restarts through the script, follows the new primary, and
    // refuses writes.
    labelled(&env, &client, &pod(0), "replica").await;
    servers[0]
        .restart_as(member(&pod(0), "replica"))
        .await
        .unwrap();
    holds(&env, &servers[0], &want).await;
    refuses_writes(&servers[0]).await;
    eventually(&env, "every replica streaming again", WAIT, || async {
        all_streaming(flavor, &dbs, &servers, &[0, other])
            .await
            .then_some(())
    })
    .await;

    // A switchover back to pod 0 with a writer running throughout: every
    // acknowledged write is on pod 0 afterwards.
    let (stop, writing) = start_writer(&service, &admin_password);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ask_for_primary(&dbs, &pod(0)).await;
    labelled(&env, &client, &pod(0), "primary").await;
    eventually(&env, "the primary Service on pod 0", WAIT, || async {
        (endpoints(&client, &format!("{NAME}-primary")).await == [pod(0)]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    holds_every(&servers[0], &writing.await.unwrap()).await;
    // The former primary rejoins as a replica of pod 0.
    labelled(&env, &client, &promoted, "replica").await;
    servers[new]
        .restart_as(member(&promoted, "replica"))
        .await
        .unwrap();
    write(&servers[0], "after the switchover").await.unwrap();
    let want = [
        "first",
        "replicated",
        "after the failover",
        "after the switchover",
    ];
    for server in &servers[..3] {
        holds(&env, server, &want).await;
    }
    refuses_writes(&servers[new]).await;
    eventually(
        &env,
        "every replica streaming after the switchover",
        WAIT,
        || async {
            all_streaming(flavor, &dbs, &servers, &[1, 2])
                .await
                .then_some(())
        },
    )
    .await;
    let failed_over = one_primary_and_events(&client, "FailedOver").await;
    assert!(
        failed_over
            .iter()
            .any(|m| m.contains(&promoted) && m.contains("in sync mode")),
        "{failed_over:?}"
    );
    let switched = one_primary_and_events(&client, "SwitchedOver").await;
    assert!(!switched.is_empty());

    // 3 -> 5: pods 3 and 4 copy the primary and stream.
    scale(&dbs, 5).await;
    for (i, server) in servers.iter_mut().enumerate().skip(3) {
        labelled(&env, &client, &pod(i), "replica").await;
        server.restart_as(member(&pod(i), "replica")).await.unwrap();
    }
    eventually(&env, "five members streaming", WAIT, || async {
        all_streaming(flavor, &dbs, &servers, &[1, 2, 3, 4])
            .await
            .then_some(())
    })
    .await;
    for server in &servers[3..] {
        holds(&env, server, &want).await;
    }
    // The primary moves to pod 4, the old one rejoins as its replica.
    ask_for_primary(&dbs, &pod(4)).await;
    labelled(&env, &client, &pod(4), "primary").await;
    labelled(&env, &client, &pod(0), "replica").await;
    servers[0]
        .restart_as(member(&pod(0), "replica"))
        .await
        .unwrap();
    eventually(&env, "every replica streaming from pod 4", WAIT, || async {
        all_streaming(flavor, &dbs, &servers, &[0, 1, 2, 3])
            .await
            .then_some(())
    })
    .await;
    write(&servers[4], "on pod 4").await.unwrap();

    // 5 -> 2 (the operator chooses the new primary): pod 4 stays until the
    // primary has left it; the StatefulSet never shrinks under it.
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let uid = async |i: usize| pods.get(&pod(i)).await.unwrap().uid().unwrap();
    let uids = [uid(0).await, uid(1).await];
    let moved_to = scale_to_two_off(&env, &client, &dbs, &pod(4)).await;
    let kept = index(&moved_to);
    let other = 1 - kept;
    labelled(&env, &client, &moved_to, "primary").await;
    write(&servers[kept], "after the scale-down").await.unwrap();
    // The other member follows the new primary (its server restarted, as
    // the kubelet would, if the operator replaced its pod).
    labelled(&env, &client, &pod(other), "replica").await;
    if uid(other).await != uids[other] {
        servers[other]
            .restart_as(member(&pod(other), "replica"))
            .await
            .unwrap();
    }
    eventually(&env, "the other member streaming", WAIT, || async {
        all_streaming(flavor, &dbs, &servers, &[other])
            .await
            .then_some(())
    })
    .await;
    let mut want = want.to_vec();
    want.extend(["on pod 4", "after the scale-down"]);
    holds(&env, &servers[other], &want).await;
    refuses_writes(&servers[other]).await;
}

/// Sets `spec.replicas`.
async fn scale(dbs: &Api<Database>, replicas: i32) {
    dbs.patch(
        NAME,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await
    .unwrap();
}
