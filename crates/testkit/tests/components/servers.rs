//! The database server fixtures: real authenticated round trips with the
//! client crates the operator would use, several instances side by side,
//! and no process left behind after a drop or after the test process dies.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use database_operator_testkit::processes::pid_alive;
use database_operator_testkit::servers::{Ferret, Mariadb, Postgres};
use mongodb::bson::{Document, doc};
use mysql_async::prelude::Queryable;

/// PIDs of a server and its live descendants (for PostgreSQL: the
/// postmaster, its workers and the backends; they leave its process group).
fn tree_pids(leader: u32) -> BTreeSet<u32> {
    let mut pids = BTreeSet::from([leader]);
    loop {
        let before = pids.len();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // After the parenthesised name: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid.is_some_and(|p| pids.contains(&p)) && pid_alive(pid) {
                pids.insert(pid);
            }
        }
        if pids.len() == before {
            return pids;
        }
    }
}

async fn eventually_gone(pids: &BTreeSet<u32>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "processes still alive after {within:?}: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    ensure!(
        output.status.success(),
        "{} {args:?} failed ({}): {}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trip() -> Result<()> {
    let mut pg = Postgres::start().await?;
    eprintln!("postgres {} up in {:?}", pg.port(), pg.startup_time());
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.admin_user(), "postgres");
    assert!(pg.url().starts_with("postgres://postgres:"));

    // The URL alone is enough for a client (scram-sha-256 over TCP).
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items VALUES (1, 'one'), (2, 'two');",
        )
        .await?;
    let rows = client
        .query("SELECT name FROM items WHERE id = $1", &[&2i32])
        .await?;
    assert_eq!(rows[0].get::<_, String>(0), "two");
    let method: String = client
        .query_one(
            "SELECT auth_method FROM pg_hba_file_rules WHERE 'replication' = ANY(database)",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(method, "scram-sha-256");
    drop(client);
    connection.await??;

    // A wrong password is refused.
    let mut bad = pg.config();
    bad.password("wrong");
    let error = bad
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .context("wrong password accepted")?;
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{error:?}"
    );

    // The client tools in bin_dir reach it too.
    let port = pg.port().to_string();
    let env = [("PGPASSWORD", pg.admin_password())];
    let tcp = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
    run(&pg.bin_dir().join("pg_isready"), &tcp, &[])?;
    let dump = run(
        &pg.bin_dir().join("pg_dump"),
        &[&tcp[..], &["postgres"]].concat(),
        &env,
    )?;
    assert!(dump.contains("CREATE TABLE public.items"), "{dump}");
    let socket = pg.socket_dir().to_string_lossy().into_owned();
    let out = run(
        &pg.bin_dir().join("psql"),
        &[
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            "postgres",
            "-Atc",
            "SELECT count(*) FROM items",
        ],
        &[],
    )?;
    assert_eq!(out.trim(), "2");

    // Stop and start again: same port, same data, same password.
    let old_pid = pg.pid().context("no pid")?;
    pg.stop();
    assert!(!pg.is_running());
    assert!(!pid_alive(old_pid));
    assert!(pg.connect().await.is_err());
    pg.start_again().await?;
    let client = pg.connect().await?;
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await?
        .get(0);
    assert_eq!(count, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_round_trip() -> Result<()> {
    let mut maria = Mariadb::start().await?;
    eprintln!("mariadb {} up in {:?}", maria.port(), maria.startup_time());
    assert_eq!(maria.admin_user(), "root");
    assert!(maria.url().starts_with("mysql://root:"));

    // mysql_async would switch to the server's unix socket (prefer_socket)
    // after connecting; stay on TCP to prove the password login.
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&maria.url())?)
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    conn.query_drop(
        "CREATE DATABASE app;
         CREATE TABLE app.items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         INSERT INTO app.items VALUES (1, 'one'), (2, 'two');",
    )
    .await?;
    let name: Option<String> = conn
        .exec_first("SELECT name FROM app.items WHERE id = ?", (2,))
        .await?;
    assert_eq!(name.as_deref(), Some("two"));
    let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    assert_eq!(user.as_deref(), Some("root@127.0.0.1"));
    conn.disconnect().await?;

    // A wrong password is refused.
    let bad = mysql_async::OptsBuilder::from_opts(maria.opts()).pass(Some("wrong"));
    let error = mysql_async::Conn::new(bad)
        .await
        .err()
        .context("wrong password accepted")?;
    assert!(format!("{error}").contains("Access denied"), "{error}");

    // The client tools in bin_dir reach it over TCP with the password.
    let port = maria.port().to_string();
    let password = format!("--password={}", maria.admin_password());
    let tcp = [
        "--protocol=TCP",
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "-u",
        "root",
        &password,
    ];
    run(
        &maria.bin_dir().join("mysqladmin"),
        &[&tcp[..], &["ping"]].concat(),
        &[],
    )?;
    let dump = run(
        &maria.bin_dir().join("mariadb-dump"),
        &[&tcp[..], &["app"]].concat(),
        &[],
    )?;
    assert!(dump.contains("CREATE TABLE `items`"), "{dump}");

    // Stop and start again: same port, data and password.
    let old_pid = maria.pid().context("no pid")?;
    maria.stop();
    assert!(!pid_alive(old_pid));
    assert!(maria.connect().await.is_err());
    maria.start_again().await?;
    let mut conn = maria.connect().await?;
    let count: Option<i64> = conn.query_first("SELECT COUNT(*) FROM app.items").await?;
    assert_eq!(count, Some(2));
    conn.disconnect().await?;
    Ok(())
}

