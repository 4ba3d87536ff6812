//! PostgreSQL: `pg_dumpall --clean --if-exists` to back up, `psql` to
//! restore.
//!
//! Row counts in the manifest are read from the dump's COPY blocks as it
//! streams (see [`super::copy_count`]); at verify time the restored server
//! is counted with `COUNT(*)` of every user table (relkind `r` and `p`,
//! outside `pg_catalog`, `information_schema` and the toast schemas), each
//! database in one REPEATABLE READ READ ONLY transaction.
//!
//! Restore keeps the target's admin login: the dump's `DROP ROLE`,
//! `CREATE ROLE` and `ALTER ROLE` lines for the login the agent connects as
//! are left out (the first would fail — a session cannot drop its own role
//! — and the last would replace the admin's password with the source's,
//! breaking psql's own `\connect`s and the operator's Secret). The
//! operator's own logins (`dbop_…`: replication, monitoring) are the
//! target Database's, with passwords from its own Secrets: they are never
//! dropped (the replication login holds grants on functions `DROP ROLE`
//! would refuse to drop it for, and the target's replicas stream as it),
//! never get the source's password, and are created without a login when
//! the target lacks them, so that the dump's grants to them apply. Every
//! other role comes back with its password verifier. psql runs with
//! `ON_ERROR_STOP=1`: the first error fails the restore.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::{Inventory, Tool, require_tool, tool_version};
use crate::{AgentError, DbArgs, Result, Secrets};

pub const ROW_COUNT_METHOD: &str = "rows in each table's COPY block of the dump itself, counted as it streams: exactly what the dump holds, in its own snapshot";

/// `pg_dumpall` arguments (the password comes from `PGPASSWORD`).
pub fn dump_args(host: &str, port: u16, user: &str) -> Vec<String> {
    vec![
        "--clean".into(),
        "--if-exists".into(),
        "--no-password".into(),
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--username={user}"),
        "--database=postgres".into(),
    ]
}

/// `psql` arguments for a restore: no psqlrc, stop at the first error.
pub fn restore_args(host: &str, port: u16, user: &str) -> Vec<String> {
    vec![
        "--no-psqlrc".into(),
        "--quiet".into(),
        "--no-password".into(),
        "--set=ON_ERROR_STOP=1".into(),
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--username={user}"),
        "--dbname=postgres".into(),
    ]
}

pub fn tool_env(password: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("PGPASSWORD", password),
        ("PGCONNECT_TIMEOUT", "10"),
        ("PGAPPNAME", "database-operator-agent"),
    ]
}

/// `"name"` when PostgreSQL would need quotes, else `name` (as pg_dumpall's
/// fmtId writes role names).
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && !RESERVED.contains(&name) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Reserved words fmtId quotes that could plausibly be role names.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "user",
    "role",
    "select",
    "table",
    "group",
    "order",
    "default",
    "public",
    "current_user",
    "session_user",
];

/// Whether a line of the dump's roles section touches the admin login and
/// must be left out on restore.
pub fn skip_admin_line(line: &str, admin: &str) -> bool {
    let id = quote_ident(admin);
    let line = line.trim_end();
    line == format!("DROP ROLE IF EXISTS {id};")
        || line == format!("DROP ROLE {id};")
        || line == format!("CREATE ROLE {id};")
        || line.starts_with(&format!("ALTER ROLE {id} WITH "))
}

/// The prefix of the logins the operator keeps (`dbop_replication`,
/// `dbop_monitor`); users cannot take it (the API refuses it).
pub const OPERATOR_LOGIN_PREFIX: &str = "dbop_";

/// What restore feeds psql for a line of the dump's roles section: the
/// line, nothing (`None`), or a replacement. See the module's docs.
pub fn restore_line<'a>(line: &'a str, admin: &str) -> Option<std::borrow::Cow<'a, str>> {
    if skip_admin_line(line, admin) {
        return None;
    }
    let text = line.trim_end();
    let operator_role = |rest: &str| {
        rest.strip_prefix(OPERATOR_LOGIN_PREFIX)
            .is_some_and(|name| {
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
    };
    let statement = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(';'))
            .filter(|name| operator_role(name))
    };
    if statement("DROP ROLE IF EXISTS ").is_some() || statement("DROP ROLE ").is_some() {
        return None;
    }
    if let Some(name) = statement("CREATE ROLE ") {
        return Some(std::borrow::Cow::Owned(format!(
            "DO $$BEGIN CREATE ROLE {name}; EXCEPTION WHEN duplicate_object THEN NULL; END$$;\n"
        )));
    }
    if text
        .strip_prefix("ALTER ROLE ")
        .and_then(|rest| rest.split_once(' '))
        .is_some_and(|(name, rest)| operator_role(name) && rest.starts_with("WITH "))
    {
        return None;
    }
    Some(std::borrow::Cow::Borrowed(line))
}

