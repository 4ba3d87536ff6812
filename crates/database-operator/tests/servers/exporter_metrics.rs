//! The exporters the operator runs, at their pinned versions, against the
//! real servers: each logs in as the monitoring login the operator creates
//! (through the same login admin the operator uses), and the metric names
//! it really emits must still include every name in the committed list
//! (crates/operator/src/builders/monitoring/metrics/). Set
//! `UPDATE_METRIC_LISTS=1` to rewrite the lists from what the servers emit.
//!
//! FerretDB stands in for mongod: it has no roles, so the MongoDB exporter
//! logs in as the admin there, and FerretDB answers only part of
//! serverStatus; the MongoDB list is what the exporter emits against it,
//! which proves the names exist in that exporter version, not that a real
//! mongod feeds all of them.

use testkit::exporters;

use std::collections::BTreeSet;
use std::time::Duration;

use database_operator_api::v1::Engine;
use exporters::{committed_list, exporter_binary, exposed_names, list_path};
use operator::builders::monitoring::{Exporter, MONITORING_USERNAME};
use operator::users::{Password, Target, login_admin};
use testkit::servers::{Ferret, Mariadb, Postgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// Runs the exporter with the sidecar's own flags (listening on a free
/// port) and `env`, until `<up_metric> 1` shows; returns the metric names
/// and the exposition.
async fn capture(
    engine: Engine,
    engine_port: u16,
    env: &[(&str, String)],
) -> (BTreeSet<String>, String) {
    let exporter = Exporter::of(engine);
    let listen = testkit::processes::free_port().unwrap();
    let args: Vec<String> = exporter
        .args(i32::from(engine_port))
        .into_iter()
        .map(|a| {
            if a.starts_with("--web.listen-address=") {
                format!("--web.listen-address=127.0.0.1:{listen}")
            } else {
                a.replace(
                    "$(MONITORING_USERNAME)",
                    &env_value(env, "MONITORING_USERNAME"),
                )
            }
        })
        .collect();
    let mut child = tokio::process::Command::new(exporter_binary(exporter))
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", std::env::temp_dir())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the exporter");
    let up = match engine {
        Engine::Postgresql => "pg_up 1",
        Engine::Mysql => "mysql_up 1",
        Engine::Mongodb => "mongodb_up",
    };
    let mut last = String::new();
    for _ in 0..100 {
        if let Some(body) = scrape(listen).await {
            if body.lines().any(|l| l.starts_with(up) && l.ends_with(" 1")) {
                // A second scrape: some collectors fill in after the first.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let body = scrape(listen).await.unwrap_or(body);
                let _ = child.start_kill();
                return (exposed_names(&body), body);
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.start_kill();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut stderr)).await;
    }
    panic!(
        "{} never reported {up}:\n{}\nlast scrape:\n{}",
        exporter.binary(),
        stderr,
        last.lines()
            .filter(|l| l.contains("_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every series of a per-collector success metric is 1.
fn assert_all_succeed(body: &str, metric: &str) {
    let series: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .collect();
    assert!(!series.is_empty(), "no {metric}");
    let failed: Vec<&&str> = series.iter().filter(|l| !l.ends_with(" 1")).collect();
    assert!(
        failed.is_empty(),
        "collectors failed as the monitoring login: {failed:?}"
    );
}

fn env_value(env: &[(&str, String)], key: &str) -> String {
    env.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn check_or_update(engine: Engine, live: &BTreeSet<String>) {
    let exporter = Exporter::of(engine);
    let path = list_path(exporter);
    if std::env::var_os("UPDATE_METRIC_LISTS").is_some() {
        let mut text = format!(
            "# Metric names {} {} emits, captured by tests/exporter_metrics.rs against the testkit's real server.\n",
            exporter.binary(),
            exporter.version()
        );
        for name in live {
            text.push_str(name);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        return;
    }
    let committed = committed_list(exporter);
    let stale: Vec<&String> = committed.difference(live).collect();
    assert!(
        stale.is_empty(),
        "{} lists metrics the exporter no longer emits: {stale:?} (UPDATE_METRIC_LISTS=1 rewrites it)",
        path.display()
    );
}

fn target(host: &str, port: u16, user: &str, password: &str, database: &str) -> Target {
    Target {
        host: host.into(),
        port,
        admin_user: user.into(),
        admin_password: Password::new(password),
        default_database: database.into(),
    }
}

#[tokio::test]
async fn postgres_exporter_as_the_pg_monitor_login_emits_the_listed_metrics() {
    let pg = Postgres::start().await.unwrap();
    let admin = target(
        pg.host(),
        pg.port(),
        pg.admin_user(),
        pg.admin_password(),
        "postgres",
    );
    let password = Password::new("monitorPassw0rd");
    let users = login_admin(Engine::Postgresql);
    // Twice: the second finds everything in place.
    for _ in 0..2 {
        users
            .ensure_monitoring_user(&admin, MONITORING_USERNAME, &password)
            .await
            .unwrap();
    }
    let client = pg.connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT r.rolsuper, r.rolconnlimit, pg_has_role(r.rolname, 'pg_monitor', 'member') FROM pg_roles r WHERE r.rolname = $1",
            &[&MONITORING_USERNAME],
        )
        .await
        .unwrap();
    assert!(
        !row.get::<_, bool>(0),
        "the monitoring login is no superuser"
    );
    assert_eq!(row.get::<_, i32>(1), 3);
    assert!(
        row.get::<_, bool>(2),
        "the monitoring login is in pg_monitor"
    );
    let live = capture(
        Engine::Postgresql,
        pg.port(),
        &[
            (
                "DATA_SOURCE_URI",
                format!("127.0.0.1:{}/postgres?sslmode=disable", pg.port()),
            ),
            ("DATA_SOURCE_USER", MONITORING_USERNAME.into()),
            ("DATA_SOURCE_PASS", password.expose().into()),
        ],
    )
    .await;
    check_or_update(Engine::Postgresql, &live.0);
    // pg_monitor is enough for every default collector.
    assert_all_succeed(&live.1, "pg_scrape_collector_success");
    assert!(
        live.1
            .lines()
            .any(|l| l == "pg_exporter_last_scrape_error 0")
    );
}

#[tokio::test]
async fn mysqld_exporter_as_the_least_privilege_login_emits_the_listed_metrics() {
    use mysql_async::prelude::Queryable;
    let maria = Mariadb::start().await.unwrap();
    let admin = target(
        maria.host(),
        maria.port(),
        maria.admin_user(),
        maria.admin_password(),
        "mysql",
    );
    let password = Password::new("monitorPassw0rd");
    let users = login_admin(Engine::Mysql);
    for _ in 0..2 {
        users
            .ensure_monitoring_user(&admin, MONITORING_USERNAME, &password)
            .await
            .unwrap();
    }
    let mut conn = maria.connect().await.unwrap();
    let grants: Vec<String> = conn
        .query(format!("SHOW GRANTS FOR '{MONITORING_USERNAME}'@'%'"))
        .await
        .unwrap();
    let all = grants.join("\n");
    assert!(all.contains("PROCESS") && all.contains("ON *.*"), "{all}");
    assert!(all.contains("SELECT ON `performance_schema`.*"), "{all}");
    assert!(all.contains("MAX_USER_CONNECTIONS 3"), "{all}");
    assert!(!all.contains("ALL PRIVILEGES"), "{all}");
    let live = capture(
        Engine::Mysql,
        maria.port(),
        &[
            ("MONITORING_USERNAME", MONITORING_USERNAME.into()),
            ("MYSQLD_EXPORTER_PASSWORD", password.expose().into()),
        ],
    )
    .await;
    check_or_update(Engine::Mysql, &live.0);
    // The least-privilege grants are enough for every default collector.
    assert_all_succeed(&live.1, "mysql_exporter_collector_success");
}

#[tokio::test]
async fn mongodb_exporter_against_ferretdb_emits_the_listed_metrics() {
    let ferret = Ferret::start().await.unwrap();
    // FerretDB has no roles, so it cannot hold the clusterMonitor login (the
    // role documents are pinned by unit tests); the admin scrapes instead.
    let live = capture(
        Engine::Mongodb,
        ferret.port(),
        &[
            (
                "MONGODB_URI",
                format!("mongodb://127.0.0.1:{}/admin", ferret.port()),
            ),
            ("MONGODB_USER", ferret.admin_user().into()),
            ("MONGODB_PASSWORD", ferret.admin_password().into()),
        ],
    )
    .await;
    check_or_update(Engine::Mongodb, &live.0);
}

/// The metric the shipped `DatabaseReplicationLagging` alert of `engine`
/// reads.
fn lag_alert_metric(engine: Engine) -> String {
    let alerting = database_operator_api::v1::monitor::AlertingSpec::default();
    let groups = operator::builders::monitoring::rules::rule_groups(
        &operator::builders::monitoring::rules::RuleInput {
            namespace: "ns",
            database: "db",
            engine,
            backups: false,
            alerting: &alerting,
            runbook_base: "https://example.test/",
        },
    );
    let expr = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .find(|r| r.alert == "DatabaseReplicationLagging")
        .map(|r| r.expr.clone())
        .expect("a replication lag alert");
    let names = operator::builders::monitoring::promql::metric_names(&expr);
    assert_eq!(names.len(), 1, "{expr}");
    names.into_iter().next().unwrap()
}

/// The lag series of `metric` in an exposition, with their values.
fn series<'a>(body: &'a str, metric: &str) -> Vec<&'a str> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric} ")) || l.starts_with(&format!("{metric}{{")))
        .collect()
}

/// The replication lag alert's metric, live: postgres_exporter, as the
/// monitoring login, against a real streaming replica that the instance
/// script started.
#[tokio::test]
async fn the_lag_alert_metric_comes_from_a_real_postgresql_replica() {
    use operator::replication::postgresql;
    let script = testkit::replication::InstanceScript::postgresql().unwrap();
    let primary = Postgres::start_configured(&postgresql::settings(1 << 30))
        .await
        .unwrap();
    let service = testkit::proxy::Proxy::start(
        format!("{}:{}", primary.host(), primary.port())
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    let admin = target(
        primary.host(),
        primary.port(),
        primary.admin_user(),
        primary.admin_password(),
        "postgres",
    );
    postgresql::ensure_login(&admin, &Password::new("replPassw0rd"))
        .await
        .unwrap();
    postgresql::ensure_slots(&admin, "db", &["db-1".to_owned()])
        .await
        .unwrap();
    let password = Password::new("monitorPassw0rd");
    login_admin(Engine::Postgresql)
        .ensure_monitoring_user(&admin, MONITORING_USERNAME, &password)
        .await
        .unwrap();
    let member = script.member(
        "db-1",
        "replica",
        (service.host(), service.port()),
        "replPassw0rd",
    );
    let replica = Postgres::start_member(primary.admin_password(), member)
        .await
        .unwrap();
    let (_, body) = capture(
        Engine::Postgresql,
        replica.port(),
        &[
            (
                "DATA_SOURCE_URI",
                format!("127.0.0.1:{}/postgres?sslmode=disable", replica.port()),
            ),
            ("DATA_SOURCE_USER", MONITORING_USERNAME.into()),
            ("DATA_SOURCE_PASS", password.expose().into()),
        ],
    )
    .await;
    let metric = lag_alert_metric(Engine::Postgresql);
    let lag = series(&body, &metric);
    assert!(!lag.is_empty(), "no {metric} from the replica");
    assert!(
        body.lines().any(|l| l == "pg_replication_is_replica 1"),
        "the exporter does not see a replica"
    );
}

/// The replication lag alert's metric, live: mysqld_exporter, as the
/// least-privilege monitoring login (SLAVE MONITOR on MariaDB), against a
/// real MariaDB replica streaming from a real source by GTID.
#[tokio::test]
async fn the_lag_alert_metric_comes_from_a_real_mariadb_replica() {
    use mysql_async::prelude::Queryable;
    let source = Mariadb::start_with(&[
        "--log-bin=source-bin",
        "--server-id=1",
        "--binlog-format=ROW",
    ])
    .await
    .unwrap();
    let replica = Mariadb::start_with(&["--server-id=2"]).await.unwrap();
    let mut on_source = source.connect().await.unwrap();
    on_source
        .query_drop(
            "CREATE USER 'repl'@'%' IDENTIFIED BY 'replPassw0rd';
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
        )
        .await
        .unwrap();
    let position: String = on_source
        .query_first("SELECT @@gtid_current_pos")
        .await
        .unwrap()
        .unwrap();
    let mut on_replica = replica.connect().await.unwrap();
    on_replica
        .query_drop(format!(
            "SET GLOBAL gtid_slave_pos = '{position}';
             CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'repl',
               MASTER_PASSWORD = 'replPassw0rd', MASTER_USE_GTID = slave_pos;
             START SLAVE",
            source.port()
        ))
        .await
        .unwrap();
    // The monitoring login, made on the source as the operator makes it on
    // a primary, reaches the replica by replication.
    let admin = target(
        source.host(),
        source.port(),
        source.admin_user(),
        source.admin_password(),
        "mysql",
    );
    let password = Password::new("monitorPassw0rd");
    login_admin(Engine::Mysql)
        .ensure_monitoring_user(&admin, MONITORING_USERNAME, &password)
        .await
        .unwrap();
    let mut replicated = false;
    for _ in 0..100 {
        let found: Option<String> = on_replica
            .query_first(format!(
                "SELECT User FROM mysql.user WHERE User = '{MONITORING_USERNAME}'"
            ))
            .await
            .unwrap();
        if found.is_some() {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replicated, "the monitoring login did not replicate");
    let (_, body) = capture(
        Engine::Mysql,
        replica.port(),
        &[
            ("MONITORING_USERNAME", MONITORING_USERNAME.into()),
            ("MYSQLD_EXPORTER_PASSWORD", password.expose().into()),
        ],
    )
    .await;
    let metric = lag_alert_metric(Engine::Mysql);
    let lag = series(&body, &metric);
    assert!(
        !lag.is_empty(),
        "no {metric} from the replica:\n{}",
        series(&body, "mysql_slave_status_slave_io_running").join("\n")
    );
    assert!(
        lag.iter().all(|l| l.ends_with(" 0")),
        "a replica at rest lags: {lag:?}"
    );
    assert_all_succeed(&body, "mysql_exporter_collector_success");
}
