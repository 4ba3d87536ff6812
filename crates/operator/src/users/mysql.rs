//! MySQL and MariaDB users: the account `'u'@'%'`, and privileges per
//! schema (MySQL calls a database a schema; there is no schema level below
//! it, so `schema` is refused).
//!
//! The dialect is read at runtime from `SELECT VERSION()` (contains
//! "MariaDB" → MariaDB, else MySQL 8+):
//! - MariaDB: `CREATE USER IF NOT EXISTS 'u'@'%' IDENTIFIED BY '…'` /
//!   `ALTER USER 'u'@'%' IDENTIFIED BY '…'`.
//! - MySQL 8: `… IDENTIFIED WITH caching_sha2_password BY '…'` (MySQL 8
//!   removed `GRANT … IDENTIFIED BY`, which is never used here for either).
//!
//! both with `WITH MAX_USER_CONNECTIONS n` (0 = unlimited). Privileges are
//! granted to the account directly, so no roles and no `SET DEFAULT ROLE`
//! (whose syntax differs: MySQL `… TO u`, MariaDB `… FOR u`) are needed.
//!
//! Portable roles on schema D, granted `ON D.*`:
//! - readOnly: SELECT, SHOW VIEW, EXECUTE
//! - readWrite: + INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES
//! - admin: ALL PRIVILEGES
//!
//! At the `D.*` level `_` and `%` are wildcards, so D is written with them
//! escaped (`app\_1`): the grant covers exactly D, never `appx1`. (With
//! MySQL 8's `partial_revokes=ON` the server reads names literally; that
//! setting is not supported here.)
//!
//! Like PostgreSQL, apply revokes `previous − declared` privilege atoms then
//! grants all declared ones. `ALL PRIVILEGES` is one atom: moving from admin
//! to readWrite revokes ALL and grants readWrite's list right after (MySQL
//! has no transactional GRANT, so in between the account briefly has less).
//!
//! The password reaches the server inside the statement (MySQL has no
//! client-side verifier that every version accepts), over a connection
//! without TLS for now; error texts are redacted and a syntax error in the
//! statement that carries it is withheld entirely.

use std::collections::{BTreeMap, BTreeSet};

use database_operator_api::v1::user::{NativeGrant, NativePrivilege, Privilege, Role};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::quote::{mysql_account, mysql_ident, mysql_literal, mysql_schema_grant};
use super::{
    Access, CONNECT_TIMEOUT, Change, Granted, Logins, Target, UserError, UserSpec, redact,
};

/// The MySQL/MariaDB login admin.
pub struct Mysql;

/// Schemas no DatabaseUser may get privileges on: the grant tables (write
/// access to `mysql` is root) and the server's own.
pub const RESERVED_DATABASES: &[&str] =
    &["mysql", "sys", "performance_schema", "information_schema"];

/// Which server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    MariaDb,
    MySql,
}

impl Dialect {
    /// From `SELECT VERSION()`.
    pub fn detect(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            Dialect::MariaDb
        } else {
            Dialect::MySql
        }
    }
}

/// The object a privilege is on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// `D.*`
    Schema(String),
    /// `D.t`
    Table(String, String),
}

/// One privilege on one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub object: Object,
    pub privilege: &'static str,
}

const ALL: &str = "ALL PRIVILEGES";

const READ_ONLY: &[&str] = &["SELECT", "SHOW VIEW", "EXECUTE"];
const READ_WRITE: &[&str] = &[
    "SELECT",
    "SHOW VIEW",
    "EXECUTE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
];

/// Canonical order of keywords in one statement.
const ORDER: &[&str] = &[
    ALL,
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
];

fn rank(keyword: &str) -> usize {
    ORDER
        .iter()
        .position(|k| *k == keyword)
        .unwrap_or(ORDER.len())
}

/// The atoms of a portable privilege.
pub fn privilege_atoms(p: &Privilege) -> Vec<Atom> {
    let keywords: &[&'static str] = match p.role {
        Role::ReadOnly => READ_ONLY,
        Role::ReadWrite => READ_WRITE,
        Role::Admin => &[ALL],
    };
    keywords
        .iter()
        .map(|k| Atom {
            object: Object::Schema(p.database.clone()),
            privilege: k,
        })
        .collect()
}

