//! PostgreSQL streaming replication on three real servers, started through
//! the instance script the operator ships to every pod
//! (`replication::postgresql::INSTANCE_SCRIPT`), with the operator's own
//! functions for the replication login, the slots and the promotion. The
//! primary Service is a loopback proxy the test points at the primary, as
//! the operator's role label points the real Service.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use operator::replication::postgresql;
use operator::users::{Password, Target};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::{Member, Postgres};
use tokio_postgres::error::SqlState;

const REPLICATION_PASSWORD: &str = "repl-Secret-2718";

fn address(pg: &Postgres) -> SocketAddr {
    format!("{}:{}", pg.host(), pg.port()).parse().unwrap()
}

fn target(pg: &Postgres) -> Target {
    Target {
        host: pg.host().to_owned(),
        port: pg.port(),
        admin_user: pg.admin_user().to_owned(),
        admin_password: Password::new(pg.admin_password()),
        default_database: "postgres".into(),
    }
}

/// Pod `pod` in `role`, following the primary Service.
fn member(script: &InstanceScript, service: &Proxy, pod: &str, role: &str) -> Member {
    script.member(
        pod,
        role,
        (service.host(), service.port()),
        REPLICATION_PASSWORD,
    )
}

/// The primary as the operator bootstraps it, started with `settings`: the
/// replication login and a slot for each pod in `replicas` made by the
/// operator's own functions, an empty `ledger` table, and a loopback proxy
/// standing for the primary Service. Also returns what `ensure_slots` did.
async fn bootstrap(
    settings: &str,
    replicas: &[&str],
) -> Result<(Postgres, Proxy, postgresql::Slots)> {
    let primary = Postgres::start_configured(settings).await?;
    let service = Proxy::start(address(&primary)).await?;
    postgresql::ensure_login(&target(&primary), &Password::new(REPLICATION_PASSWORD)).await?;
    let replicas: Vec<String> = replicas.iter().map(|pod| (*pod).to_owned()).collect();
    let slots = postgresql::ensure_slots(&target(&primary), "db", &replicas).await?;
    primary
        .connect()
        .await?
        .batch_execute("CREATE TABLE ledger (id serial PRIMARY KEY, memo text)")
        .await?;
    Ok((primary, service, slots))
}