/// Streams a dump into psql, with the role lines as [`restore_line`] has
/// them (the roles section ends at the first `\connect`).
pub async fn restore(
    db: &DbArgs,
    secrets: &Secrets,
    dump: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<String> {
    let psql = require_tool(db.tools_dir.as_deref(), &["psql"])?;
    let user = secrets.user(db.engine);
    let port = db.port.unwrap_or(5432);
    let mut tool = Tool::spawn(
        &psql,
        restore_args(&db.host, port, &user),
        &tool_env(secrets.password()),
        true,
        false,
    )?;
    let mut stdin = tool.child.stdin.take().expect("stdin is piped");
    let mut reader = BufReader::with_capacity(256 << 10, dump);
    let fed: std::io::Result<()> = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let Some(fed) = restore_line(&text, &user) else {
                continue;
            };
            stdin.write_all(fed.as_bytes()).await?;
            if text.starts_with("\\connect") {
                break;
            }
        }
        tokio::io::copy_buf(&mut reader, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    drop(stdin);
    tool.wait_after_feeding(fed).await?;
    Ok(tool_version(&psql).await.unwrap_or_default())
}

/// A client to one database; its connection runs as a task.
pub async fn connect(db: &DbArgs, secrets: &Secrets, dbname: &str) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&db.host)
        .port(db.port.unwrap_or(5432))
        .user(secrets.user(db.engine))
        .password(secrets.password())
        .dbname(dbname)
        .application_name("database-operator-agent")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        let why = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        let msg = format!(
            "connecting to {}:{} database {dbname:?}: {why}",
            db.host,
            db.port.unwrap_or(5432)
        );
        match e.code() {
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                AgentError::DbAuth(msg)
            }
            _ => AgentError::Db(msg),
        }
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn db_err(e: tokio_postgres::Error) -> AgentError {
    AgentError::Db(
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    )
}

