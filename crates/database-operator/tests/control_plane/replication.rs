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
//! killed while its KWOK pod stays Ready and a writer commits through the
//! primary Service, and the operator promotes the most advanced real
//! replica (sync mode: every acknowledged write survives), moves the
//! labels, the Services follow, and the old primary comes back as a
//! replica that refuses writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{self, types};
use database_operator_api::v1::replication::MemberState;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use operator::builders::topology::ordinal;
use testkit::harness::{self, Env, create, eventually};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::{Member, Postgres};

pub(crate) const NS: &str = "replication";
pub(crate) const NAME: &str = "ledger";
pub(crate) const REPLICATION_PASSWORD: &str = "replPw1234567890";
pub(crate) const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn pod(i: usize) -> String {
    format!("{NAME}-{i}")
}

pub(crate) fn address(pg: &Postgres) -> SocketAddr {
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

/// Each pod's role label (empty when the API does not answer, as when the
/// control plane stops at the end of the test).
pub(crate) async fn roles(client: &Client) -> BTreeMap<String, String> {
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={NAME}")))
        .await;
    pods.map(|pods| {
        pods.items
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
    })
    .unwrap_or_default()
}

/// Waits until pod `name` exists with `role`, and returns its uid.
pub(crate) async fn labelled(env: &Env, client: &Client, name: &str, role: &str) -> String {
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

pub(crate) async fn holds(env: &Env, pg: &Postgres, want: &[&str]) {
    eventually(
        env,
        &format!("server {} to hold {want:?}", pg.port()),
        WAIT,
        || async { (ledger(pg).await == want).then_some(()) },
    )
    .await;
}

/// One insert on `pg`. In sync mode it waits for a replica's confirmation:
/// a minute without one fails the test rather than hanging it.
pub(crate) async fn write(pg: &Postgres, memo: &str) -> Result<u64, tokio_postgres::Error> {
    let client = pg.connect().await.expect("connect");
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&memo];
    let insert = client.execute("INSERT INTO ledger (memo) VALUES ($1)", &params);
    tokio::time::timeout(Duration::from_secs(60), insert)
        .await
        .unwrap_or_else(|_| panic!("{memo:?} waited a minute for a replica to confirm it"))
}

/// The operator on a new local control plane, reaching pod `i`'s server at
/// `servers[i]` and the primary Service at `service` (`--resolve`), a test
/// kube-proxy keeping `service` on the pod labelled primary, and the
/// Database's admin (`admin`: user, password) and replication Secrets made
/// in the namespace before the Database.
pub(crate) async fn stage(
    servers: &[SocketAddr],
    service: &Arc<Proxy>,
    admin: (&str, &str),
    replication_password: &str,
) -> (Env, Client, tokio::task::JoinHandle<()>) {
    let mut args: Vec<String> = servers
        .iter()
        .enumerate()
        .flat_map(|(i, server)| {
            [
                "--resolve".to_owned(),
                format!(
                    "{}.{NAME}-headless.{NS}=127.0.0.1:{}",
                    pod(i),
                    server.port()
                ),
            ]
        })
        .collect();
    args.extend([
        "--resolve".to_owned(),
        format!("{NAME}-primary.{NS}=127.0.0.1:{}", service.port()),
    ]);
    let env = harness::start(args).await.unwrap();
    let client = env.client().await;
    let addresses = servers
        .iter()
        .enumerate()
        .map(|(i, server)| (pod(i), *server))
        .collect();
    let kube_proxy = follow_primary(client.clone(), service.clone(), addresses);
    env.namespace(NS).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    create(
        &secrets,
        &secret(&format!("{NAME}-secret"), admin.0, admin.1),
    )
    .await;
    create(
        &secrets,
        &secret(
            &format!("{NAME}-replication"),
            operator::replication::LOGIN,
            replication_password,
        ),
    )
    .await;
    (env, client, kube_proxy)
}

/// As kube-proxy: keeps the primary Service pointed at the server of the
/// pod labelled primary.
fn follow_primary(
    client: Client,
    service: Arc<Proxy>,
    servers: BTreeMap<String, SocketAddr>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = None;
        loop {
            let primary = roles(&client)
                .await
                .into_iter()
                .find(|(_, role)| role == "primary")
                .map(|(pod, _)| pod);
            if let Some(pod) = primary
                && current.as_ref() != Some(&pod)
            {
                service.point_at(servers[&pod]);
                current = Some(pod);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Writes rows through the primary Service until `stop`, reconnecting after
/// errors, and returns the ids of the writes the server acknowledged.
fn writer(
    service: (String, u16),
    password: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<i32>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut config = tokio_postgres::Config::new();
        config
            .host(&service.0)
            .port(service.1)
            .user("postgres")
            .password(&password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        while !stop.load(Ordering::SeqCst) {
            let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(connection);
            let mut client = client;
            while !stop.load(Ordering::SeqCst) {
                // Acknowledged means COMMIT answered: an implicit
                // transaction commits only after the statement's reply. In
                // sync mode a commit waits while no replica confirms: one
                // that has not answered in 5 s is given up (not counted).
                let commit =
                    tokio::time::timeout(Duration::from_secs(5), insert_committed(&mut client));
                match commit.await {
                    Ok(Ok(id)) => acked.push(id),
                    _ => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked
    })
}

/// Asserts that `pg` holds every acknowledged id in `acked` (of which there
/// must be more than 10), and returns the ids it holds.
async fn holds_every(pg: &Postgres, acked: &[i32]) -> std::collections::BTreeSet<i32> {
    assert!(acked.len() > 10, "the writer wrote little: {}", acked.len());
    let stored: std::collections::BTreeSet<i32> = pg
        .connect()
        .await
        .unwrap()
        .query("SELECT id FROM ledger", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i32> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    stored
}

/// Starts a [`writer`] through the primary Service and lets it write for
/// two seconds.
async fn writing_for_2s(
    service: &Proxy,
    password: &str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<i32>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(
        (service.host().to_owned(), service.port()),
        password.to_owned(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    (stop, writing)
}

/// Inserts a row in a transaction of its own and returns its id once
/// COMMIT has answered.
async fn insert_committed(
    client: &mut tokio_postgres::Client,
) -> Result<i32, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let id = transaction
        .query_one(
            "INSERT INTO ledger (memo) VALUES ('writer') RETURNING id",
            &[],
        )
        .await?
        .get(0);
    transaction.commit().await?;
    Ok(id)
}

/// What the later steps of the test share.
#[derive(Clone, Copy)]
struct World<'a> {
    env: &'a Env,
    client: &'a Client,
    dbs: &'a Api<Database>,
    script: &'a InstanceScript,
    service: &'a Proxy,
}

/// As the kubelet, until every replica streams: restarts the server of a
/// replica whose pod the operator replaced (one that could not follow a
/// new primary), as the new pod's role label says.
async fn settle(world: World<'_>, servers: &mut [Postgres], uids: &mut BTreeMap<String, String>) {
    let pods = Api::<Pod>::namespaced(world.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(60);
    loop {
        let status = world.dbs.get(NAME).await.ok().and_then(|d| d.status);
        let said = status
            .as_ref()
            .and_then(|s| condition::find(&s.conditions, types::REPLICATING))
            .is_some_and(|c| c.status == condition::ConditionStatus::True);
        // The condition may still be the one from before a move of the
        // primary: each replica's own server must stream too.
        let mut streaming = true;
        for (i, server) in servers.iter_mut().enumerate() {
            let Ok(Some(p)) = pods.get_opt(&pod(i)).await else {
                continue;
            };
            let uid = p.uid().unwrap_or_default();
            let replica = p.labels().get("example.com/role").map(String::as_str) == Some("replica");
            if replica && !receiving(server).await {
                streaming = false;
            }
            if replica && uids.get(&pod(i)) != Some(&uid) {
                server.restart_as(world.replica(&pod(i))).await.unwrap();
                uids.insert(pod(i), uid);
            }
        }
        if said && streaming {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replicas did not all stream: {status:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `pg`'s WAL receiver streams from a primary.
async fn receiving(pg: &Postgres) -> bool {
    let Ok(client) = pg.connect().await else {
        return false;
    };
    client
        .query_opt("SELECT status FROM pg_stat_wal_receiver", &[])
        .await
        .ok()
        .flatten()
        .is_some_and(|row| row.get::<_, String>(0) == "streaming")
}

impl World<'_> {
    /// Pod `pod` starting as a replica that follows the primary Service.
    fn replica(&self, pod: &str) -> Member {
        self.script.member(
            pod,
            "replica",
            (self.service.host(), self.service.port()),
            REPLICATION_PASSWORD,
        )
    }
}

/// The ordinal of `pod`, as an index into the test's servers.
pub(crate) fn index(pod: &str) -> usize {
    usize::try_from(ordinal(pod).expect("a StatefulSet pod")).unwrap()
}

/// Asserts that exactly one pod is labelled primary, and returns the
/// messages of the namespace's events with `reason`.
pub(crate) async fn one_primary_and_events(client: &Client, reason: &str) -> Vec<String> {
    assert_eq!(
        roles(client)
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
    events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message.clone())
        .collect()
}

/// Sets `spec.replication.primary`: a switchover to `pod`.
pub(crate) async fn ask_for_primary(dbs: &Api<Database>, pod: &str) {
    let patch = serde_json::json!({"spec": {"replication": {"primary": pod}}});
    dbs.patch(
        NAME,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .unwrap();
}

/// The pods the Service's EndpointSlices name.
pub(crate) async fn endpoints(client: &Client, service: &str) -> Vec<String> {
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
    // The test servers lower synchronous_commit; a product server keeps
    // PostgreSQL's default, on, which sync mode relies on.
    let settings = format!(
        "{}synchronous_commit = on\n",
        operator::replication::postgresql::settings(1 << 30)
    );
    let mut servers = vec![Postgres::start_configured(&settings).await.unwrap()];
    let admin_password = servers[0].admin_password().to_owned();
    // Pods 0-2 first; pods 3 and 4 when the Database scales to 5.
    for _ in 1..5 {
        servers.push(Postgres::prepare_member(&admin_password).unwrap());
    }
    let service = Arc::new(Proxy::start(address(&servers[0])).await.unwrap());
    create_ledger(&servers[0]).await;

    let addresses: Vec<SocketAddr> = servers.iter().map(address).collect();
    let (env, client, _kube_proxy) = stage(
        &addresses,
        &service,
        ("postgres", &admin_password),
        REPLICATION_PASSWORD,
    )
    .await;
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    let world = World {
        env: &env,
        client: &client,
        dbs: &dbs,
        script: &script,
        service: &service,
    };
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"engine": "postgresql", "version": "16.4", "replicas": 3,
                 "storage": {"size": "1Gi"},
                 "replication": {"failoverDelay": "5s", "mode": "sync"}}
    }))
    .unwrap();
    create(&dbs, &db).await;

    // Pod 0 is the primary from the start; the others replicas. The test,
    // as the kubelet, starts each replica's server with its label.
    labelled(&env, &client, &pod(0), "primary").await;
    // The uid of each pod when its server last (re)started, as the kubelet
    // knows which containers it runs.
    let mut uids = BTreeMap::new();
    for (i, server) in servers.iter_mut().enumerate().skip(1).take(2) {
        uids.insert(pod(i), labelled(&env, &client, &pod(i), "replica").await);
        server.restart_as(world.replica(&pod(i))).await.unwrap();
    }
    let services = Api::<Service>::namespaced(client.clone(), NS);
    let selector = |s: Service| s.spec.unwrap().selector.unwrap();
    let primary_selector = selector(services.get(&format!("{NAME}-primary")).await.unwrap());
    assert_eq!(primary_selector["example.com/role"], "primary");
    let readonly_selector = selector(services.get(&format!("{NAME}-readonly")).await.unwrap());
    assert_eq!(readonly_selector["example.com/role"], "replica");
    assert_eq!(readonly_selector["example.com/caught-up"], "true");

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
    for replica in &servers[1..3] {
        holds(&env, replica, &["first", "replicated"]).await;
    }
    assert_eq!(
        endpoints(&client, &format!("{NAME}-primary")).await,
        ["ledger-0"]
    );
    // Caught-up replicas only serve reads (they are labelled once streaming).
    eventually(
        &env,
        "the caught-up replicas behind the read-only Service",
        WAIT,
        || async {
            let pods = endpoints(&client, &format!("{NAME}-readonly")).await;
            (pods == ["ledger-1", "ledger-2"]).then_some(())
        },
    )
    .await;

    // In sync mode every member waits for one replica.
    for pg in &servers[..3] {
        eventually(
            &env,
            "synchronous_standby_names on every member",
            WAIT,
            || async {
                let row = pg
                    .connect()
                    .await
                    .ok()?
                    .query_one("SHOW synchronous_standby_names", &[])
                    .await
                    .ok()?;
                (row.get::<_, String>(0) == r#"ANY 1 ("ledger_0", "ledger_1", "ledger_2")"#)
                    .then_some(())
            },
        )
        .await;
    }

    // The primary's server dies under a writer; its KWOK pod stays Ready.
    // Beyond the failover delay the operator promotes a real replica.
    let old_uid = Api::<Pod>::namespaced(client.clone(), NS)
        .get(&pod(0))
        .await
        .unwrap()
        .uid()
        .unwrap();
    let (stop, writing) = writing_for_2s(&service, &admin_password).await;
    servers[0].kill();
    let promoted = eventually(&env, "a failover", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        let primary = status.replication?.primary?;
        (primary != pod(0)).then_some(primary)
    })
    .await;
    let new = index(&promoted);
    labelled(&env, &client, &promoted, "primary").await;
    // Sync mode: every write the old primary acknowledged is on the new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writing.await.unwrap();
    holds_every(&servers[new], &acked).await;
    // The writer's rows have served; the ledger reads as the story again.
    servers[new]
        .connect()
        .await
        .unwrap()
        .execute("DELETE FROM ledger WHERE memo = 'writer'", &[])
        .await
        .unwrap();
    write(&servers[new], "after the failover").await.unwrap();
    eventually(&env, "the primary Service to follow", WAIT, || async {
        (endpoints(&client, &format!("{NAME}-primary")).await == [promoted.clone()]).then_some(())
    })
    .await;

    // The old primary's pod was deleted and comes back as a replica: its
    // server restarts through the script, rewound, and refuses writes.
    let new_uid = labelled(&env, &client, &pod(0), "replica").await;
    assert_ne!(new_uid, old_uid, "the old primary's pod was replaced");
    uids.insert(pod(0), new_uid);
    servers[0].restart_as(world.replica(&pod(0))).await.unwrap();
    let log = std::fs::read_to_string(servers[0].log_path()).unwrap();
    assert!(
        log.contains("pg_rewind: Done!"),
        "rewound, not copied afresh:\n{log}"
    );
    let want = ["first", "replicated", "after the failover"];
    for pg in &servers[..3] {
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
    let failed_over = one_primary_and_events(&client, "FailedOver").await;
    assert!(
        failed_over
            .iter()
            .any(|m| m.contains(&promoted) && m.contains("in sync mode")),
        "{failed_over:?}"
    );
    switch_back_with_a_writer(world, &mut servers, &mut uids, &promoted, &admin_password).await;
    scale_down_off_the_primary(world, &mut servers, &mut uids).await;
}

/// The Database scales from 3 to 5 members (the new ones copy the primary
/// and stream), the primary moves to pod 2, then the Database scales to 2
/// members: the operator keeps pod 2 until the primary has moved to a
/// remaining replica, then the StatefulSet removes pods 2 to 4. The primary
/// is never removed, and `<name>-readonly` never sends reads to it.
async fn scale_down_off_the_primary(
    world: World<'_>,
    servers: &mut [Postgres],
    uids: &mut BTreeMap<String, String>,
) {
    let World {
        env, client, dbs, ..
    } = world;
    let primary_is = |pod: String| async move {
        let status = dbs.get(NAME).await.ok()?.status?;
        (status.replication?.primary? == pod).then_some(())
    };
    let restart_as_replica =
        async |servers: &mut [Postgres], uids: &mut BTreeMap<String, String>, i: usize| {
            uids.insert(pod(i), labelled(env, client, &pod(i), "replica").await);
            servers[i].restart_as(world.replica(&pod(i))).await.unwrap();
        };
    // Every replica streams (the old primary just rejoined).
    settle(world, servers, uids).await;
    // 3 -> 5: pods 3 and 4 copy the primary (the test kubelet starts their
    // servers) and stream.
    dbs.patch(
        NAME,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    for i in [3, 4] {
        labelled(env, client, &pod(i), "replica").await;
    }
    settle(world, servers, uids).await;
    let first_rows = ledger(&servers[0]).await;
    for pg in &servers[3..] {
        holds(
            env,
            pg,
            &first_rows.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
    }
    ask_for_primary(dbs, &pod(2)).await;
    eventually(env, "the primary on pod 2", WAIT, || primary_is(pod(2))).await;
    labelled(env, client, &pod(2), "primary").await;
    restart_as_replica(servers, uids, 0).await;
    // Pod 0, rewound, streams from pod 2; so does pod 1, restarted by the
    // operator if it received WAL from pod 0 that pod 2 never had.
    settle(world, servers, uids).await;

    // Scale to 2 (and let the operator choose): pod 2 stays until the
    // primary has left it.
    let moved_to = scale_to_two_off(env, client, dbs, &pod(2)).await;
    let new = index(&moved_to);
    // Which of pods 0 and 1 it is depends on which had received more of
    // pod 2's WAL (the most advanced streaming replica is chosen). The other
    // may have received WAL the new primary never had: the operator
    // restarts it, and the kubelet brings its server back rewound.
    settle(world, servers, uids).await;
    write(&servers[new], "after the scale-down").await.unwrap();
}

/// The table every test writes to, on the first primary, with one row.
pub(crate) async fn create_ledger(pg: &Postgres) {
    pg.connect()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE ledger (id serial PRIMARY KEY, memo text);
             INSERT INTO ledger (memo) VALUES ('first');",
        )
        .await
        .unwrap();
}

/// Scales the Database to 2 while its primary is `removed` (pod 2 or
/// beyond), letting the operator choose the new primary, and returns it
/// (pod 0 or 1) once the StatefulSet has two pods. Throughout, the
/// StatefulSet never shrinks under the primary and reads never go to it.
pub(crate) async fn scale_to_two_off(
    env: &Env,
    client: &Client,
    dbs: &Api<Database>,
    removed: &str,
) -> String {
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), NS);
    let sampler = Sampler::start(client, dbs).await;
    dbs.patch(
        NAME,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            serde_json::json!({"spec": {"replicas": 2, "replication": {"primary": null}}}),
        ),
    )
    .await
    .unwrap();
    let moved_to = eventually(
        env,
        &format!("the primary to leave {removed}"),
        WAIT,
        || async {
            let primary = dbs.get(NAME).await.ok()?.status?.replication?.primary?;
            (primary != removed).then_some(primary)
        },
    )
    .await;
    assert!(moved_to == pod(0) || moved_to == pod(1), "{moved_to}");
    eventually(env, "the StatefulSet to scale to 2", WAIT, || async {
        let sts = statefulsets.get(NAME).await.ok()?;
        (sts.spec.replicas == Some(2)).then_some(())
    })
    .await;
    sampler.stop_and_check(removed, 2).await;
    moved_to
}

/// Samples, until stopped, the StatefulSet's size, the recorded primary and
/// the read-only Service's endpoints: what a scale-down that must move the
/// primary first is judged by.
struct Sampler {
    watching: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Sample>, Vec<Readers>)>,
}

/// The StatefulSet's size and the recorded primary at one moment.
type Sample = (Option<i32>, Option<String>);

/// The read-only Service's endpoints, and when they were read.
type Readers = (tokio::time::Instant, Vec<String>);

/// How long the read-only Service may still name a pod after it became the
/// recorded primary: the operator relabels it right after recording it, and
/// the EndpointSlice controller follows the label when it gets to it (on a
/// busy machine, seconds later). A primary still served as a reader after
/// this is the operator's fault.
const ENDPOINTS_FOLLOW_WITHIN: Duration = Duration::from_secs(10);

impl Sampler {
    /// Starts sampling, and returns once the first sample is taken: the
    /// state before the change the caller makes next.
    async fn start(client: &Client, dbs: &Api<Database>) -> Sampler {
        let watching = Arc::new(AtomicBool::new(true));
        let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), NS);
        let (dbs, client, still) = (dbs.clone(), client.clone(), watching.clone());
        let (first_taken, first) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut readers = Vec::new();
            let mut first_taken = Some(first_taken);
            while still.load(Ordering::SeqCst) {
                let at = tokio::time::Instant::now();
                readers.push((at, endpoints(&client, &format!("{NAME}-readonly")).await));
                let size = statefulsets
                    .get(NAME)
                    .await
                    .ok()
                    .and_then(|s| s.spec.replicas);
                let primary = dbs
                    .get(NAME)
                    .await
                    .ok()
                    .and_then(|d| d.status?.replication?.primary);
                seen.push((size, primary));
                if let Some(taken) = first_taken.take() {
                    let _ = taken.send(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (seen, readers)
        });
        let _ = first.await;
        Sampler { watching, task }
    }

    /// Stops sampling, and asserts that the StatefulSet never had `size`
    /// pods while `removed` was the primary, that it had 5 before, and that
    /// reads never went to a settled primary: no endpoint list names a pod
    /// that had been the recorded primary for longer than
    /// [`ENDPOINTS_FOLLOW_WITHIN`] when the list was read.
    async fn stop_and_check(self, removed: &str, size: i32) {
        self.watching.store(false, Ordering::SeqCst);
        let (samples, readers) = self.task.await.unwrap();
        // When the current primary was first recorded; the one of the
        // first sample was settled before sampling began.
        let mut since = None;
        for (i, (at, pods)) in readers.iter().enumerate() {
            if i > 0 && samples[i].1 != samples[i - 1].1 {
                since = Some(*at);
            }
            let Some(primary) = &samples[i].1 else {
                continue;
            };
            let recorded_for = since.map_or(Duration::MAX, |t| at.duration_since(t));
            assert!(
                recorded_for <= ENDPOINTS_FOLLOW_WITHIN || !pods.contains(primary),
                "sample {i}: {pods:?} includes {primary}, the primary for {recorded_for:?}"
            );
        }
        assert!(
            !samples
                .iter()
                .any(|(n, primary)| *n == Some(size) && primary.as_deref() == Some(removed)),
            "the StatefulSet shrank while {removed} was the primary: {samples:?}"
        );
        assert!(samples.iter().any(|(n, _)| *n == Some(5)), "{samples:?}");
    }
}

/// A planned switchover back to pod 0, with a writer running throughout
/// through the primary Service: no acknowledged write is lost, and the old
/// primary (`from`) rejoins as a replica.
async fn switch_back_with_a_writer(
    world: World<'_>,
    servers: &mut [Postgres],
    uids: &mut BTreeMap<String, String>,
    from: &str,
    admin_password: &str,
) {
    let World {
        env,
        client,
        dbs,
        service,
        ..
    } = world;
    let old = index(from);
    let (stop, writing) = writing_for_2s(service, admin_password).await;
    ask_for_primary(dbs, &pod(0)).await;
    eventually(env, "the switchover", WAIT, || async {
        let status = dbs.get(NAME).await.ok()?.status?;
        (status.replication?.primary? == pod(0)).then_some(())
    })
    .await;
    labelled(env, client, &pod(0), "primary").await;
    // The old primary restarts as a replica (in sync mode pod 0's commits
    // wait for it or for the third member).
    uids.insert(
        from.to_owned(),
        labelled(env, client, from, "replica").await,
    );
    servers[old].restart_as(world.replica(from)).await.unwrap();
    // Writes go on, now on pod 0, through the Service.
    let switched_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writing.await.unwrap();
    let stored = holds_every(&servers[0], &acked).await;
    let newest_acked = acked.iter().max().copied().unwrap();
    let written_on_pod0: i64 = servers[0]
        .connect()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM ledger WHERE memo = 'writer' AND id = $1",
            &[&newest_acked],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written_on_pod0, 1, "writes resumed on pod 0");
    assert!(switched_at.elapsed() >= Duration::from_secs(3));

    // The old primary follows as a replica.
    let rows = stored.len();
    let follower = &servers[old];
    eventually(env, "the old primary to follow", WAIT, || async {
        (ledger(follower).await.len() == rows).then_some(())
    })
    .await;
    let refused = write(follower, "must not land").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{refused}"
    );
    let switched: Vec<String> = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SwitchedOver"))
        .filter_map(|e| e.message)
        .collect();
    assert_eq!(switched.len(), 1, "{switched:?}");
}
