//! MySQL and MariaDB: `mysqldump` (or `mariadb-dump`) to back up, `mysql`
//! (or `mariadb`) to restore.
//!
//! The dump tool is `mariadb-dump` when that exists, else `mysqldump`; its
//! flavour is read from `--version` and the server's from `SELECT
//! VERSION()`, because some flags exist only in MySQL's own mysqldump:
//! - `--set-gtid-purged=OFF` (MySQL's tool only; MariaDB's does not know
//!   it): without it a dump from a GTID-enabled MySQL server carries `SET
//!   @@GLOBAL.GTID_PURGED`, which a restore into a server with its own GTID
//!   history refuses;
//! - `--column-statistics=0` (MySQL 8's tool against a MariaDB or pre-8
//!   server, which lack `information_schema.COLUMN_STATISTICS`).
//!
//! Always: `--single-transaction --all-databases --routines --events
//! --triggers --hex-blob --default-character-set=utf8mb4`, and the account
//! tables of the `mysql` schema are left out (`--ignore-table`): restoring
//! them would replace the target's admin login and password — which the
//! operator keeps in the Database's Secret — with the source's. Logins are
//! the DatabaseUser controller's to recreate. So are the tables of the
//! server's own replication state (`gtid_slave_pos`, `gtid_executed`, …):
//! a backup read from a replica must not carry its position into the
//! restored Database, whose replicas replay the restore. Everything else in
//! `mysql` (time zones, stored procedures' tables, …) is dumped.
//!
//! The password reaches the tools in `MYSQL_PWD` (never an argument).
//!
//! Row counts in the manifest are read from the dump as it streams (see
//! [`super::insert_count`]); `COUNT(*)` per base table, in one consistent
//! snapshot, counts a restored server at verify time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{Inventory, Tool, require_tool, tool_version};
use crate::{AgentError, DbArgs, Result, Secrets};

pub const SYSTEM_SCHEMAS: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

/// Account tables of the `mysql` schema (MySQL 8 and MariaDB), never dumped.
pub const ACCOUNT_TABLES: &[&str] = &[
    "user",
    "global_priv",
    "db",
    "tables_priv",
    "columns_priv",
    "procs_priv",
    "proxies_priv",
    "roles_mapping",
    "global_grants",
    "default_roles",
    "role_edges",
    "password_history",
];

/// The `mysql` tables that hold a server's own replication state (its
/// position as a replica, the GTIDs it executed): a dump taken from a
/// replica must not carry them into the Database it is restored into,
/// where they would overwrite the replicas' own positions (the restore is
/// replicated).
pub const REPLICATION_STATE_TABLES: &[&str] = &[
    "gtid_slave_pos",
    "gtid_executed",
    "slave_master_info",
    "slave_relay_log_info",
    "slave_worker_info",
];

pub const ROW_COUNT_METHOD: &str = "rows in each table's INSERT statements of the dump itself, counted as it streams: exactly what the dump holds, in its own snapshot";

/// Which dump tool this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFlavor {
    MariaDb,
    MySql { major: u32 },
}

/// Which server this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFlavor {
    MariaDb,
    MySql { major: u32 },
}

fn first_number(s: &str) -> Option<u32> {
    let digits: String = s
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl ToolFlavor {
    /// From the first line of `mysqldump --version`.
    pub fn detect(version: &str) -> ToolFlavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            return ToolFlavor::MariaDb;
        }
        // "mysqldump  Ver 8.0.36 for Linux" or "Ver 10.13 Distrib 5.7.44".
        let major = match version.split_once("Distrib ") {
            Some((_, rest)) => first_number(rest),
            None => version
                .split_once("Ver ")
                .and_then(|(_, rest)| first_number(rest)),
        };
        ToolFlavor::MySql {
            major: major.unwrap_or(8),
        }
    }
}

impl ServerFlavor {
    /// From `SELECT VERSION()`.
    pub fn detect(version: &str) -> ServerFlavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            ServerFlavor::MariaDb
        } else {
            ServerFlavor::MySql {
                major: first_number(version).unwrap_or(8),
            }
        }
    }
}

