//! MariaDB GTID replication on three real servers, driven by the operator's
//! statements (`replication::mysql`, the `mariadb` flavor): the servers run
//! with its settings, replicas follow the source by GTID, the admin login
//! loses its read-only bypass so a fenced member refuses even its writes,
//! and after the source dies the most advanced replica (judged from the
//! members' real `gtid_current_pos`) is promoted, the other follows it, and
//! the old source rejoins as a replica that refuses writes. The MySQL
//! flavor's twin statements are unit-tested in that module.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use database_operator_api::v1::Flavor;
use mysql_async::prelude::Queryable;
use operator::replication::mysql::{self, Position, Source};
use testkit::servers::Mariadb;

const FLAVOR: Flavor = Flavor::Mariadb;
const LOGIN: &str = "dbop_replication";
const PASSWORD: &str = "repl-Secret-1618";

/// The operator's settings as server options, and this member's server id.
async fn member(ordinal: u32) -> Result<Mariadb> {
    let mut options = testkit::replication::mariadb_options();
    options.push(format!("--server-id={}", mysql::server_id(ordinal)));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    Mariadb::start_with(&options).await
}

async fn run(server: &Mariadb, statements: &[String]) -> Result<()> {
    run_on(server.connect().await?, server, statements).await
}

/// Runs `statements` as the login the operator drives MariaDB replication
/// with (`ControlLogin::Replication`).
async fn control(server: &Mariadb, statements: &[String]) -> Result<()> {
    assert_eq!(
        mysql::control_login(FLAVOR),
        mysql::ControlLogin::Replication
    );
    let opts = mysql_async::OptsBuilder::from_opts(server.opts())
        .user(Some(LOGIN))
        .pass(Some(PASSWORD));
    run_on(mysql_async::Conn::new(opts).await?, server, statements).await
}

async fn run_on(
    mut conn: mysql_async::Conn,
    server: &Mariadb,
    statements: &[String],
) -> Result<()> {
    for sql in statements {
        conn.query_drop(sql)
            .await
            .with_context(|| format!("{sql} on port {}", server.port()))?;
    }
    Ok(())
}

async fn position(server: &Mariadb) -> Result<Position> {
    let mut conn = server.connect().await?;
    let text: String = conn
        .query_first(mysql::position_query(FLAVOR))
        .await?
        .context("no position")?;
    Position::parse(FLAVOR, &text).with_context(|| format!("unparsable position {text:?}"))
}

/// Makes the new, empty `replica` follow `source` from `source`'s current
/// position (nothing before it is wanted), as its admin: the replication
/// login reaches it only by replication.
async fn follow_from_now(replica: &Mariadb, source: &Mariadb) -> Result<()> {
    let mut conn = source.connect().await?;
    let now: String = conn
        .query_first("SELECT @@GLOBAL.gtid_current_pos")
        .await?
        .context("no position")?;
    let mut statements = vec![format!("SET GLOBAL gtid_slave_pos = '{now}'")];
    statements.extend(following(source)?);
    run(replica, &statements).await
}

/// What makes a member a read-only replica of `source`.
fn following(source: &Mariadb) -> Result<Vec<String>> {
    let from = Source {
        host: source.host(),
        port: source.port(),
        user: LOGIN,
        password: PASSWORD,
    };
    let mut statements = mysql::follow(FLAVOR, &from)?;
    statements.extend(mysql::read_only(FLAVOR, true));
    Ok(statements)
}

/// Makes `replica` follow `source`, as the operator does.
async fn follow(replica: &Mariadb, source: &Mariadb) -> Result<()> {
    control(replica, &following(source)?).await
}

pub(super) async fn rows(server: &Mariadb) -> Vec<String> {
    let Ok(mut conn) = server.connect().await else {
        return Vec::new();
    };
    conn.query("SELECT memo FROM app.ledger ORDER BY id")
        .await
        .unwrap_or_default()
}