/// The names in `ledger`, in order.
async fn ledger(pg: &Postgres) -> Result<Vec<String>> {
    let client = pg.connect().await?;
    let rows = client
        .query("SELECT memo FROM ledger ORDER BY id", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Waits until `pg` holds exactly `want` in `ledger`.
async fn replicated(pg: &Postgres, want: &[&str]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = ledger(pg).await.unwrap_or_default();
        if got == want {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "server on port {} holds {got:?}, not {want:?}\nlog:\n{}",
            pg.port(),
            std::fs::read_to_string(pg.log_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn write(pg: &Postgres, memo: &str) -> Result<()> {
    pg.connect()
        .await?
        .execute("INSERT INTO ledger (memo) VALUES ($1)", &[&memo])
        .await?;
    Ok(())
}

/// A write on `pg` fails as a write on a standby does.
async fn refuses_writes(pg: &Postgres) -> Result<()> {
    let err = write(pg, "must not land")
        .await
        .err()
        .context("a standby took a write")?;
    let code = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code);
    ensure!(
        code == Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "unexpected error: {err:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stream_fail_over_and_the_old_primary_is_fenced() -> Result<()> {
    let script = InstanceScript::postgresql()?;
    // Pod 0: the primary, as the operator bootstraps it.
    let (mut pod0, service, slots) =
        bootstrap(&postgresql::settings(1 << 30), &["db-1", "db-2"]).await?;
    assert_eq!(slots.created, ["db_1", "db_2"]);
    write(&pod0, "before the replicas").await?;

    // Pods 1 and 2 copy the primary and stream from it through their slots.
    let admin = pod0.admin_password().to_owned();
    let pod1 = Postgres::start_member(&admin, member(&script, &service, "db-1", "replica")).await?;
    let mut pod2 =
        Postgres::start_member(&admin, member(&script, &service, "db-2", "replica")).await?;
    write(&pod0, "streamed").await?;
    for replica in [&pod1, &pod2] {
        replicated(replica, &["before the replicas", "streamed"]).await?;
        refuses_writes(replica).await?;
        let state = postgresql::member(&target(replica)).await?;
        assert!(state.in_recovery && state.streaming, "{state:?}");
    }
    let active: i64 = pod0
        .connect()
        .await?
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name IN ('db_1', 'db_2')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(active, 2, "both replicas stream through their slots");

    // A write the replicas never receive: pod 2 is down and pod 1 is cut
    // off, then the primary dies. Async replication may lose it; the
    // operator says so in the failover event.
    pod2.stop();
    service.point_at("127.0.0.1:1".parse()?);
    write(&pod0, "lost with the old primary").await?;
    pod0.kill();

    // Failover: pod 1 is promoted on a new timeline and takes writes; the
    // Service follows it.
    postgresql::promote(&target(&pod1)).await?;
    let promoted = postgresql::member(&target(&pod1)).await?;
    assert!(!promoted.in_recovery, "{promoted:?}");
    assert!(promoted.timeline >= 2, "{promoted:?}");
    service.point_at(address(&pod1));
    write(&pod1, "after the failover").await?;
    let slots = postgresql::ensure_slots(
        &target(&pod1),
        "db",
        &["db-0".to_owned(), "db-2".to_owned()],
    )
    .await?;
    assert_eq!(
        slots.created,
        ["db_0", "db_2"],
        "a promoted standby has no slots"
    );

    // The old primary comes back as a replica: rewound to the new
    // primary's history, it loses the write nobody received, follows, and
    // refuses writes.
    let want = ["before the replicas", "streamed", "after the failover"];
    pod0.restart_as(member(&script, &service, "db-0", "replica"))
        .await?;
    replicated(&pod0, &want).await?;
    refuses_writes(&pod0).await?;
    let log = std::fs::read_to_string(pod0.log_path())?;
    assert!(log.contains("fencing it as a replica"), "{log}");
    // Rewound, not copied afresh: only the diverged pages were replaced.
    assert!(log.contains("pg_rewind: Done!"), "{log}");
    assert!(!log.contains("copying the primary afresh"), "{log}");
    // Pod 2 was a standby of the old timeline: it follows the new one.
    pod2.restart_as(member(&script, &service, "db-2", "replica"))
        .await?;
    replicated(&pod2, &want).await?;

    write(&pod1, "everyone sees this").await?;
    let want = [&want[..], &["everyone sees this"]].concat();
    for replica in [&pod0, &pod2] {
        replicated(replica, &want).await?;
        let state = postgresql::member(&target(replica)).await?;
        assert!(
            state.streaming && state.timeline == promoted.timeline,
            "{state:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_a_role_does_not_start() -> Result<()> {
    let script = InstanceScript::postgresql()?;
    let primary = Postgres::start_configured(&postgresql::settings(1 << 30)).await?;
    let service = Proxy::start(address(&primary)).await?;
    let mut unlabelled = member(&script, &service, "db-1", "");
    unlabelled
        .env
        .push(("ROLE_WAIT_SECONDS".into(), "1".into()));
    let err = Postgres::start_member(primary.admin_password(), unlabelled)
        .await
        .err()
        .context("a pod without a role label started a server")?;
    assert!(
        format!("{err:#}").contains("has not given this pod a role"),
        "{err:#}"
    );
    Ok(())
}

/// A backup of a Database with replicas dumps a replica (the read-only
/// Service), so that it does not load the primary, and the primary (the
/// fallback host) when no replica answers. The two Services share a port on
/// two loopback addresses, as they share 5432 in a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_read_from_a_replica_fall_back_to_the_primary_and_restore_into_replicas()
-> Result<()> {
    use testkit::agent_cli::{Bucket, agent, env_for, with};

    let script = InstanceScript::postgresql()?;
    let (primary, primary_service, _) =
        bootstrap(&postgresql::settings(1 << 30), &["db-1"]).await?;
    primary
        .connect()
        .await?
        .batch_execute(
            "INSERT INTO ledger (memo) SELECT 'row ' || i FROM generate_series(1, 500) i",
        )
        .await?;
    let replica = Postgres::start_member(
        primary.admin_password(),
        member(&script, &primary_service, "db-1", "replica"),
    )
    .await?;
    replicated(
        &replica,
        &ledger(&primary)
            .await?
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await?;

    // The Services, on one port at two addresses.
    let port = testkit::processes::free_port()?;
    let readonly = Proxy::start_at(format!("127.0.0.2:{port}").parse()?, address(&replica)).await?;
    let primary_at =
        Proxy::start_at(format!("127.0.0.3:{port}").parse()?, address(&primary)).await?;
    let bucket = Bucket::start().await;
    let backup = |key: &str| {
        let mut args = bucket
            .on(&primary, "db")
            .args("backup", &["--key-name", key]);
        // --host/--port as the backup Job gives them: the read-only Service.
        for (flag, value) in [("--host", readonly.host()), ("--port", &port.to_string())] {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value.to_owned();
        }
        with(args, &["--fallback-host", primary_at.host()])
    };
    let env = env_for(&bucket, primary.admin_user(), primary.admin_password());

    let from_replica = agent(&backup("from-replica"), &env).await.ok();
    assert!(
        from_replica
            .stderr
            .contains(&format!("at 127.0.0.2:{port}")),
        "{}",
        from_replica.stderr
    );
    assert!(!from_replica.stderr.contains("does not answer"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("db/from-replica/manifest.json").await)?;
    assert_eq!(manifest["rowCounts"]["postgres.public.ledger"], 500);

    // No replica answers: the primary is dumped.
    readonly.point_at("127.0.0.1:1".parse()?);
    let from_primary = agent(&backup("from-primary"), &env).await.ok();
    assert!(
        from_primary.stderr.contains("does not answer")
            && from_primary.stderr.contains("backing up from 127.0.0.3"),
        "{}",
        from_primary.stderr
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("db/from-primary/manifest.json").await)?;
    assert_eq!(manifest["rowCounts"]["postgres.public.ledger"], 500);
    drop(primary_at);

    // The backup taken from the replica restores into another Database
    // whose replicas already stream (as the restore Job does: through its
    // primary Service), and they receive it. That Database's own
    // replication login, with its own password, is kept: its replicas
    // still log in (a restarted one copies nothing and streams again).
    let restored = Postgres::start_configured(&postgresql::settings(1 << 30)).await?;
    let restored_service = Proxy::start(address(&restored)).await?;
    let own_password = "another-Repl-Secret-31";
    postgresql::ensure_login(&target(&restored), &Password::new(own_password)).await?;
    postgresql::ensure_slots(&target(&restored), "other", &["other-1".to_owned()]).await?;
    let restored_member = |role: &str| {
        script.member(
            "other-1",
            role,
            (restored_service.host(), restored_service.port()),
            own_password,
        )
    };
    let mut restored_replica =
        Postgres::start_member(restored.admin_password(), restored_member("replica")).await?;
    bucket
        .on(&restored, "db")
        .run("restore", &["--key-name", "from-replica"])
        .await
        .ok();
    let rows = ledger(&primary).await?;
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    replicated(&restored_replica, &rows).await?;
    restored_replica
        .restart_as(restored_member("replica"))
        .await?;
    write(&restored, "after the restore").await?;
    replicated(
        &restored_replica,
        &[&rows[..], &["after the restore"]].concat(),
    )
    .await?;
    let state = postgresql::member(&target(&restored_replica)).await?;
    assert!(state.streaming, "{state:?}");

    // And a restore drill of that backup passes.
    let drill = Postgres::start().await?;
    let run = bucket
        .on(&drill, "db")
        .run("verify", &["--key-name", "from-replica"])
        .await
        .ok();
    assert_eq!(run.json()["verified"], true, "{}", run.stderr);
    Ok(())
}

/// Inserts a row in a transaction of its own and returns its id once
/// COMMIT has answered: an implicit transaction commits only after the
/// statement's reply, so a returned row is not yet an acknowledged write.
async fn insert_committed(client: &mut tokio_postgres::Client) -> Result<i32> {
    let transaction = client.transaction().await?;
    let id = transaction
        .query_one("INSERT INTO ledger (memo) VALUES ('w') RETURNING id", &[])
        .await?
        .get(0);
    transaction.commit().await?;
    Ok(id)
}

/// Writers committing as fast as they can on `pg` until [`Writers::stop`],
/// reconnecting after errors, each counting the writes it saw acknowledged.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<i32>>>,
}

impl Writers {
    fn start(pg: &Postgres, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|_| {
                let config = pg.config();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let Ok((mut client, connection)) =
                            config.connect(tokio_postgres::NoTls).await
                        else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        tokio::spawn(connection);
                        while !stop.load(Ordering::SeqCst) {
                            match insert_committed(&mut client).await {
                                Ok(id) => acked.push(id),
                                Err(_) => break,
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        Writers { stop, tasks }
    }

    /// Stops them and returns every acknowledged id, once there are more
    /// than `at_least`.
    async fn stop(self, at_least: usize) -> Result<Vec<i32>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut acked = Vec::new();
        for task in self.tasks {
            acked.extend(task.await?);
        }
        ensure!(
            acked.len() > at_least,
            "the writers wrote little: {}",
            acked.len()
        );
        Ok(acked)
    }
}

/// The acknowledged ids `pg` lacks must be none.
async fn holds_every(pg: &Postgres, acked: &[i32]) -> Result<()> {
    let stored: BTreeSet<i32> = pg
        .connect()
        .await?
        .query("SELECT id FROM ledger", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i32> = acked.iter().filter(|id| !stored.contains(id)).collect();
    ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    Ok(())
}

/// The switchover's fence, under load: while writers commit as fast as they
/// can, `fence` stops them and returns a WAL position; once the replica has
/// replayed it, it holds every write the primary acknowledged. Three writers
/// make a commit racing the fence likely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_primary_acknowledges_nothing_its_replica_lacks() -> Result<()> {
    let script = InstanceScript::postgresql()?;
    let (primary, service, _) = bootstrap(&postgresql::settings(1 << 30), &["db-1"]).await?;
    let replica = Postgres::start_member(
        primary.admin_password(),
        member(&script, &service, "db-1", "replica"),
    )
    .await?;

    let writers = Writers::start(&primary, 3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let lsn = postgresql::fence(&target(&primary)).await?;
    postgresql::wait_replayed(&target(&replica), lsn, Duration::from_secs(30)).await?;
    postgresql::promote(&target(&replica)).await?;
    // The writers go on trying the fenced primary: it refuses them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writers.stop(50).await?;
    holds_every(&replica, &acked).await?;
    refuses_writes(&primary).await?;
    Ok(())
}

/// Sync mode as the operator sets it (`synchronous_standby_names` on every
/// member): a commit waits while no replica confirms it, and when the
/// primary dies under writers, the most advanced replica, promoted, holds
/// every write the primary acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_mode_a_failover_loses_no_acknowledged_write() -> Result<()> {
    let script = InstanceScript::postgresql()?;
    // The test servers lower synchronous_commit; a product server keeps
    // PostgreSQL's default, on.
    let settings = format!("{}synchronous_commit = on\n", postgresql::settings(1 << 30));
    let (mut pod0, service, _) = bootstrap(&settings, &["db-1", "db-2"]).await?;
    let admin = pod0.admin_password().to_owned();
    let pod1 = Postgres::start_member(&admin, member(&script, &service, "db-1", "replica")).await?;
    let mut pod2 =
        Postgres::start_member(&admin, member(&script, &service, "db-2", "replica")).await?;
    let pods = ["db-0".to_owned(), "db-1".to_owned(), "db-2".to_owned()];
    let names = postgresql::synchronous_standby_names(&pods, true);
    for pg in [&pod0, &pod1, &pod2] {
        postgresql::set_synchronous_standby_names(&target(pg), &names).await?;
        let state = postgresql::member(&target(pg)).await?;
        assert_eq!(state.synchronous_standby_names, names);
    }

    // No replica confirms (pod 2 down, pod 1 cut off): a commit waits.
    pod2.stop();
    service.point_at("127.0.0.1:1".parse()?);
    let mut client = pod0.connect().await?;
    let waiting = tokio::time::timeout(Duration::from_secs(3), insert_committed(&mut client)).await;
    ensure!(
        waiting.is_err(),
        "a commit returned while no replica confirmed it: {waiting:?}"
    );
    // The replicas come back: commits return again.
    service.point_at(address(&pod0));
    drop(client);
    pod2.restart_as(member(&script, &service, "db-2", "replica"))
        .await?;
    let mut client = pod0.connect().await?;
    tokio::time::timeout(Duration::from_secs(30), insert_committed(&mut client))
        .await
        .context("a commit waited with both replicas back")??;

    // Writers commit as fast as they can; the primary dies among them.
    let writers = Writers::start(&pod0, 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pod0.kill();
    let acked = writers.stop(20).await?;

    // As the operator's failover: every replica answers, the most advanced
    // one is promoted.
    let mut best = None;
    for pg in [&pod1, &pod2] {
        let state = postgresql::member(&target(pg)).await?;
        let position = state.received_lsn.unwrap_or(state.lsn).max(state.lsn);
        if best.as_ref().is_none_or(|(p, _)| position > *p) {
            best = Some((position, pg));
        }
    }
    let (_, promoted) = best.context("no replica")?;
    postgresql::promote(&target(promoted)).await?;
    holds_every(promoted, &acked).await?;
    // The promoted standby waits for the others from its first commit.
    let state = postgresql::member(&target(promoted)).await?;
    assert_eq!(state.synchronous_standby_names, names);
    Ok(())
}

/// A replica away so long that the primary gave up its slot
/// (`max_slot_wal_keep_size`): restarted through the instance script, it
/// is copied afresh (never started on data it cannot bring up to date) and
/// streams again once the operator has made its slot again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_slot_was_lost_is_copied_afresh() -> Result<()> {
    let script = InstanceScript::postgresql()?;
    // A small bound, so that a few WAL segments exceed it.
    let settings = format!(
        "{}max_slot_wal_keep_size = 32MB\nwal_keep_size = 0\n",
        postgresql::settings(1 << 30)
    );
    let (primary, service, _) = bootstrap(&settings, &["db-1"]).await?;
    write(&primary, "before").await?;
    let mut replica = Postgres::start_member(
        primary.admin_password(),
        member(&script, &service, "db-1", "replica"),
    )
    .await?;
    replicated(&replica, &["before"]).await?;

    // The replica is away while the primary writes beyond the bound.
    replica.stop();
    let client = primary.connect().await?;
    for _ in 0..5 {
        client
            .batch_execute(
                "INSERT INTO ledger (memo) VALUES ('while away'); SELECT pg_switch_wal();",
            )
            .await?;
    }
    client.batch_execute("CHECKPOINT").await?;
    let status: String = client
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'db_1'",
            &[],
        )
        .await?
        .get(0);
    ensure!(status == "lost", "the slot is {status}, not lost");

    replica
        .restart_as(member(&script, &service, "db-1", "replica"))
        .await?;
    let log = std::fs::read_to_string(replica.log_path())?;
    ensure!(log.contains("its slot db_1 is lost"), "{log}");
    ensure!(log.contains("kept the previous data"), "{log}");
    // The operator's next pass makes the slot again.
    let slots = postgresql::ensure_slots(&target(&primary), "db", &["db-1".to_owned()]).await?;
    assert_eq!(slots.created, ["db_1"]);
    let mut want = vec!["before"];
    want.extend(["while away"; 5]);
    replicated(&replica, &want).await?;
    write(&primary, "after").await?;
    want.push("after");
    replicated(&replica, &want).await?;
    let state = postgresql::member(&target(&replica)).await?;
    assert!(state.streaming, "{state:?}");
    Ok(())
}
