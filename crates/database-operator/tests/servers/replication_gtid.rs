//! The instance scripts of the mysql engine's flavors
//! (`replication::mysql::instance_script`) and the operator's replication
//! calls (`replication::mysql::{member, ensure_login, promote, fence,
//! wait_applied}`) on three real servers of each flavor (MariaDB from
//! Debian, MySQL from Debian unstable): replicas start empty and copy the
//! primary through the script (MariaDB: a consistent dump; MySQL: the clone
//! plugin), follow it by GTID behind a loopback proxy that stands for the
//! primary Service, and refuse the admin's writes; after a failover a
//! former primary that took a write nobody received is copied afresh, its
//! data kept; after a switchover the old primary follows without a copy;
//! sync mode waits for a replica, and its fallback is seen.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use database_operator_api::v1::Flavor;
use mysql_async::prelude::Queryable;
use operator::replication::{self, mysql};
use operator::users::{Password, Target};
use testkit::proxy::Proxy;
use testkit::replication::InstanceScript;
use testkit::servers::{Mariadb, Mysql};

use super::replication_mysql::{holds, refuses_admin_writes, write};

const PASSWORD: &str = "repl'Pw\\1618";

fn address(server: &Mariadb) -> SocketAddr {
    format!("{}:{}", server.host(), server.port())
        .parse()
        .unwrap()
}

/// The admin login at `server`, as the operator reaches a member.
fn admin(server: &Mariadb) -> Target {
    Target {
        host: server.host().to_owned(),
        port: server.port(),
        admin_user: server.admin_user().to_owned(),
        admin_password: Password::new(server.admin_password()),
        default_database: "mysql".into(),
    }
}

/// The login the operator drives `flavor`'s replication with.
fn control(flavor: Flavor, server: &Mariadb) -> Target {
    match mysql::control_login(flavor) {
        mysql::ControlLogin::Admin => admin(server),
        mysql::ControlLogin::Replication => Target {
            admin_user: replication::LOGIN.into(),
            admin_password: Password::new(PASSWORD),
            ..admin(server)
        },
    }
}

/// Waits until the operator sees `server` as a streaming replica.
async fn streams(flavor: Flavor, server: &Mariadb) -> Result<()> {
    for _ in 0..300 {
        let member = mysql::member(flavor, &admin(server)).await;
        if member.as_ref().is_ok_and(|m| m.in_recovery && m.streaming) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "server on port {} does not stream: {:?}",
        server.port(),
        mysql::member(flavor, &admin(server)).await
    )
}

fn log(server: &Mariadb) -> String {
    std::fs::read_to_string(server.log_path()).unwrap_or_default()
}

/// What the flavor's instance script says, and how it copies.
struct Says {
    copies: &'static str,
    diverged: &'static str,
    follows_after_switchover: &'static str,
}

fn says(flavor: Flavor) -> Says {
    match flavor {
        Flavor::Mariadb => Says {
            copies: "copying the primary (mariadb-dump",
            diverged: "the primary refused this server's position",
            follows_after_switchover: "data of a former primary: asking the primary for its position",
        },
        Flavor::Mysql => Says {
            copies: "copying the primary (CLONE INSTANCE)",
            diverged: "this server holds transactions the primary never had",
            follows_after_switchover: "data of a member: asking the primary whether it may follow",
        },
    }
}

/// The operator's server settings for `flavor` as options.
fn options(flavor: Flavor) -> Vec<String> {
    match flavor {
        Flavor::Mariadb => testkit::replication::mariadb_options(),
        Flavor::Mysql => testkit::replication::mysql_options(),
    }
}

/// Three members: pod 0 the primary, started as the image's entrypoint
/// would have initialised it, and the replication login made by the
/// operator; pods 1 and 2 empty, started through the instance script,
/// which copies the primary behind `service`.
struct Cluster {
    script: InstanceScript,
    servers: Vec<Mariadb>,
    service: Proxy,
}