/// The dump tool's arguments (the password comes from `MYSQL_PWD`).
pub fn dump_args(
    tool: ToolFlavor,
    server: ServerFlavor,
    host: &str,
    port: u16,
    user: &str,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--user={user}"),
        "--protocol=TCP".into(),
        "--single-transaction".into(),
        "--all-databases".into(),
        "--routines".into(),
        "--events".into(),
        "--triggers".into(),
        "--hex-blob".into(),
        "--default-character-set=utf8mb4".into(),
    ];
    if let ToolFlavor::MySql { major } = tool {
        args.push("--set-gtid-purged=OFF".into());
        let server_lacks_column_statistics = match server {
            ServerFlavor::MariaDb => true,
            ServerFlavor::MySql { major } => major < 8,
        };
        if major >= 8 && server_lacks_column_statistics {
            args.push("--column-statistics=0".into());
        }
    }
    for table in ACCOUNT_TABLES.iter().chain(REPLICATION_STATE_TABLES) {
        args.push(format!("--ignore-table=mysql.{table}"));
    }
    args
}

/// The client's arguments for a restore.
pub fn restore_args(host: &str, port: u16, user: &str) -> Vec<String> {
    vec![
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--user={user}"),
        "--protocol=TCP".into(),
        "--default-character-set=utf8mb4".into(),
        "--binary-mode".into(),
    ]
}

pub fn dump_tool(dir: Option<&Path>) -> Result<PathBuf> {
    require_tool(dir, &["mariadb-dump", "mysqldump"])
}

pub fn client_tool(dir: Option<&Path>) -> Result<PathBuf> {
    require_tool(dir, &["mariadb", "mysql"])
}

/// The dump command line for this tool and server: (program, args, tool
/// version line).
pub async fn dump_command(
    db: &DbArgs,
    secrets: &Secrets,
    server_version: &str,
) -> Result<(PathBuf, Vec<String>, String)> {
    let tool = dump_tool(db.tools_dir.as_deref())?;
    let version = tool_version(&tool).await?;
    let args = dump_args(
        ToolFlavor::detect(&version),
        ServerFlavor::detect(server_version),
        &db.host,
        db.port.unwrap_or(3306),
        &secrets.user(db.engine),
    );
    Ok((tool, args, version))
}

pub async fn connect(db: &DbArgs, secrets: &Secrets) -> Result<Conn> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(db.host.clone())
        .tcp_port(db.port.unwrap_or(3306))
        .user(Some(secrets.user(db.engine)))
        .pass(Some(secrets.password().to_owned()))
        .prefer_socket(false);
    let where_ = format!("connecting to {}:{}", db.host, db.port.unwrap_or(3306));
    match tokio::time::timeout(Duration::from_secs(15), Conn::new(opts)).await {
        Err(_) => Err(AgentError::Db(format!("{where_}: timed out"))),
        Ok(Err(mysql_async::Error::Server(e))) if e.code == 1045 || e.code == 1044 => {
            Err(AgentError::DbAuth(format!("{where_}: {}", e.message)))
        }
        Ok(Err(e)) => Err(AgentError::Db(format!("{where_}: {e}"))),
        Ok(Ok(conn)) => Ok(conn),
    }
}

fn db_err(e: mysql_async::Error) -> AgentError {
    AgentError::Db(e.to_string())
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn not_system() -> String {
    SYSTEM_SCHEMAS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn inventory(db: &DbArgs, secrets: &Secrets) -> Result<Inventory> {
    let mut conn = connect(db, secrets).await?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(db_err)?;
    let databases = user_schemas(&mut conn).await?;
    let _ = conn.disconnect().await;
    Ok(Inventory {
        server_version: version.unwrap_or_default(),
        databases,
        // Counted from the dump as it streams (see super::insert_count).
        row_counts: BTreeMap::new(),
        row_count_method: ROW_COUNT_METHOD.into(),
    })
}

/// The schemas other than the server's own, sorted.
async fn user_schemas(conn: &mut Conn) -> Result<Vec<String>> {
    conn.query(format!(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ({}) ORDER BY 1",
        not_system()
    ))
    .await
    .map_err(db_err)
}

async fn counts_on(conn: &mut Conn) -> Result<BTreeMap<String, u64>> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(db_err)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(db_err)?;
    let tables: Vec<(String, String)> = conn
        .query(format!(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ({}) ORDER BY 1, 2",
            not_system()
        ))
        .await
        .map_err(db_err)?;
    let mut out = BTreeMap::new();
    for (schema, table) in tables {
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote(&schema),
                quote(&table)
            ))
            .await
            .map_err(db_err)?;
        out.insert(format!("{schema}.{table}"), n.unwrap_or(0));
    }
    conn.query_drop("COMMIT").await.map_err(db_err)?;
    Ok(out)
}

pub async fn row_counts(db: &DbArgs, secrets: &Secrets) -> Result<BTreeMap<String, u64>> {
    let mut conn = connect(db, secrets).await?;
    let out = counts_on(&mut conn).await;
    let _ = conn.disconnect().await;
    out
}