/// The server's error code of a failed command.
fn code(error: &mongodb::error::Error) -> Option<i32> {
    match &*error.kind {
        mongodb::error::ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

/// A refused login (the driver reports SCRAM failures as authentication
/// errors; the server's code is 18, AuthenticationFailed).
fn auth_failed(error: &mongodb::error::Error) -> bool {
    matches!(
        &*error.kind,
        mongodb::error::ErrorKind::Authentication { .. }
    ) || code(error) == Some(18)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferret_round_trip_and_users() -> Result<()> {
    let mut ferret = Ferret::start().await?;
    eprintln!(
        "ferretdb {} up in {:?}",
        ferret.port(),
        ferret.startup_time()
    );
    assert!(ferret.uri().contains("authMechanism=SCRAM-SHA-256"));

    let client = mongodb::Client::with_uri_str(ferret.uri()).await?;
    let items = client.database("app").collection::<Document>("items");
    items
        .insert_many([
            doc! { "_id": 1, "name": "one" },
            doc! { "_id": 2, "name": "two" },
        ])
        .await?;
    let found = items
        .find_one(doc! { "_id": 2 })
        .await?
        .context("not found")?;
    assert_eq!(found.get_str("name")?, "two");

    // Without credentials every command but the handshake is refused.
    let anonymous =
        mongodb::Client::with_uri_str(format!("mongodb://127.0.0.1:{}/", ferret.port())).await?;
    let error = anonymous
        .database("app")
        .collection::<Document>("items")
        .find_one(doc! {})
        .await
        .err()
        .context("anonymous read accepted")?;
    assert_eq!(code(&error), Some(13), "{error}"); // Unauthorized

    // User management as FerretDB 1.24 (--test-enable-new-auth) has it:
    // - createUser with any non-empty `roles` (e.g. [{role: "readWrite", db:
    //   "app"}] or ["root"]) fails with NotImplemented (238); so does
    //   `customData`, and `roles` is required: omitting it fails with 40414.
    //   `roles: []` works, with `mechanisms` ["SCRAM-SHA-256"] and/or
    //   ["SCRAM-SHA-1"] (default both).
    // - updateUser changes `pwd`; updateUser with `roles` fails (238).
    // - grantRolesToUser and createRole do not exist (CommandNotFound, 59).
    // - usersInfo (by name, by {user, db}, forAllDBs) and dropUser work;
    //   dropUser of an unknown user fails with UserNotFound (11), creating
    //   an existing one with 51003. dropAllUsersFromDatabase works.
    // - There is no authorization: a user may read and write every database.
    // - Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-1; PLAIN is refused.
    let app = client.database("app");
    let error = app
        .run_command(doc! {
            "createUser": "reader", "pwd": "secret1",
            "roles": [{ "role": "readWrite", "db": "app" }],
        })
        .await
        .err()
        .context("createUser with roles accepted")?;
    assert_eq!(code(&error), Some(238), "{error}"); // NotImplemented
    let error = app
        .run_command(doc! { "createUser": "reader", "pwd": "secret1" })
        .await
        .err()
        .context("createUser without roles accepted")?;
    assert_eq!(code(&error), Some(40414), "{error}"); // roles is required

    app.run_command(doc! {
        "createUser": "appuser", "pwd": "secret1", "roles": [],
        "mechanisms": ["SCRAM-SHA-256"],
    })
    .await?;
    let info = app.run_command(doc! { "usersInfo": "appuser" }).await?;
    let users = info.get_array("users")?;
    assert_eq!(users.len(), 1, "{info}");
    let user = users[0].as_document().context("user")?;
    assert_eq!(user.get_str("db")?, "app");
    assert_eq!(user.get_array("roles")?.len(), 0);

    // The new user logs in with SCRAM-SHA-256 and may write (anywhere).
    let as_user =
        mongodb::Client::with_uri_str(ferret.uri_for("appuser", "secret1", "app")).await?;
    as_user
        .database("app")
        .collection::<Document>("items")
        .insert_one(doc! { "_id": 3, "name": "three" })
        .await?;
    as_user
        .database("other")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await?;
    let status = as_user
        .database("app")
        .run_command(doc! { "connectionStatus": 1 })
        .await?;
    let authenticated = status
        .get_document("authInfo")?
        .get_array("authenticatedUsers")?;
    assert_eq!(
        authenticated[0]
            .as_document()
            .context("user")?
            .get_str("user")?,
        "appuser"
    );

    // New password: the old one stops working.
    app.run_command(doc! { "updateUser": "appuser", "pwd": "secret2" })
        .await?;
    let old = mongodb::Client::with_uri_str(ferret.uri_for("appuser", "secret1", "app")).await?;
    let error = old
        .database("app")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .err()
        .context("old password accepted")?;
    assert!(auth_failed(&error), "{error}");
    let new = mongodb::Client::with_uri_str(ferret.uri_for("appuser", "secret2", "app")).await?;
    new.database("app")
        .run_command(doc! { "connectionStatus": 1 })
        .await?;
    let error = app
        .run_command(doc! { "updateUser": "appuser", "roles": [{ "role": "read", "db": "app" }] })
        .await
        .err()
        .context("updateUser with roles accepted")?;
    assert_eq!(code(&error), Some(238), "{error}");
    let error = app
        .run_command(doc! { "grantRolesToUser": "appuser", "roles": ["read"] })
        .await
        .err()
        .context("grantRolesToUser accepted")?;
    assert_eq!(code(&error), Some(59), "{error}"); // CommandNotFound

    // dropUser: gone from usersInfo, and logins fail.
    app.run_command(doc! { "dropUser": "appuser" }).await?;
    let info = app.run_command(doc! { "usersInfo": "appuser" }).await?;
    assert!(info.get_array("users")?.is_empty(), "{info}");
    let dropped =
        mongodb::Client::with_uri_str(ferret.uri_for("appuser", "secret2", "app")).await?;
    let error = dropped
        .database("app")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .err()
        .context("dropped user still logs in")?;
    assert!(auth_failed(&error), "{error}");
    let error = app
        .run_command(doc! { "dropUser": "appuser" })
        .await
        .err()
        .context("dropping a missing user succeeded")?;
    assert_eq!(code(&error), Some(11), "{error}"); // UserNotFound

    // Stop and start again: data and the admin user survive.
    for c in [client, anonymous, as_user, old, new, dropped] {
        c.shutdown().await;
    }
    let old_pid = ferret.pid().context("no pid")?;
    ferret.stop();
    assert!(!pid_alive(old_pid));
    ferret.start_again().await?;
    let client = ferret.client().await?;
    let count = client
        .database("app")
        .collection::<Document>("items")
        .count_documents(doc! {})
        .await?;
    assert_eq!(count, 3);
    client.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_at_once_and_drop_leaves_no_process() -> Result<()> {
    let (pg1, pg2, m1, m2, f1, f2) = tokio::try_join!(
        Postgres::start(),
        Postgres::start(),
        Mariadb::start(),
        Mariadb::start(),
        Ferret::start(),
        Ferret::start(),
    )?;
    let ports: BTreeSet<u16> = [
        pg1.port(),
        pg2.port(),
        m1.port(),
        m2.port(),
        f1.port(),
        f2.port(),
    ]
    .into_iter()
    .collect();
    assert_eq!(ports.len(), 6, "ports must differ: {ports:?}");

    // Open a connection to each so PostgreSQL has backend processes too.
    let pg1_client = pg1.connect().await?;
    pg1_client.simple_query("SELECT 1").await?;
    let pg1_pids = tree_pids(pg1.pid().context("pid")?);
    assert!(pg1_pids.len() > 1, "postmaster and workers: {pg1_pids:?}");
    let m1_pids = tree_pids(m1.pid().context("pid")?);
    let f1_pids = tree_pids(f1.pid().context("pid")?);
    let dirs = [
        pg1.dir().to_owned(),
        m1.dir().to_owned(),
        f1.dir().to_owned(),
    ];

    drop(pg1);
    drop(m1);
    drop(f1);
    for pids in [&pg1_pids, &m1_pids, &f1_pids] {
        // Dropping kills and reaps synchronously.
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        assert!(alive.is_empty(), "left running after drop: {alive:?}");
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
    drop(pg1_client);

    // The others are untouched.
    pg2.connect().await?.simple_query("SELECT 1").await?;
    let mut conn = m2.connect().await?;
    conn.query_drop("SELECT 1").await?;
    conn.disconnect().await?;
    let client = f2.client().await?;
    client.list_database_names().await?;
    client.shutdown().await;

    let rest: BTreeSet<u32> = [pg2.pid(), m2.pid(), f2.pid()]
        .into_iter()
        .flatten()
        .flat_map(tree_pids)
        .collect();
    drop((pg2, m2, f2));
    eventually_gone(&rest, Duration::ZERO).await?;
    Ok(())
}

/// Run by `servers_die_with_the_test_process` in a child test process:
/// starts one server of each kind, writes their PIDs (with descendants) to the
/// file named by `TESTKIT_SERVERS_PID_FILE` and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run by servers_die_with_the_test_process"]
async fn helper_hold_servers_until_killed() -> Result<()> {
    let Some(file) = std::env::var_os("TESTKIT_SERVERS_PID_FILE") else {
        return Ok(());
    };
    let (pg, maria, ferret) =
        tokio::try_join!(Postgres::start(), Mariadb::start(), Ferret::start())?;
    let _client = pg.connect().await?;
    let pids: BTreeSet<u32> = [pg.pid(), maria.pid(), ferret.pid()]
        .into_iter()
        .flatten()
        .flat_map(tree_pids)
        .collect();
    let dirs: Vec<String> = [pg.dir(), maria.dir(), ferret.dir()]
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    let text = format!(
        "{}\n{}\n",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        dirs.join(" ")
    );
    std::fs::write(format!("{}.tmp", file.to_string_lossy()), text)?;
    std::fs::rename(format!("{}.tmp", file.to_string_lossy()), &file)?;
    tokio::time::sleep(Duration::from_secs(300)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_die_with_the_test_process() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let pid_file = scratch.path().join("pids");
    let (mut child, text) = super::helper::run_helper(
        "servers::helper_hold_servers_until_killed",
        "TESTKIT_SERVERS_PID_FILE",
        &pid_file,
    )
    .await?;
    let mut lines = text.lines();
    let pids: BTreeSet<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert!(pids.len() >= 3, "{pids:?}");
    assert!(pids.iter().all(|p| pid_alive(*p)));

    // SIGKILL: no destructor runs; PDEATHSIG (and postmaster-death
    // detection in PostgreSQL's workers) must take the servers down.
    child.kill()?;
    child.wait()?;
    eventually_gone(&pids, Duration::from_secs(10)).await?;

    // The folders are swept by the next fixture started in this process.
    let dirs: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let ferret = Ferret::start().await?;
    for dir in &dirs {
        assert!(!Path::new(dir).exists(), "stale folder {dir} not removed");
    }
    drop(ferret);
    Ok(())
}