pub(super) async fn holds(server: &Mariadb, want: &[&str]) -> Result<()> {
    for _ in 0..300 {
        if rows(server).await == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = server.connect().await?;
    // Both flavors know this statement (MariaDB since 10.5).
    let status: Vec<mysql_async::Row> = conn.query("SHOW REPLICA STATUS").await?;
    anyhow::bail!(
        "server on port {} holds {:?}, not {want:?}; replica status: {status:?}",
        server.port(),
        rows(server).await
    )
}

pub(super) async fn write(server: &Mariadb, memo: &str) -> Result<()> {
    let mut conn = server.connect().await?;
    conn.exec_drop("INSERT INTO app.ledger (memo) VALUES (?)", (memo,))
        .await?;
    Ok(())
}

/// A write by the admin login is refused as on a read-only server
/// (ER_OPTION_PREVENTS_STATEMENT).
pub(super) async fn refuses_admin_writes(server: &Mariadb) -> Result<()> {
    let err = write(server, "must not land")
        .await
        .err()
        .context("a fenced member took the admin's write")?;
    let code = err
        .downcast_ref::<mysql_async::Error>()
        .and_then(|e| match e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        });
    ensure!(code == Some(1290), "unexpected error: {err:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_replicas_follow_by_gtid_fail_over_and_the_old_source_is_fenced() -> Result<()> {
    let mut source = member(0).await?;
    let replicas = [member(1).await?, member(2).await?];
    // The replication login on every member, kept out of the binary log
    // (each member makes its own; none replicates another's).
    let mut statements = vec![
        "SET SESSION sql_log_bin = 0".to_owned(),
        format!("CREATE USER '{LOGIN}'@'%' IDENTIFIED BY '{PASSWORD}'"),
    ];
    statements.extend(mysql::login_grants(FLAVOR, LOGIN)?);
    for server in [&source, &replicas[0], &replicas[1]] {
        run(server, &statements).await?;
    }
    for replica in &replicas {
        follow_from_now(replica, &source).await?;
    }
    // Every member's admin login (`root`, which holds ALL PRIVILEGES) gives
    // up READ_ONLY ADMIN, on the source, whence it replicates.
    let hosts: Vec<String> = source
        .connect()
        .await?
        .exec(mysql::ADMIN_HOSTS_QUERY, (source.admin_user(),))
        .await?;
    let revoke = mysql::admin_without_read_only_bypass(FLAVOR, source.admin_user(), &hosts)?;
    ensure!(!revoke.is_empty(), "MariaDB needs the revoke");
    run(&source, &revoke).await?;
    run(
        &source,
        &[
            "CREATE DATABASE app".into(),
            "CREATE TABLE app.ledger (id INT AUTO_INCREMENT PRIMARY KEY, memo TEXT)".into(),
            "INSERT INTO app.ledger (memo) VALUES ('first')".into(),
        ],
    )
    .await?;
    for replica in &replicas {
        holds(replica, &["first"]).await?;
        // read_only alone would let root write; without the bypass it
        // cannot.
        refuses_admin_writes(replica).await?;
    }
    write(&source, "replicated").await?;
    for replica in &replicas {
        holds(replica, &["first", "replicated"]).await?;
    }

    // The source dies. The most advanced replica, judged from the members'
    // real positions, is promoted; the other follows it.
    source.kill();
    let mut members = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        members.push((format!("db-{}", i + 1), position(replica).await?));
    }
    let best = mysql::most_advanced(&members).context("the replicas diverged")?;
    let (new, other) = if best == "db-1" {
        (&replicas[0], &replicas[1])
    } else {
        (&replicas[1], &replicas[0])
    };
    control(new, &mysql::promotion(FLAVOR)).await?;
    follow(other, new).await?;
    write(new, "after the failover").await?;
    let want = ["first", "replicated", "after the failover"];
    holds(other, &want).await?;

    // The old source returns: fenced as a replica of the new primary, it
    // catches up by GTID and refuses the admin's writes.
    source.start_again().await?;
    follow(&source, new).await?;
    holds(&source, &want).await?;
    refuses_admin_writes(&source).await?;
    // Every member now holds the same transactions.
    let mut members = Vec::new();
    for (name, server) in [
        ("db-0", &source),
        ("db-1", &replicas[0]),
        ("db-2", &replicas[1]),
    ] {
        members.push((name.to_owned(), position(server).await?));
    }
    ensure!(
        members
            .iter()
            .all(|(_, p)| members.iter().all(|(_, q)| p.contains(q))),
        "positions differ: {members:?}"
    );
    Ok(())
}