/// Schemas other than the system ones.
pub async fn user_data(db: &DbArgs, secrets: &Secrets) -> Result<Vec<String>> {
    let mut conn = connect(db, secrets).await?;
    let schemas = user_schemas(&mut conn).await?;
    let _ = conn.disconnect().await;
    Ok(schemas
        .into_iter()
        .map(|s| format!("schema {s:?}"))
        .collect())
}

/// Streams a dump into the client.
pub async fn restore(
    db: &DbArgs,
    secrets: &Secrets,
    dump: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<String> {
    let client = client_tool(db.tools_dir.as_deref())?;
    let mut tool = Tool::spawn(
        &client,
        restore_args(&db.host, db.port.unwrap_or(3306), &secrets.user(db.engine)),
        &[("MYSQL_PWD", secrets.password())],
        true,
        false,
    )?;
    let mut stdin = tool.child.stdin.take().expect("stdin is piped");
    let fed = async {
        tokio::io::copy(dump, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    drop(stdin);
    tool.wait_after_feeding(fed).await?;
    Ok(tool_version(&client).await.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_and_server_flavours() {
        assert_eq!(
            ToolFlavor::detect(
                "mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)"
            ),
            ToolFlavor::MariaDb
        );
        assert_eq!(
            ToolFlavor::detect("mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)"),
            ToolFlavor::MariaDb
        );
        assert_eq!(
            ToolFlavor::detect(
                "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"
            ),
            ToolFlavor::MySql { major: 8 }
        );
        assert_eq!(
            ToolFlavor::detect("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)"),
            ToolFlavor::MySql { major: 5 }
        );
        assert_eq!(
            ServerFlavor::detect("10.11.6-MariaDB-0+deb12u1"),
            ServerFlavor::MariaDb
        );
        assert_eq!(
            ServerFlavor::detect("8.0.36"),
            ServerFlavor::MySql { major: 8 }
        );
        assert_eq!(
            ServerFlavor::detect("5.7.44-log"),
            ServerFlavor::MySql { major: 5 }
        );
    }

    #[test]
    fn common_flags_for_every_tool() {
        for tool in [ToolFlavor::MariaDb, ToolFlavor::MySql { major: 8 }] {
            let args = dump_args(tool, ServerFlavor::MariaDb, "h", 3306, "root");
            for flag in [
                "--single-transaction",
                "--all-databases",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--host=h",
                "--port=3306",
                "--user=root",
                "--ignore-table=mysql.user",
                "--ignore-table=mysql.global_priv",
                "--ignore-table=mysql.gtid_slave_pos",
                "--ignore-table=mysql.gtid_executed",
            ] {
                assert!(args.contains(&flag.to_owned()), "{tool:?}: {flag}");
            }
            assert!(!args.iter().any(|a| a.starts_with("--password")));
        }
    }

    #[test]
    fn mysql_8_flags_differ_from_mariadb() {
        let mysql = |major| ToolFlavor::MySql { major };
        // (tool, server, --set-gtid-purged=OFF, --column-statistics=0)
        let cases = [
            (ToolFlavor::MariaDb, ServerFlavor::MariaDb, false, false),
            (mysql(8), ServerFlavor::MySql { major: 8 }, true, false),
            (mysql(8), ServerFlavor::MariaDb, true, true),
            (mysql(5), ServerFlavor::MySql { major: 5 }, true, false),
        ];
        for (tool, server, gtid_off, no_column_statistics) in cases {
            let args = dump_args(tool, server, "h", 1, "u");
            let has = |prefix: &str| args.iter().any(|a| a.starts_with(prefix));
            let case = format!("{tool:?} against {server:?}: {args:?}");
            assert_eq!(has("--set-gtid-purged"), gtid_off, "{case}");
            if gtid_off {
                assert!(args.contains(&"--set-gtid-purged=OFF".to_owned()), "{case}");
            }
            assert_eq!(has("--column-statistics"), no_column_statistics, "{case}");
            if no_column_statistics {
                assert!(args.contains(&"--column-statistics=0".to_owned()), "{case}");
            }
        }
    }

    #[test]
    fn restore_client_line() {
        assert_eq!(
            restore_args("h", 3306, "root"),
            [
                "--host=h",
                "--port=3306",
                "--user=root",
                "--protocol=TCP",
                "--default-character-set=utf8mb4",
                "--binary-mode"
            ]
        );
    }
}