/// Databases a dump covers (every one that accepts connections and is not
/// a template).
async fn databases(client: &Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

const USER_TABLES: &str = "SELECT n.nspname, c.relname FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
     ORDER BY 1, 2";

/// Rows of every user table of one database, `db.schema.table` → count.
async fn count_database(
    db: &DbArgs,
    secrets: &Secrets,
    dbname: &str,
    out: &mut BTreeMap<String, u64>,
) -> Result<()> {
    let mut client = connect(db, secrets, dbname).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_err)?;
    let tables = tx.query(USER_TABLES, &[]).await.map_err(db_err)?;
    for row in tables {
        let schema: String = row.get(0);
        let table: String = row.get(1);
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            quote_always(&schema),
            quote_always(&table)
        );
        let n: i64 = tx.query_one(&sql, &[]).await.map_err(db_err)?.get(0);
        out.insert(format!("{dbname}.{schema}.{table}"), n as u64);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

fn quote_always(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Version and databases; the row counts come from the dump as it streams
/// (see [`super::copy_count`]).
pub async fn inventory(db: &DbArgs, secrets: &Secrets) -> Result<Inventory> {
    let client = connect(db, secrets, "postgres").await?;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(db_err)?
        .get(0);
    let databases = databases(&client).await?;
    Ok(Inventory {
        server_version: version,
        databases,
        row_counts: BTreeMap::new(),
        row_count_method: ROW_COUNT_METHOD.into(),
    })
}

/// Rows of every user table of every database.
pub async fn row_counts(db: &DbArgs, secrets: &Secrets) -> Result<BTreeMap<String, u64>> {
    let client = connect(db, secrets, "postgres").await?;
    let dbs = databases(&client).await?;
    drop(client);
    let mut counts = BTreeMap::new();
    for name in dbs {
        count_database(db, secrets, &name, &mut counts).await?;
    }
    Ok(counts)
}

/// What user data the server holds: databases with user tables.
pub async fn user_data(db: &DbArgs, secrets: &Secrets) -> Result<Vec<String>> {
    let client = connect(db, secrets, "postgres").await?;
    let dbs = databases(&client).await?;
    drop(client);
    let mut found = Vec::new();
    for name in dbs {
        let client = connect(db, secrets, &name).await?;
        let n = client.query(USER_TABLES, &[]).await.map_err(db_err)?.len();
        if n > 0 {
            found.push(format!("database {name:?} ({n} tables)"));
        }
    }
    Ok(found)
}

/// Ends other sessions on the databases a restore is about to drop and
/// recreate (`--force` only): `DROP DATABASE` refuses while anyone is
/// connected. `postgres` is never dropped by the dump and is left alone.
pub async fn disconnect_others(
    db: &DbArgs,
    secrets: &Secrets,
    databases: &[String],
) -> Result<u64> {
    let targets: Vec<String> = databases
        .iter()
        .filter(|d| d.as_str() != "postgres")
        .cloned()
        .collect();
    let client = connect(db, secrets, "postgres").await?;
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
            &[&targets],
        )
        .await
        .map_err(db_err)?;
    Ok(rows.len() as u64)
}

/// `pg_dumpall` from the tools folder or PATH.
pub fn dump_tool(dir: Option<&Path>) -> Result<std::path::PathBuf> {
    require_tool(dir, &["pg_dumpall"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_command_line() {
        assert_eq!(
            dump_args("db.ns.svc", 5432, "postgres"),
            [
                "--clean",
                "--if-exists",
                "--no-password",
                "--host=db.ns.svc",
                "--port=5432",
                "--username=postgres",
                "--database=postgres"
            ]
        );
        let r = restore_args("h", 1, "u");
        assert!(r.contains(&"--set=ON_ERROR_STOP=1".to_owned()));
        assert!(r.contains(&"--no-psqlrc".to_owned()));
        // The password never is an argument.
        assert!(
            !dump_args("h", 1, "u")
                .iter()
                .any(|a| a.contains("pass") && a != "--no-password")
        );
    }

    #[test]
    fn the_operators_logins_are_kept_as_the_target_has_them() {
        let kept = |line: &str| restore_line(line, "postgres").map(std::borrow::Cow::into_owned);
        for line in [
            "DROP ROLE IF EXISTS dbop_replication;\n",
            "DROP ROLE dbop_monitor;",
            "ALTER ROLE dbop_replication WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN REPLICATION NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD 'SCRAM-SHA-256$4096:abc';",
            "DROP ROLE IF EXISTS postgres;",
        ] {
            assert_eq!(kept(line), None, "{line}");
        }
        assert_eq!(
            kept("CREATE ROLE dbop_monitor;\n").as_deref(),
            Some(
                "DO $$BEGIN CREATE ROLE dbop_monitor; EXCEPTION WHEN duplicate_object THEN NULL; END$$;\n"
            )
        );
        // Users' roles, grants to the operator's logins, and look-alikes
        // pass through unchanged.
        for line in [
            "CREATE ROLE app;\n",
            "ALTER ROLE app WITH LOGIN PASSWORD 'x';",
            "GRANT pg_monitor TO dbop_monitor GRANTED BY postgres;",
            "CREATE ROLE \"dbop_X\";",
            "ALTER ROLE dbop_monitor SET search_path TO public;",
        ] {
            assert_eq!(kept(line).as_deref(), Some(line), "{line}");
        }
    }

    #[test]
    fn only_the_admins_role_lines_are_left_out() {
        for line in [
            "DROP ROLE IF EXISTS postgres;\n",
            "CREATE ROLE postgres;",
            "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc';",
        ] {
            assert!(skip_admin_line(line, "postgres"), "{line}");
        }
        for line in [
            "DROP ROLE IF EXISTS app;",
            "CREATE ROLE app;",
            "ALTER ROLE app WITH LOGIN PASSWORD 'x';",
            "ALTER ROLE postgresx WITH LOGIN;",
            "INSERT INTO t VALUES ('CREATE ROLE postgres;');",
            "GRANT app TO postgres GRANTED BY postgres;",
        ] {
            assert!(!skip_admin_line(line, "postgres"), "{line}");
        }
        assert!(skip_admin_line("CREATE ROLE \"Admin-1\";", "Admin-1"));
        assert!(skip_admin_line("DROP ROLE IF EXISTS \"user\";", "user"));
    }

    #[test]
    fn identifiers_are_quoted_like_pg_dumpall() {
        assert_eq!(quote_ident("postgres"), "postgres");
        assert_eq!(quote_ident("app_1"), "app_1");
        assert_eq!(quote_ident("Admin"), "\"Admin\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
    }
}