/// The MySQL spelling of a native keyword on a schema (`table` = false) or
/// a table, or why there is none.
fn native_keyword(p: NativePrivilege, table: bool) -> Result<&'static str, UserError> {
    use NativePrivilege::*;
    let on_both = matches!(
        p,
        Select
            | Insert
            | Update
            | Delete
            | Create
            | Drop
            | References
            | Index
            | Alter
            | CreateView
            | ShowView
            | Trigger
    );
    let schema_only = matches!(p, Temporary | LockTables | Execute);
    if on_both {
        Ok(p.keyword())
    } else if schema_only && !table {
        // MySQL spells the privilege to create temporary tables in full.
        Ok(if p == Temporary {
            "CREATE TEMPORARY TABLES"
        } else {
            p.keyword()
        })
    } else if schema_only {
        Err(UserError::Invalid(format!(
            "{:?} is a MySQL privilege on a whole database, not on a table",
            p.keyword()
        )))
    } else {
        let hint = match p {
            Truncate => " (TRUNCATE needs DROP in MySQL)",
            Usage => " (USAGE means no privilege in MySQL)",
            _ => "",
        };
        Err(UserError::Invalid(format!(
            "{:?} is not a MySQL privilege{hint}",
            p.keyword()
        )))
    }
}

/// The atoms of a native grant, or why MySQL has no such grant.
pub fn native_atoms(g: &NativeGrant) -> Result<Vec<Atom>, UserError> {
    if g.schema.is_some() {
        return Err(UserError::Invalid(format!(
            "MySQL has no schemas inside a database: drop `schema` from the native grant on {:?} (name the database in `database`)",
            g.database
        )));
    }
    let object = match &g.table {
        Some(t) => Object::Table(g.database.clone(), t.clone()),
        None => Object::Schema(g.database.clone()),
    };
    g.privileges
        .iter()
        .map(|&p| {
            Ok(Atom {
                object: object.clone(),
                privilege: native_keyword(p, g.table.is_some())?,
            })
        })
        .collect()
}

/// Everything declared, as atoms.
pub fn desired_atoms(
    privileges: &[Privilege],
    native_grants: &[NativeGrant],
) -> Result<BTreeSet<Atom>, UserError> {
    for p in privileges {
        if p.schema.is_some() {
            return Err(UserError::Invalid(format!(
                "MySQL has no schemas inside a database: drop `schema` from the privilege on {:?}",
                p.database
            )));
        }
    }
    let mut out: BTreeSet<Atom> = privileges.iter().flat_map(privilege_atoms).collect();
    for g in native_grants {
        out.extend(native_atoms(g)?);
    }
    Ok(out)
}

/// What the previous apply granted; entries that no longer map are skipped.
pub fn previous_atoms(previous: &Granted<'_>) -> BTreeSet<Atom> {
    let mut out: BTreeSet<Atom> = previous
        .privileges
        .iter()
        .filter(|p| p.schema.is_none())
        .flat_map(privilege_atoms)
        .collect();
    for g in previous.native_grants {
        if let Ok(atoms) = native_atoms(g) {
            out.extend(atoms);
        }
    }
    out
}

fn object_sql(object: &Object) -> Result<String, UserError> {
    Ok(match object {
        Object::Schema(d) => format!("{}.*", mysql_schema_grant(d)?),
        Object::Table(d, t) => format!("{}.{}", mysql_ident(d)?, mysql_ident(t)?),
    })
}

fn statements<'a>(
    atoms: impl Iterator<Item = &'a Atom>,
    grant: bool,
    account: &str,
) -> Result<Vec<String>, UserError> {
    let mut grouped: BTreeMap<&Object, Vec<&str>> = BTreeMap::new();
    for a in atoms {
        grouped.entry(&a.object).or_default().push(a.privilege);
    }
    let mut out = Vec::new();
    for (object, mut keywords) in grouped {
        keywords.sort_by_key(|k| rank(k));
        keywords.dedup();
        // ALL PRIVILEGES stands alone in a statement and covers the rest.
        if keywords.contains(&ALL) {
            keywords = vec![ALL];
        }
        let on = object_sql(object)?;
        let list = keywords.join(", ");
        out.push(if grant {
            format!("GRANT {list} ON {on} TO {account}")
        } else {
            format!("REVOKE {list} ON {on} FROM {account}")
        });
    }
    Ok(out)
}

/// REVOKE what `previous` had and `desired` lacks, then GRANT all of
/// `desired`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub revoke: Vec<String>,
    pub grant: Vec<String>,
}