impl Cluster {
    async fn start(flavor: Flavor) -> Result<Cluster> {
        let script = match flavor {
            Flavor::Mariadb => InstanceScript::mariadb()?,
            Flavor::Mysql => InstanceScript::mysql()?,
        };
        let mut primary_options = options(flavor);
        primary_options.push("--server-id=1".into());
        let primary_options: Vec<&str> = primary_options.iter().map(String::as_str).collect();
        let primary = match flavor {
            Flavor::Mariadb => Mariadb::start_with(&primary_options).await?,
            Flavor::Mysql => Mysql::start_with(&primary_options).await?.into_inner(),
        };
        // The operator keeps the login on every pass: on MariaDB the second
        // finds the admin login without its bypass, and keeps the login as
        // it is.
        for _ in 0..2 {
            mysql::ensure_login(flavor, &admin(&primary), &Password::new(PASSWORD)).await?;
        }
        let mut conn = primary.connect().await?;
        conn.query_drop("CREATE DATABASE app").await?;
        conn.query_drop("CREATE TABLE app.ledger (id INT AUTO_INCREMENT PRIMARY KEY, memo TEXT)")
            .await?;
        drop(conn);
        write(&primary, "first").await?;
        let service = Proxy::start(address(&primary)).await?;
        let mut cluster = Cluster {
            script,
            servers: vec![primary],
            service,
        };
        let admin_password = cluster.servers[0].admin_password().to_owned();
        let member_options = options(flavor);
        let member_options: Vec<&str> = member_options.iter().map(String::as_str).collect();
        for i in 1..3 {
            let mut server = match flavor {
                Flavor::Mariadb => Mariadb::prepare_member(&admin_password, &member_options)?,
                Flavor::Mysql => {
                    Mysql::prepare_member(&admin_password, &member_options)?.into_inner()
                }
            };
            server.restart_as(cluster.member(i, "replica")).await?;
            cluster.servers.push(server);
        }
        Ok(cluster)
    }