pub fn plan(
    username: &str,
    desired: &BTreeSet<Atom>,
    previous: &BTreeSet<Atom>,
) -> Result<Plan, UserError> {
    let account = mysql_account(username)?;
    Ok(Plan {
        revoke: statements(previous.difference(desired), false, &account)?,
        grant: statements(desired.iter(), true, &account)?,
    })
}

/// CREATE USER IF NOT EXISTS or ALTER USER, in the dialect's words.
pub fn user_statement(
    dialect: Dialect,
    username: &str,
    password: &str,
    connection_limit: Option<i32>,
    create: bool,
    no_backslash_escapes: bool,
) -> Result<String, UserError> {
    let account = mysql_account(username)?;
    let literal = mysql_literal(password, no_backslash_escapes)?;
    let auth = match dialect {
        Dialect::MariaDb => format!("IDENTIFIED BY {literal}"),
        Dialect::MySql => format!("IDENTIFIED WITH caching_sha2_password BY {literal}"),
    };
    let verb = if create {
        "CREATE USER IF NOT EXISTS"
    } else {
        "ALTER USER"
    };
    let limit = connection_limit.unwrap_or(0);
    Ok(format!(
        "{verb} {account} {auth} WITH MAX_USER_CONNECTIONS {limit}"
    ))
}

// ---------------------------------------------------------------------------
// Talking to the server.

/// Server error codes.
const ER_NONEXISTING_GRANT: u16 = 1141;
const ER_NONEXISTING_TABLE_GRANT: u16 = 1147;
const ER_NO_SUCH_TABLE: u16 = 1146;
const ER_PARSE_ERROR: u16 = 1064;
const ER_NO_SUCH_THREAD: u16 = 1094;

pub(crate) fn db_error(e: &mysql_async::Error, secrets: &[&str]) -> UserError {
    match e {
        mysql_async::Error::Server(s) => UserError::Refused(redact(
            &format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state),
            secrets,
        )),
        other => UserError::Unreachable(redact(&other.to_string(), secrets)),
    }
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// An admin session: its dialect and whether it reads backslashes in
/// string literals.
pub(crate) struct Session {
    pub(crate) conn: Conn,
    pub(crate) dialect: Dialect,
    no_backslash_escapes: bool,
}

pub(crate) async fn connect(target: &Target, secrets: &[&str]) -> Result<Session, UserError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(target.host.clone())
        .tcp_port(target.port)
        .user(Some(target.admin_user.clone()))
        .pass(Some(target.admin_password.expose().to_owned()))
        .prefer_socket(false);
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Err(_) => {
            return Err(UserError::Unreachable(format!(
                "connecting to {}:{} timed out",
                target.host, target.port
            )));
        }
        Ok(Err(e)) => {
            return Err(UserError::Unreachable(redact(
                &format!(
                    "connecting to {}:{} as {:?}: {e}",
                    target.host, target.port, target.admin_user
                ),
                secrets,
            )));
        }
        Ok(Ok(conn)) => conn,
    };
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| db_error(&e, secrets))?;
    let mode: Option<String> = conn
        .query_first("SELECT @@SESSION.sql_mode")
        .await
        .map_err(|e| db_error(&e, secrets))?;
    // Never wait forever behind another session's metadata locks.
    conn.query_drop("SET SESSION lock_wait_timeout = 30")
        .await
        .map_err(|e| db_error(&e, secrets))?;
    Ok(Session {
        conn,
        dialect: Dialect::detect(version.as_deref().unwrap_or_default()),
        no_backslash_escapes: mode
            .unwrap_or_default()
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES")),
    })
}

impl Logins for Mysql {
    const SCHEME: &'static str = "mysql";

    fn check(&self, user: &UserSpec<'_>) -> Result<(), UserError> {
        for db in user.databases() {
            if RESERVED_DATABASES
                .iter()
                .any(|r| r.eq_ignore_ascii_case(db))
            {
                return Err(UserError::Invalid(format!(
                    "database {db:?} is the server's own: privileges on it reach other accounts"
                )));
            }
        }
        let atoms = desired_atoms(user.privileges, user.native_grants)?;
        // Quotes every name once, so nothing fails half-way through apply.
        plan(user.username, &atoms, &BTreeSet::new())?;
        Ok(())
    }

    async fn upsert(&self, access: &Access<'_>, change: &Change<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let Change { user, previous } = *change;
        let desired = desired_atoms(user.privileges, user.native_grants)?;
        let plan = plan(user.username, &desired, &previous_atoms(previous))?;
        let mut session = connect(target, secrets).await?;
        let result = apply_with(&mut session, user, &desired, &plan, secrets).await;
        let _ = session.conn.disconnect().await;
        result
    }

    async fn remove(&self, access: &Access<'_>, username: &str) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let account = mysql_account(username)?;
        let mut session = connect(target, secrets).await?;
        let conn = &mut session.conn;
        let result = async {
            let sessions: Vec<u64> = conn
                .exec(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
                    (username,),
                )
                .await
                .map_err(|e| db_error(&e, secrets))?;
            for id in sessions {
                match conn.query_drop(format!("KILL CONNECTION {id}")).await {
                    Ok(()) => {}
                    Err(e) if server_code(&e) == Some(ER_NO_SUCH_THREAD) => {}
                    Err(e) => return Err(db_error(&e, secrets)),
                }
            }
            conn.query_drop(format!("DROP USER IF EXISTS {account}"))
                .await
                .map_err(|e| db_error(&e, secrets))
        }
        .await;
        let _ = session.conn.disconnect().await;
        result
    }

    async fn monitoring(&self, access: &Access<'_>, user: &UserSpec<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let mut session = connect(target, secrets).await?;
        let plan = Plan {
            revoke: Vec::new(),
            grant: monitoring_grants(session.dialect, user.username)?,
        };
        let result = apply_with(&mut session, user, &BTreeSet::new(), &plan, secrets).await;
        let _ = session.conn.disconnect().await;
        result
    }
}

pub(crate) async fn apply_with(
    session: &mut Session,
    user: &UserSpec<'_>,
    desired: &BTreeSet<Atom>,
    plan: &Plan,
    secrets: &[&str],
) -> Result<(), UserError> {
    let conn = &mut session.conn;
    // Every schema a declared privilege names must exist.
    let schemas: BTreeSet<&str> = desired
        .iter()
        .map(|a| match &a.object {
            Object::Schema(d) | Object::Table(d, _) => d.as_str(),
        })
        .collect();
    for schema in schemas {
        let found: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (schema,),
            )
            .await
            .map_err(|e| db_error(&e, secrets))?;
        if found.is_none() {
            return Err(UserError::Refused(format!(
                "database {schema:?} does not exist (the operator does not create databases for users)"
            )));
        }
    }

    let exists: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = '%'",
            (user.username,),
        )
        .await
        .map_err(|e| db_error(&e, secrets))?;
    let create = exists.unwrap_or(0) == 0;
    let sql = user_statement(
        session.dialect,
        user.username,
        user.password.expose(),
        user.connection_limit,
        create,
        session.no_backslash_escapes,
    )?;
    conn.query_drop(sql).await.map_err(|e| {
        if server_code(&e) == Some(ER_PARSE_ERROR) {
            UserError::Refused(
                "syntax error in the statement that sets the password (details withheld)".into(),
            )
        } else {
            db_error(&e, secrets)
        }
    })?;
    if create {
        // CREATE USER IF NOT EXISTS is a no-op when another reconcile won
        // the race: set the password and limit anyway.
        let sql = user_statement(
            session.dialect,
            user.username,
            user.password.expose(),
            user.connection_limit,
            false,
            session.no_backslash_escapes,
        )?;
        conn.query_drop(sql)
            .await
            .map_err(|e| db_error(&e, secrets))?;
    }

    for sql in &plan.revoke {
        tracing::debug!(statement = %sql, "mysql");
        match conn.query_drop(sql).await {
            Ok(()) => {}
            // Already gone: nothing to revoke.
            Err(e)
                if matches!(
                    server_code(&e),
                    Some(ER_NONEXISTING_GRANT | ER_NONEXISTING_TABLE_GRANT | ER_NO_SUCH_TABLE)
                ) => {}
            Err(e) => return Err(db_error(&e, secrets)),
        }
    }
    for sql in &plan.grant {
        tracing::debug!(statement = %sql, "mysql");
        conn.query_drop(sql)
            .await
            .map_err(|e| db_error(&e, secrets))?;
    }
    Ok(())
}