    /// Pod `db-<i>` in `role`, following the primary Service.
    fn member(&self, i: usize, role: &str) -> testkit::servers::Member {
        self.script.member(
            &format!("db-{i}"),
            role,
            (self.service.host(), self.service.port()),
            PASSWORD,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_copies_the_primary_and_a_diverged_former_primary_is_copied_afresh() -> Result<()> {
    copies_the_primary_and_a_diverged_former_primary_is_copied_afresh(Flavor::Mariadb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_copies_the_primary_and_a_diverged_former_primary_is_copied_afresh() -> Result<()> {
    copies_the_primary_and_a_diverged_former_primary_is_copied_afresh(Flavor::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_after_a_switchover_the_old_primary_follows_without_a_copy() -> Result<()> {
    after_a_switchover_the_old_primary_follows_without_a_copy(Flavor::Mariadb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_after_a_switchover_the_old_primary_follows_without_a_copy() -> Result<()> {
    after_a_switchover_the_old_primary_follows_without_a_copy(Flavor::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_sync_mode_waits_for_a_replica_and_its_fallback_is_seen() -> Result<()> {
    sync_mode_waits_for_a_replica_and_its_fallback_is_seen(Flavor::Mariadb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sync_mode_waits_for_a_replica_and_its_fallback_is_seen() -> Result<()> {
    sync_mode_waits_for_a_replica_and_its_fallback_is_seen(Flavor::Mysql).await
}

async fn copies_the_primary_and_a_diverged_former_primary_is_copied_afresh(
    flavor: Flavor,
) -> Result<()> {
    let mut cluster = Cluster::start(flavor).await?;
    let says = says(flavor);
    let rejoin = cluster.member(0, "replica");
    let chosen = cluster.member(1, "primary");
    let [old, one, two] = &mut cluster.servers[..] else {
        unreachable!()
    };
    for replica in [&*one, &*two] {
        ensure!(log(replica).contains(says.copies), "{}", log(replica));
        holds(replica, &["first"]).await?;
        streams(flavor, replica).await?;
        refuses_admin_writes(replica).await?;
    }
    write(old, "replicated").await?;
    for replica in [&*one, &*two] {
        holds(replica, &["first", "replicated"]).await?;
    }
    // Every replica received what the primary wrote, at the primary's own
    // binary log coordinates.
    let head = mysql::member(flavor, &admin(old)).await?;
    ensure!(
        !head.in_recovery && !head.read_only && head.lsn > 0,
        "{head:?}"
    );
    // (MySQL's multi-threaded applier reports what it applied at its
    // checkpoints, every 300 ms.)
    for replica in [&*one, &*two] {
        let mut seen = mysql::member(flavor, &admin(replica)).await?;
        for _ in 0..50 {
            if seen.lsn == head.lsn {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = mysql::member(flavor, &admin(replica)).await?;
        }
        ensure!(
            seen.received_lsn == Some(head.lsn) && seen.lsn == head.lsn && seen.timeline == 1,
            "{seen:?} beside the primary's {head:?}"
        );
    }

    // The replicas stop receiving; the primary acknowledges a write nobody
    // receives, and dies.
    for replica in [&*one, &*two] {
        let mut conn = replica.connect().await?;
        conn.query_drop("STOP REPLICA").await?;
    }
    write(old, "lost with the old primary").await?;
    old.kill();
    for replica in [&*one, &*two] {
        let mut conn = replica.connect().await?;
        conn.query_drop("START REPLICA").await?;
    }
    // The operator chose db-1 (its label says primary), whose pod restarts
    // before it is promoted: its data is still a replica's, so it starts
    // read-only and without replicating; only the operator promotes.
    one.restart_as(chosen).await?;
    ensure!(
        log(one).contains("role primary, data of a replica"),
        "{}",
        log(one)
    );
    refuses_admin_writes(one).await?;
    let waiting = mysql::member(flavor, &admin(one)).await?;
    ensure!(waiting.in_recovery && !waiting.streaming, "{waiting:?}");
    // The operator promotes db-1 (its control login), the primary Service
    // moves to it, and db-2 follows it by itself.
    mysql::promote(flavor, &control(flavor, one)).await?;
    let promoted = mysql::member(flavor, &admin(one)).await?;
    ensure!(!promoted.in_recovery && !promoted.read_only, "{promoted:?}");
    cluster.service.point_at(address(one));
    write(one, "after the failover").await?;
    let want = ["first", "replicated", "after the failover"];
    holds(two, &want).await?;

    // The old primary returns as a replica: the new primary refuses its
    // position (it holds a transaction the new primary never had), so the
    // script keeps its data aside and copies the new primary.
    old.restart_as(rejoin).await?;
    let said = log(old);
    ensure!(
        said.contains(says.diverged) && said.contains("kept the previous data as"),
        "{said}"
    );
    ensure!(old.data_dir().join(".replaced/app").is_dir());
    holds(old, &want).await?;
    streams(flavor, old).await?;
    refuses_admin_writes(old).await?;
    // The kept data is no database of the server's.
    let databases: Vec<String> = old.connect().await?.query("SHOW DATABASES").await?;
    ensure!(
        !databases.iter().any(|d| d.contains("replaced")),
        "{databases:?}"
    );
    Ok(())
}

async fn after_a_switchover_the_old_primary_follows_without_a_copy(flavor: Flavor) -> Result<()> {
    let mut cluster = Cluster::start(flavor).await?;
    let rejoin = cluster.member(0, "replica");
    let restarted = cluster.member(1, "primary");
    let [old, new, other] = &mut cluster.servers[..] else {
        unreachable!()
    };
    for replica in [&*new, &*other] {
        streams(flavor, replica).await?;
    }
    write(old, "before").await?;
    // Writes on the old primary stop, the target applies everything it
    // acknowledged, and only then is it promoted.
    let position = mysql::fence(flavor, &control(flavor, old)).await?;
    refuses_admin_writes(old).await?;
    mysql::wait_applied(flavor, &admin(new), &position, Duration::from_secs(30)).await?;
    mysql::promote(flavor, &control(flavor, new)).await?;
    cluster.service.point_at(address(new));
    write(new, "after").await?;
    let want = ["first", "before", "after"];
    holds(other, &want).await?;
    // The old primary's pod restarts as a replica: it holds nothing the new
    // primary lacks, so it follows as it is.
    old.restart_as(rejoin).await?;
    let said = log(old);
    ensure!(
        said.contains(says(flavor).follows_after_switchover)
            && !said.contains("copying the primary"),
        "{said}"
    );
    holds(old, &want).await?;
    streams(flavor, old).await?;
    refuses_admin_writes(old).await?;
    // The promoted primary's pod restarts: its data is a primary's now, so
    // it takes writes at once, and both replicas receive them.
    new.restart_as(restarted).await?;
    ensure!(
        !log(new).contains("role primary, data of a replica"),
        "{}",
        log(new)
    );
    write(new, "after a restart").await?;
    let want = ["first", "before", "after", "after a restart"];
    holds(old, &want).await?;
    holds(other, &want).await?;
    Ok(())
}

/// Runs `statements` as the admin login (the operator sets the commit mode
/// as the admin login, which keeps every privilege but the read-only
/// bypass).
async fn run(server: &Mariadb, statements: &[String]) -> Result<()> {
    let mut conn = server.connect().await?;
    for sql in statements {
        conn.query_drop(sql)
            .await
            .with_context(|| format!("{sql} on port {}", server.port()))?;
    }
    Ok(())
}

async fn semi_sync(flavor: Flavor, server: &Mariadb) -> Result<replication::SemiSync> {
    mysql::member(flavor, &admin(server))
        .await?
        .semi_sync
        .context("a member reports its semi-synchronous replication")
}

async fn sync_mode_waits_for_a_replica_and_its_fallback_is_seen(flavor: Flavor) -> Result<()> {
    let cluster = Cluster::start(flavor).await?;
    let [primary, one, two] = &cluster.servers[..] else {
        unreachable!()
    };
    for replica in [one, two] {
        streams(flavor, replica).await?;
    }
    // The operator's statements, with a 2 s timeout instead of 30 s.
    let timeout = Duration::from_secs(2);
    let sides = |primary| mysql::wanted_semi_sync(true, primary);
    run(
        primary,
        &mysql::semi_sync(flavor, sides(true), timeout, false),
    )
    .await?;
    for replica in [one, two] {
        run(
            replica,
            &mysql::semi_sync(flavor, sides(false), timeout, true),
        )
        .await?;
        let state = semi_sync(flavor, replica).await?;
        ensure!(state.replica && !state.source, "{state:?}");
    }
    let state = semi_sync(flavor, primary).await?;
    ensure!(state.source && state.waiting, "{state:?}");
    // Commits are acknowledged by a replica, and the replicas, whose own
    // commits (their applier's) wait for no one, apply at speed.
    let started = std::time::Instant::now();
    let mut want = vec!["first"];
    let memos: Vec<String> = (0..20).map(|i| format!("sync {i}")).collect();
    for memo in &memos {
        write(primary, memo).await?;
        want.push(memo);
    }
    for replica in [one, two] {
        holds(replica, &want).await?;
    }
    // Not one of them waited out the timeout, on the primary or on a
    // replica applying it.
    ensure!(
        started.elapsed() < timeout,
        "20 semi-synchronous commits took {:?}",
        started.elapsed()
    );
    ensure!(semi_sync(flavor, primary).await?.waiting);

    // No replica receives: a commit waits out the timeout, then the primary
    // falls back to asynchronous commits, and says so.
    for replica in [one, two] {
        run(replica, &["STOP REPLICA IO_THREAD".to_owned()]).await?;
    }
    let waited = std::time::Instant::now();
    write(primary, "unacknowledged by any replica").await?;
    ensure!(
        waited.elapsed() >= timeout,
        "the commit did not wait: {:?}",
        waited.elapsed()
    );
    let state = semi_sync(flavor, primary).await?;
    ensure!(state.source && !state.waiting, "{state:?}");
    // A replica catches up: the primary waits again by itself.
    for replica in [one, two] {
        run(replica, &["START REPLICA IO_THREAD".to_owned()]).await?;
    }
    for _ in 0..100 {
        if semi_sync(flavor, primary).await?.waiting {
            return Ok(());
        }
        write(primary, "while catching up").await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the primary did not return to semi-synchronous commits")
}