/// The grants of the monitoring login: what mysqld_exporter's default
/// collectors read (processlist, replica status, performance_schema), and
/// no table data. MariaDB 10.5.9+ moved replica status from REPLICATION
/// CLIENT (now an alias of BINLOG MONITOR) to SLAVE MONITOR.
pub fn monitoring_grants(dialect: Dialect, username: &str) -> Result<Vec<String>, UserError> {
    let account = mysql_account(username)?;
    let global = match dialect {
        Dialect::MySql => "PROCESS, REPLICATION CLIENT",
        Dialect::MariaDb => "PROCESS, REPLICATION CLIENT, SLAVE MONITOR",
    };
    Ok(vec![
        format!("GRANT {global} ON *.* TO {account}"),
        format!("GRANT SELECT ON performance_schema.* TO {account}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Password;
    use crate::users::quote::tests::mysql_lex;

    fn privilege(role: Role, database: &str) -> Privilege {
        Privilege {
            role,
            database: database.into(),
            schema: None,
        }
    }

    fn plan_for(desired: &[Privilege], previous: &[Privilege]) -> Plan {
        let d = desired_atoms(desired, &[]).unwrap();
        let p = previous_atoms(&Granted {
            privileges: previous,
            native_grants: &[],
        });
        plan("app", &d, &p).unwrap()
    }

    #[test]
    fn monitoring_grants_are_least_privilege_and_quoted() {
        assert_eq!(
            monitoring_grants(Dialect::MySql, "dbop_monitor").unwrap(),
            [
                "GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'dbop_monitor'@'%'",
                "GRANT SELECT ON performance_schema.* TO 'dbop_monitor'@'%'",
            ]
        );
        assert_eq!(
            monitoring_grants(Dialect::MariaDb, "dbop_monitor").unwrap()[0],
            "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'dbop_monitor'@'%'"
        );
        assert!(monitoring_grants(Dialect::MySql, "a'b").unwrap()[0].ends_with("TO 'a''b'@'%'"));
    }

    #[test]
    fn dialects() {
        assert_eq!(
            Dialect::detect("10.11.6-MariaDB-0+deb12u1"),
            Dialect::MariaDb
        );
        assert_eq!(Dialect::detect("8.4.3"), Dialect::MySql);
        assert_eq!(Dialect::detect("8.0.40-0ubuntu"), Dialect::MySql);
    }

    #[test]
    fn user_statements_per_dialect() {
        assert_eq!(
            user_statement(Dialect::MariaDb, "app", "pw", Some(5), true, false).unwrap(),
            "CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 5"
        );
        assert_eq!(
            user_statement(Dialect::MariaDb, "app", "pw", None, false, false).unwrap(),
            "ALTER USER 'app'@'%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 0"
        );
        assert_eq!(
            user_statement(Dialect::MySql, "app", "pw", Some(5), true, false).unwrap(),
            "CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'pw' WITH MAX_USER_CONNECTIONS 5"
        );
        assert_eq!(
            user_statement(Dialect::MySql, "app", "pw", None, false, false).unwrap(),
            "ALTER USER 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'pw' WITH MAX_USER_CONNECTIONS 0"
        );
        // No GRANT ... IDENTIFIED BY anywhere (MySQL 8 removed it).
        let d = desired_atoms(&[privilege(Role::Admin, "app")], &[]).unwrap();
        for sql in plan("app", &d, &BTreeSet::new()).unwrap().grant {
            assert!(!sql.contains("IDENTIFIED"), "{sql}");
        }
    }

    #[test]
    fn hostile_passwords_stay_inside_the_literal() {
        for pw in [
            "x'; DROP USER root; --",
            r"x\'; DROP USER root; --",
            r"x\",
            "x' WITH MAX_USER_CONNECTIONS 1 /*",
        ] {
            for nbe in [false, true] {
                let sql = user_statement(Dialect::MySql, "app", pw, None, false, nbe).unwrap();
                let lit = sql.split_once(" BY ").unwrap().1;
                let (value, rest) = mysql_lex(lit, !nbe).unwrap();
                assert_eq!(value, pw);
                assert_eq!(rest, " WITH MAX_USER_CONNECTIONS 0");
            }
        }
    }

    #[test]
    fn role_grants() {
        assert_eq!(
            plan_for(&[privilege(Role::ReadOnly, "app")], &[]).grant,
            ["GRANT SELECT, EXECUTE, SHOW VIEW ON `app`.* TO 'app'@'%'"]
        );
        assert_eq!(
            plan_for(&[privilege(Role::ReadWrite, "app_1")], &[]).grant,
            [
                r"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, SHOW VIEW ON `app\_1`.* TO 'app'@'%'"
            ]
        );
        assert_eq!(
            plan_for(&[privilege(Role::Admin, "app")], &[]).grant,
            ["GRANT ALL PRIVILEGES ON `app`.* TO 'app'@'%'"]
        );
        // Admin and readOnly on the same schema: ALL covers it.
        assert_eq!(
            plan_for(
                &[
                    privilege(Role::Admin, "app"),
                    privilege(Role::ReadOnly, "app")
                ],
                &[]
            )
            .grant,
            ["GRANT ALL PRIVILEGES ON `app`.* TO 'app'@'%'"]
        );
    }

    #[test]
    fn revocations() {
        let p = plan_for(
            &[privilege(Role::ReadOnly, "app")],
            &[privilege(Role::ReadWrite, "app")],
        );
        assert_eq!(
            p.revoke,
            [
                "REVOKE INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES ON `app`.* FROM 'app'@'%'"
            ]
        );
        let p = plan_for(
            &[privilege(Role::ReadWrite, "app")],
            &[privilege(Role::Admin, "app")],
        );
        assert_eq!(
            p.revoke,
            ["REVOKE ALL PRIVILEGES ON `app`.* FROM 'app'@'%'"]
        );
        assert_eq!(p.grant.len(), 1, "readWrite granted again right after");
        let p = plan_for(&[], &[privilege(Role::ReadOnly, "old")]);
        assert_eq!(
            p.revoke,
            ["REVOKE SELECT, EXECUTE, SHOW VIEW ON `old`.* FROM 'app'@'%'"]
        );
        assert!(p.grant.is_empty());
        let same = [privilege(Role::ReadWrite, "app")];
        assert!(plan_for(&same, &same).revoke.is_empty());
    }

    #[test]
    fn native_grants() {
        use NativePrivilege::*;
        let g = NativeGrant {
            privileges: vec![Select, Insert, ShowView],
            database: "app".into(),
            schema: None,
            table: Some("orders".into()),
        };
        let d = desired_atoms(&[], std::slice::from_ref(&g)).unwrap();
        assert_eq!(
            plan("app", &d, &BTreeSet::new()).unwrap().grant,
            ["GRANT SELECT, INSERT, SHOW VIEW ON `app`.`orders` TO 'app'@'%'"]
        );
        let g = NativeGrant {
            privileges: vec![Temporary, LockTables, Execute, Create],
            table: None,
            ..g
        };
        let d = desired_atoms(&[], std::slice::from_ref(&g)).unwrap();
        assert_eq!(
            plan("app", &d, &BTreeSet::new()).unwrap().grant,
            ["GRANT CREATE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE ON `app`.* TO 'app'@'%'"]
        );
        for (privileges, schema, table) in [
            (vec![Truncate], None, None),
            (vec![Usage], None, None),
            (vec![Find], None, None),
            (vec![CreateIndex], None, Some("t")),
            (vec![Execute], None, Some("t")),
            (vec![LockTables], None, Some("t")),
            (vec![Select], Some("public"), None),
        ] {
            let g = NativeGrant {
                privileges,
                database: "app".into(),
                schema: schema.map(Into::into),
                table: table.map(Into::into),
            };
            assert!(
                matches!(native_atoms(&g), Err(UserError::Invalid(_))),
                "{g:?}"
            );
        }
    }

    #[test]
    fn validate_refuses_schema_and_hostile_names() {
        let pw = Password::new("pw");
        let with_schema = [Privilege {
            role: Role::ReadOnly,
            database: "app".into(),
            schema: Some("public".into()),
        }];
        let user = UserSpec {
            username: "app",
            password: &pw,
            connection_limit: None,
            privileges: &with_schema,
            native_grants: &[],
        };
        assert!(
            matches!(Mysql.validate(&user), Err(UserError::Invalid(m)) if m.contains("schema"))
        );
        let hostile = [privilege(Role::ReadOnly, "app`.* TO 'x'@'%'; --")];
        let user = UserSpec {
            privileges: &hostile,
            ..user
        };
        assert!(matches!(Mysql.validate(&user), Err(UserError::Invalid(_))));
        // Even unchecked, the plan keeps the name inside its quotes.
        let d = desired_atoms(&hostile, &[]).unwrap();
        let grant = &plan("app", &d, &BTreeSet::new()).unwrap().grant[0];
        let on = grant.split_once(" ON ").unwrap().1;
        let (name, rest) = mysql_lex(on, true).unwrap();
        assert_eq!(name, r"app`.* TO 'x'@'\%'; --");
        assert_eq!(rest, ".* TO 'app'@'%'");
    }
}
