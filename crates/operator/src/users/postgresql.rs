//! PostgreSQL users: a LOGIN role with a client-computed SCRAM-SHA-256
//! verifier (the cleartext never reaches the server), and grants per
//! database and schema.
//!
//! Grants are planned as a set of "atoms" (database, object, one privilege
//! keyword). Apply computes the atoms of what is declared and of what the
//! previous apply granted, revokes `previous − declared` (so nothing a
//! still-declared privilege needs is revoked) and grants all of
//! `declared` (idempotent), in one transaction per database.
//!
//! Portable roles, per database D and schema S (default `public`):
//! - readOnly: CONNECT on D; USAGE on S; SELECT on all tables and sequences
//!   in S; and default privileges (for tables and sequences the admin
//!   creates later in S) with the same.
//! - readWrite: readOnly + INSERT, UPDATE, DELETE on tables; USAGE, UPDATE on
//!   sequences (and default privileges).
//! - admin: CONNECT, CREATE, TEMPORARY (= ALL) on D; USAGE, CREATE on S; all
//!   table privileges (SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES,
//!   TRIGGER, and MAINTAIN on PostgreSQL 17+) and all sequence privileges on
//!   S, and default privileges. PostgreSQL 15+ no longer lets PUBLIC create
//!   in `public`, so only admin can create tables there.
//!
//! Default privileges apply to objects the admin role (Target.admin_user)
//! creates; objects another user creates are theirs to grant.
//!
//! Native grants are exact (nothing implied):
//! - `table` set: `SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES,
//!   TRIGGER` on `schema.table` (schema default `public`);
//! - `schema` set, no table: `USAGE, CREATE` on the schema; the table
//!   keywords on all its tables; `EXECUTE` on all its functions;
//! - neither: `CREATE, TEMPORARY` on the database.
//!
//! Connections use `NoTls` for now (the server sees only the verifier).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use database_operator_api::v1::user::{NativeGrant, NativePrivilege, Privilege, Role};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::quote::{pg_ident, pg_literal};
use super::{
    Access, CONNECT_TIMEOUT, Change, Granted, Logins, Target, UserError, UserSpec, redact,
};

/// The PostgreSQL login admin.
pub struct Postgresql;

/// Databases no DatabaseUser may get privileges on.
pub const RESERVED_DATABASES: &[&str] = &["template0", "template1"];

/// What the server can do that changes the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// PostgreSQL 17+: tables have the MAINTAIN privilege.
    pub maintain: bool,
}

/// One object a privilege is granted on, inside one database.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    Database,
    Schema(String),
    AllTables(String),
    AllSequences(String),
    AllFunctions(String),
    /// ALTER DEFAULT PRIVILEGES FOR ROLE <admin> IN SCHEMA s ... ON TABLES
    DefaultTables(String),
    /// ALTER DEFAULT PRIVILEGES FOR ROLE <admin> IN SCHEMA s ... ON SEQUENCES
    DefaultSequences(String),
    Table {
        schema: String,
        table: String,
    },
}

/// One privilege on one object in one database.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub database: String,
    pub object: Object,
    pub privilege: &'static str,
}

/// Statements for one database: revokes first, then grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabasePlan {
    pub revoke: Vec<String>,
    pub grant: Vec<String>,
}

const TABLE_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// Canonical order of keywords inside one statement: database and schema
/// privileges, the table privileges in their order, then the rest.
const ORDER: [&[&str]; 3] = [
    &["CONNECT", "CREATE", "TEMPORARY", "USAGE"],
    TABLE_PRIVILEGES,
    &["MAINTAIN", "EXECUTE"],
];

fn rank(keyword: &str) -> usize {
    ORDER
        .iter()
        .copied()
        .flatten()
        .position(|k| *k == keyword)
        .unwrap_or(usize::MAX)
}

/// The atoms a portable privilege stands for.
pub fn privilege_atoms(p: &Privilege, caps: Caps) -> Vec<Atom> {
    let schema = p.schema.clone().unwrap_or_else(|| "public".to_owned());
    let (database, schema_privs, table_privs, sequence_privs): (
        &[&'static str],
        &[&'static str],
        Vec<&'static str>,
        &[&'static str],
    ) = match p.role {
        Role::ReadOnly => (&["CONNECT"], &["USAGE"], vec!["SELECT"], &["SELECT"]),
        Role::ReadWrite => (
            &["CONNECT"],
            &["USAGE"],
            vec!["SELECT", "INSERT", "UPDATE", "DELETE"],
            &["USAGE", "SELECT", "UPDATE"],
        ),
        Role::Admin => {
            let mut tables = TABLE_PRIVILEGES.to_vec();
            if caps.maintain {
                tables.push("MAINTAIN");
            }
            (
                &["CONNECT", "CREATE", "TEMPORARY"],
                &["USAGE", "CREATE"],
                tables,
                &["USAGE", "SELECT", "UPDATE"],
            )
        }
    };
    let atom = |object: Object, privilege| Atom {
        database: p.database.clone(),
        object,
        privilege,
    };
    let mut out = Vec::new();
    out.extend(database.iter().map(|k| atom(Object::Database, k)));
    out.extend(
        schema_privs
            .iter()
            .map(|k| atom(Object::Schema(schema.clone()), k)),
    );
    for k in &table_privs {
        out.push(atom(Object::AllTables(schema.clone()), k));
        out.push(atom(Object::DefaultTables(schema.clone()), k));
    }
    for k in sequence_privs {
        out.push(atom(Object::AllSequences(schema.clone()), k));
        out.push(atom(Object::DefaultSequences(schema.clone()), k));
    }
    out
}

fn is_table_privilege(p: NativePrivilege) -> bool {
    TABLE_PRIVILEGES.contains(&p.keyword())
}

/// The atoms of a native grant, or why PostgreSQL has no such grant.
pub fn native_atoms(g: &NativeGrant) -> Result<Vec<Atom>, UserError> {
    let mut out = Vec::new();
    for &p in &g.privileges {
        let keyword = p.keyword();
        let object = match (&g.schema, &g.table) {
            (schema, Some(table)) => {
                if !is_table_privilege(p) {
                    return Err(UserError::Invalid(format!(
                        "{keyword:?} is not a PostgreSQL table privilege (use one of {})",
                        TABLE_PRIVILEGES.join(", ")
                    )));
                }
                Object::Table {
                    schema: schema.clone().unwrap_or_else(|| "public".to_owned()),
                    table: table.clone(),
                }
            }
            (Some(schema), None) => match p {
                NativePrivilege::Usage | NativePrivilege::Create => Object::Schema(schema.clone()),
                NativePrivilege::Execute => Object::AllFunctions(schema.clone()),
                p if is_table_privilege(p) => Object::AllTables(schema.clone()),
                _ => {
                    return Err(UserError::Invalid(format!(
                        "{keyword:?} is not a PostgreSQL privilege on a schema or its tables (use USAGE, CREATE, EXECUTE or {})",
                        TABLE_PRIVILEGES.join(", ")
                    )));
                }
            },
            (None, None) => match p {
                NativePrivilege::Create | NativePrivilege::Temporary => Object::Database,
                p if is_table_privilege(p)
                    || matches!(p, NativePrivilege::Usage | NativePrivilege::Execute) =>
                {
                    return Err(UserError::Invalid(format!(
                        "{keyword:?} on database {:?} needs a schema (e.g. public) or a table",
                        g.database
                    )));
                }
                _ => {
                    return Err(UserError::Invalid(format!(
                        "{keyword:?} is not a PostgreSQL privilege on a database (use CREATE or TEMPORARY)"
                    )));
                }
            },
        };
        out.push(Atom {
            database: g.database.clone(),
            object,
            privilege: keyword,
        });
    }
    Ok(out)
}

/// Everything declared, as atoms.
pub fn desired_atoms(
    privileges: &[Privilege],
    native_grants: &[NativeGrant],
    caps: Caps,
) -> Result<BTreeSet<Atom>, UserError> {
    let mut out: BTreeSet<Atom> = privileges
        .iter()
        .flat_map(|p| privilege_atoms(p, caps))
        .collect();
    for g in native_grants {
        out.extend(native_atoms(g)?);
    }
    Ok(out)
}

/// What the previous apply granted, as atoms. Entries that no longer map
/// (they were valid when granted) are skipped rather than failing forever.
pub fn previous_atoms(previous: &Granted<'_>, caps: Caps) -> BTreeSet<Atom> {
    let mut out: BTreeSet<Atom> = previous
        .privileges
        .iter()
        .flat_map(|p| privilege_atoms(p, caps))
        .collect();
    for g in previous.native_grants {
        if let Ok(atoms) = native_atoms(g) {
            out.extend(atoms);
        }
    }
    out
}

fn render(object: &Object, keywords: &[&str], grant: bool, user: &str, admin: &str) -> String {
    let list = keywords.join(", ");
    let on_to = |on: String| {
        if grant {
            format!("GRANT {list} ON {on} TO {user}")
        } else {
            format!("REVOKE {list} ON {on} FROM {user}")
        }
    };
    let default = |schema: &str, kind: &str| {
        let q = pg_ident(schema).expect("checked before rendering");
        if grant {
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA {q} GRANT {list} ON {kind} TO {user}"
            )
        } else {
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA {q} REVOKE {list} ON {kind} FROM {user}"
            )
        }
    };
    let q = |s: &str| pg_ident(s).expect("checked before rendering");
    match object {
        Object::Database => unreachable!("rendered with the database name"),
        Object::Schema(s) => on_to(format!("SCHEMA {}", q(s))),
        Object::AllTables(s) => on_to(format!("ALL TABLES IN SCHEMA {}", q(s))),
        Object::AllSequences(s) => on_to(format!("ALL SEQUENCES IN SCHEMA {}", q(s))),
        Object::AllFunctions(s) => on_to(format!("ALL FUNCTIONS IN SCHEMA {}", q(s))),
        Object::DefaultTables(s) => default(s, "TABLES"),
        Object::DefaultSequences(s) => default(s, "SEQUENCES"),
        Object::Table { schema, table } => on_to(format!("TABLE {}.{}", q(schema), q(table))),
    }
}

fn statements<'a>(
    atoms: impl Iterator<Item = &'a Atom>,
    grant: bool,
    user: &str,
    admin: &str,
) -> Result<BTreeMap<String, Vec<String>>, UserError> {
    let mut grouped: BTreeMap<(&str, &Object), Vec<&str>> = BTreeMap::new();
    for a in atoms {
        grouped
            .entry((&a.database, &a.object))
            .or_default()
            .push(a.privilege);
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((database, object), mut keywords) in grouped {
        // Quote everything once up front so rendering cannot fail.
        pg_ident(database)?;
        match object {
            Object::Schema(s)
            | Object::AllTables(s)
            | Object::AllSequences(s)
            | Object::AllFunctions(s)
            | Object::DefaultTables(s)
            | Object::DefaultSequences(s) => {
                pg_ident(s)?;
            }
            Object::Table { schema, table } => {
                pg_ident(schema)?;
                pg_ident(table)?;
            }
            Object::Database => {}
        }
        keywords.sort_by_key(|k| rank(k));
        keywords.dedup();
        let sql = match object {
            Object::Database => {
                let list = keywords.join(", ");
                let d = pg_ident(database)?;
                if grant {
                    format!("GRANT {list} ON DATABASE {d} TO {user}")
                } else {
                    format!("REVOKE {list} ON DATABASE {d} FROM {user}")
                }
            }
            other => render(other, &keywords, grant, user, admin),
        };
        out.entry(database.to_owned()).or_default().push(sql);
    }
    Ok(out)
}

/// Per database: REVOKE what `previous` had and `desired` lacks, then GRANT
/// all of `desired`.
pub fn plan(
    username: &str,
    admin: &str,
    desired: &BTreeSet<Atom>,
    previous: &BTreeSet<Atom>,
) -> Result<BTreeMap<String, DatabasePlan>, UserError> {
    let user = pg_ident(username)?;
    let admin = pg_ident(admin)?;
    let mut out: BTreeMap<String, DatabasePlan> = BTreeMap::new();
    for (db, revoke) in statements(previous.difference(desired), false, &user, &admin)? {
        out.entry(db).or_default().revoke = revoke;
    }
    for (db, grant) in statements(desired.iter(), true, &user, &admin)? {
        out.entry(db).or_default().grant = grant;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677), as PostgreSQL stores them.

/// Iterations PostgreSQL uses by default (scram_iterations).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The password bytes PostgreSQL hashes: SASLprep'd when that succeeds,
/// else the raw bytes (as the server and libpq do).
fn prepared(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&prepared(password), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(msg);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

/// A verifier with a fresh random 16-byte salt.
pub fn new_scram_verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    scram_verifier(password, &salt, SCRAM_ITERATIONS)
}

/// Whether a stored verifier is one for `password` (recomputed with its
/// salt and iteration count), so an unchanged password is not rewritten.
pub fn verifier_matches(stored: &str, password: &str) -> bool {
    let parse = || {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, _) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        if iterations == 0 || iterations > 1_000_000 {
            return None;
        }
        Some((iterations, B64.decode(salt).ok()?))
    };
    match parse() {
        Some((iterations, salt)) => scram_verifier(password, &salt, iterations) == stored,
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Talking to the server.

/// A statement's error as a UserError: the server's message (with detail)
/// for a server error, Unreachable for a broken connection; secrets cut out.
pub(crate) fn db_error(e: &tokio_postgres::Error, secrets: &[&str]) -> UserError {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                msg.push_str(": ");
                msg.push_str(detail);
            }
            UserError::Refused(redact(&msg, secrets))
        }
        None => UserError::Unreachable(redact(&e.to_string(), secrets)),
    }
}

pub(crate) async fn connect(target: &Target, dbname: &str) -> Result<Client, UserError> {
    let secrets = [target.admin_password.expose()];
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.admin_user)
        .password(target.admin_password.expose())
        .dbname(dbname)
        .application_name("database-operator")
        .connect_timeout(CONNECT_TIMEOUT);
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT * 2, config.connect(NoTls));
    let (client, connection) = match connecting.await {
        Err(_) => {
            return Err(UserError::Unreachable(format!(
                "connecting to {}:{} timed out",
                target.host, target.port
            )));
        }
        Ok(Err(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            return Err(UserError::Refused(format!(
                "database {dbname:?} does not exist"
            )));
        }
        Ok(Err(e)) => {
            let why = match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            };
            return Err(UserError::Unreachable(redact(
                &format!(
                    "connecting to {}:{} database {dbname:?} as {:?}: {why}",
                    target.host, target.port, target.admin_user
                ),
                &secrets,
            )));
        }
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgresql connection ended");
        }
    });
    // Never wait forever behind another session's locks.
    client
        .batch_execute("SET lock_timeout = '10s'; SET statement_timeout = '60s'")
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    Ok(client)
}

async fn server_caps(client: &Client, secrets: &[&str]) -> Result<Caps, UserError> {
    let row = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(|e| db_error(&e, secrets))?;
    let version: i64 = row.get::<_, String>(0).trim().parse().unwrap_or(0);
    Ok(Caps {
        maintain: version >= 170_000,
    })
}

/// What the server knows of a role.
struct ExistingRole {
    superuser: bool,
    can_login: bool,
    connection_limit: i32,
    /// None when unreadable (admin not superuser) or not set.
    verifier: Option<String>,
}

async fn existing_role(
    client: &Client,
    username: &str,
    secrets: &[&str],
) -> Result<Option<ExistingRole>, UserError> {
    // pg_authid holds the verifier; only superusers may read it.
    let row = match client
        .query_opt(
            "SELECT rolsuper, rolcanlogin, rolconnlimit, rolpassword FROM pg_authid WHERE rolname = $1",
            &[&username],
        )
        .await
    {
        Ok(row) => row,
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => client
            .query_opt(
                "SELECT rolsuper, rolcanlogin, rolconnlimit, NULL::text FROM pg_roles WHERE rolname = $1",
                &[&username],
            )
            .await
            .map_err(|e| db_error(&e, secrets))?,
        Err(e) => return Err(db_error(&e, secrets)),
    };
    Ok(row.map(|r| ExistingRole {
        superuser: r.get(0),
        can_login: r.get(1),
        connection_limit: r.get(2),
        verifier: r.get(3),
    }))
}

/// CREATE ROLE or ALTER ROLE (only what differs), with a verifier.
pub fn role_statement(
    username: &str,
    verifier: Option<&str>,
    connection_limit: Option<i32>,
    create: bool,
) -> Result<String, UserError> {
    let user = pg_ident(username)?;
    let limit = connection_limit.unwrap_or(-1);
    let password = match verifier {
        Some(v) => format!(" PASSWORD {}", pg_literal(v)?),
        None => String::new(),
    };
    Ok(if create {
        format!(
            "CREATE ROLE {user} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{password} CONNECTION LIMIT {limit}"
        )
    } else {
        format!("ALTER ROLE {user} LOGIN{password} CONNECTION LIMIT {limit}")
    })
}

/// Runs a statement that carries a password verifier: on a syntax error the
/// server's text (which would quote the statement) is withheld entirely.
async fn execute_secret(client: &Client, sql: &str, secrets: &[&str]) -> Result<(), UserError> {
    client.batch_execute(sql).await.map_err(|e| {
        if e.code() == Some(&SqlState::SYNTAX_ERROR) {
            UserError::Refused(
                "syntax error in the statement that sets the password (details withheld)".into(),
            )
        } else {
            db_error(&e, secrets)
        }
    })
}

pub(crate) async fn ensure_role(
    client: &Client,
    user: &UserSpec<'_>,
    secrets: &[&str],
) -> Result<(), UserError> {
    let password = user.password.expose();
    match existing_role(client, user.username, secrets).await? {
        Some(role) if role.superuser => Err(UserError::Refused(format!(
            "role {:?} exists and is a superuser; refusing to manage it",
            user.username
        ))),
        Some(role) => {
            let same_password = role
                .verifier
                .as_deref()
                .is_some_and(|v| verifier_matches(v, password));
            let limit = user.connection_limit.unwrap_or(-1);
            if same_password && role.can_login && role.connection_limit == limit {
                return Ok(());
            }
            let verifier = (!same_password).then(|| new_scram_verifier(password));
            let sql = role_statement(
                user.username,
                verifier.as_deref(),
                user.connection_limit,
                false,
            )?;
            let mut secrets = secrets.to_vec();
            secrets.extend(verifier.as_deref());
            execute_secret(client, &sql, &secrets).await
        }
        None => {
            let verifier = new_scram_verifier(password);
            let sql = role_statement(user.username, Some(&verifier), user.connection_limit, true)?;
            let mut all = secrets.to_vec();
            all.push(&verifier);
            match client.batch_execute(&sql).await {
                Ok(()) => Ok(()),
                // Created concurrently: set it instead.
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                    let sql = role_statement(
                        user.username,
                        Some(&verifier),
                        user.connection_limit,
                        false,
                    )?;
                    execute_secret(client, &sql, &all).await
                }
                Err(e) if e.code() == Some(&SqlState::SYNTAX_ERROR) => Err(UserError::Refused(
                    "syntax error in the statement that sets the password (details withheld)"
                        .into(),
                )),
                Err(e) => Err(db_error(&e, &all)),
            }
        }
    }
}

/// Revokes (each under a savepoint: an object that no longer exists has
/// nothing left to revoke) then grants, in one transaction.
async fn run_plan(client: &Client, plan: &DatabasePlan, secrets: &[&str]) -> Result<(), UserError> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| db_error(&e, secrets))?;
    let result = async {
        for sql in &plan.revoke {
            tracing::debug!(statement = %sql, "postgresql");
            client
                .batch_execute("SAVEPOINT dbop_revoke")
                .await
                .map_err(|e| db_error(&e, secrets))?;
            match client.batch_execute(sql).await {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.code(),
                        Some(c) if *c == SqlState::INVALID_SCHEMA_NAME
                            || *c == SqlState::UNDEFINED_TABLE
                            || *c == SqlState::UNDEFINED_OBJECT
                    ) =>
                {
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT dbop_revoke")
                        .await
                        .map_err(|e| db_error(&e, secrets))?;
                }
                Err(e) => return Err(db_error(&e, secrets)),
            }
            client
                .batch_execute("RELEASE SAVEPOINT dbop_revoke")
                .await
                .map_err(|e| db_error(&e, secrets))?;
        }
        for sql in &plan.grant {
            tracing::debug!(statement = %sql, "postgresql");
            client
                .batch_execute(sql)
                .await
                .map_err(|e| db_error(&e, secrets))?;
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| db_error(&e, secrets))
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// Statements that make `username` a member of pg_monitor (PostgreSQL 10+):
/// read access to every statistics view and setting the exporter reads, no
/// access to table data.
pub fn monitoring_grant(username: &str) -> Result<String, UserError> {
    Ok(format!("GRANT pg_monitor TO {}", pg_ident(username)?))
}

impl Logins for Postgresql {
    const SCHEME: &'static str = "postgresql";

    fn check(&self, user: &UserSpec<'_>) -> Result<(), UserError> {
        pg_ident(user.username)?;
        let atoms = desired_atoms(user.privileges, user.native_grants, Caps::default())?;
        for a in &atoms {
            pg_ident(&a.database)?;
            if RESERVED_DATABASES.contains(&a.database.as_str()) {
                return Err(UserError::Invalid(format!(
                    "database {:?} is a template: objects made there are copied into every new database",
                    a.database
                )));
            }
        }
        // Quotes every name once, so nothing fails half-way through apply.
        plan(user.username, "admin", &atoms, &BTreeSet::new())?;
        Ok(())
    }

    async fn upsert(&self, access: &Access<'_>, change: &Change<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let Change { user, previous } = *change;
        pg_ident(&target.admin_user)?;
        let admin = connect(target, &target.default_database).await?;
        let caps = server_caps(&admin, secrets).await?;
        let desired = desired_atoms(user.privileges, user.native_grants, caps)?;
        let previous = previous_atoms(previous, caps);
        let plan = plan(user.username, &target.admin_user, &desired, &previous)?;

        // Every database a declared privilege names must exist; ones only
        // the previous apply named may be gone (nothing left to revoke).
        let names: Vec<&str> = plan.keys().map(String::as_str).collect();
        let existing: BTreeSet<String> = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname = ANY($1)",
                &[&names],
            )
            .await
            .map_err(|e| db_error(&e, secrets))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for db in desired.iter().map(|a| &a.database) {
            if !existing.contains(db) {
                return Err(UserError::Refused(format!(
                    "database {db:?} does not exist (the operator does not create databases for users)"
                )));
            }
        }

        ensure_role(&admin, user, secrets).await?;

        for (db, db_plan) in &plan {
            if !existing.contains(db) {
                continue;
            }
            if *db == target.default_database {
                run_plan(&admin, db_plan, secrets).await?;
            } else {
                let client = connect(target, db).await?;
                run_plan(&client, db_plan, secrets).await?;
            }
        }
        Ok(())
    }

    async fn remove(&self, access: &Access<'_>, username: &str) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let user = pg_ident(username)?;
        let admin_ident = pg_ident(&target.admin_user)?;
        let admin = connect(target, &target.default_database).await?;
        let Some(row) = admin
            .query_opt(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
                &[&username],
            )
            .await
            .map_err(|e| db_error(&e, secrets))?
        else {
            return Ok(());
        };
        if row.get::<_, bool>(0) {
            return Err(UserError::Refused(format!(
                "role {username:?} is a superuser; refusing to drop it"
            )));
        }
        // Its sessions end with it.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[&username],
            )
            .await
            .map_err(|e| db_error(&e, secrets))?;
        // Databases holding objects it owns or privileges it has (dbid 0
        // is shared objects, handled from any database).
        let databases: BTreeSet<String> = admin
            .query(
                "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE s.refclassid = 'pg_authid'::regclass \
                   AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1) \
                   AND d.datallowconn",
                &[&username],
            )
            .await
            .map_err(|e| db_error(&e, secrets))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let cleanup = format!("REASSIGN OWNED BY {user} TO {admin_ident}; DROP OWNED BY {user}");
        admin
            .batch_execute(&cleanup)
            .await
            .map_err(|e| db_error(&e, secrets))?;
        for db in databases.iter().filter(|d| **d != target.default_database) {
            let client = match connect(target, db).await {
                Ok(c) => c,
                // Dropped meanwhile: nothing of the role left there.
                Err(UserError::Refused(_)) => continue,
                Err(e) => return Err(e),
            };
            client
                .batch_execute(&cleanup)
                .await
                .map_err(|e| db_error(&e, secrets))?;
        }
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {user}"))
            .await
            .map_err(|e| db_error(&e, secrets))
    }

    async fn monitoring(&self, access: &Access<'_>, user: &UserSpec<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let client = connect(target, &target.default_database).await?;
        ensure_role(&client, user, secrets).await?;
        client
            .batch_execute(&monitoring_grant(user.username)?)
            .await
            .map_err(|e| db_error(&e, secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Password;
    use crate::users::quote::tests::pg_lex;

    fn privilege(role: Role, database: &str, schema: Option<&str>) -> Privilege {
        Privilege {
            role,
            database: database.into(),
            schema: schema.map(Into::into),
        }
    }

    fn native(
        privileges: &[NativePrivilege],
        schema: Option<&str>,
        table: Option<&str>,
    ) -> NativeGrant {
        NativeGrant {
            privileges: privileges.to_vec(),
            database: "app".into(),
            schema: schema.map(Into::into),
            table: table.map(Into::into),
        }
    }

    fn plan_for(desired: &[Privilege], previous: &[Privilege]) -> BTreeMap<String, DatabasePlan> {
        let caps = Caps::default();
        let d = desired_atoms(desired, &[], caps).unwrap();
        let p = previous_atoms(
            &Granted {
                privileges: previous,
                native_grants: &[],
            },
            caps,
        );
        plan("app_user", "postgres", &d, &p).unwrap()
    }

    #[test]
    fn monitoring_grant_is_pg_monitor_membership() {
        assert_eq!(
            monitoring_grant("dbop_monitor").unwrap(),
            "GRANT pg_monitor TO \"dbop_monitor\""
        );
    }

    #[test]
    fn scram_verifier_matches_known_vector() {
        // The vector postgres-protocol tests against (same salt, "secret").
        let salt: Vec<u8> = (1..=16).collect();
        assert_eq!(
            scram_verifier("secret", &salt, 4096),
            "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA="
        );
    }

    #[test]
    fn verifiers_are_salted_and_checkable() {
        let a = new_scram_verifier("pw");
        let b = new_scram_verifier("pw");
        assert_ne!(a, b);
        assert!(verifier_matches(&a, "pw"));
        assert!(verifier_matches(&b, "pw"));
        assert!(!verifier_matches(&a, "pW"));
        assert!(!verifier_matches("md5abc", "pw"));
        assert!(!verifier_matches("SCRAM-SHA-256$0:AA==$x:y", "pw"));
        // No cleartext in a verifier. (A password outside the base64
        // alphabet: "pw" itself turns up in a random salt or hash about once
        // in forty runs, which made this assertion flaky.)
        let secret = "pw: not base64!";
        assert!(!new_scram_verifier(secret).contains(secret));
        // SASLprep: a non-ASCII space maps to a space, as the server does.
        let salt = [7u8; 16];
        assert_eq!(
            scram_verifier("a\u{00a0}b", &salt, 4096),
            scram_verifier("a b", &salt, 4096)
        );
    }

    #[test]
    fn read_only_plan() {
        let plan = plan_for(&[privilege(Role::ReadOnly, "app", None)], &[]);
        assert_eq!(
            plan["app"].grant,
            [
                r#"GRANT CONNECT ON DATABASE "app" TO "app_user""#,
                r#"GRANT USAGE ON SCHEMA "public" TO "app_user""#,
                r#"GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "app_user""#,
                r#"GRANT SELECT ON ALL SEQUENCES IN SCHEMA "public" TO "app_user""#,
                r#"ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" GRANT SELECT ON TABLES TO "app_user""#,
                r#"ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" GRANT SELECT ON SEQUENCES TO "app_user""#,
            ]
        );
        assert!(plan["app"].revoke.is_empty());
    }

    #[test]
    fn read_write_and_admin_plans() {
        let plan = plan_for(&[privilege(Role::ReadWrite, "app", Some("sales"))], &[]);
        assert!(plan["app"].grant.contains(
            &r#"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "sales" TO "app_user""#
                .to_string()
        ));
        assert!(
            plan["app"].grant.contains(
                &r#"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "sales" TO "app_user""#
                    .to_string()
            )
        );
        let plan = plan_for(&[privilege(Role::Admin, "app", None)], &[]);
        assert_eq!(
            plan["app"].grant[0],
            r#"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "app" TO "app_user""#
        );
        assert!(
            plan["app"]
                .grant
                .contains(&r#"GRANT CREATE, USAGE ON SCHEMA "public" TO "app_user""#.to_string())
        );
        assert!(plan["app"].grant.contains(
            &r#"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "public" TO "app_user""#.to_string()
        ));
        let with_maintain = desired_atoms(
            &[privilege(Role::Admin, "app", None)],
            &[],
            Caps { maintain: true },
        )
        .unwrap();
        assert!(with_maintain.iter().any(|a| a.privilege == "MAINTAIN"));
    }

    #[test]
    fn downgrade_revokes_only_what_is_no_longer_needed() {
        let plan = plan_for(
            &[privilege(Role::ReadOnly, "app", None)],
            &[privilege(Role::ReadWrite, "app", None)],
        );
        assert_eq!(
            plan["app"].revoke,
            [
                r#"REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "public" FROM "app_user""#,
                r#"REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA "public" FROM "app_user""#,
                r#"ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" REVOKE INSERT, UPDATE, DELETE ON TABLES FROM "app_user""#,
                r#"ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" REVOKE USAGE, UPDATE ON SEQUENCES FROM "app_user""#,
            ]
        );
        // SELECT, CONNECT and USAGE on the schema stay.
        assert!(!plan["app"].revoke.iter().any(|s| s.contains("SELECT")));
    }

    #[test]
    fn overlapping_privileges_keep_what_one_still_needs() {
        // Two schemas of one database; dropping one keeps CONNECT.
        let plan = plan_for(
            &[privilege(Role::ReadOnly, "app", Some("a"))],
            &[
                privilege(Role::ReadOnly, "app", Some("a")),
                privilege(Role::ReadOnly, "app", Some("b")),
            ],
        );
        let revoke = &plan["app"].revoke;
        assert!(!revoke.iter().any(|s| s.contains("DATABASE")));
        assert!(revoke.iter().all(|s| s.contains(r#""b""#)));
        // A database no longer named is revoked entirely.
        let plan = plan_for(&[], &[privilege(Role::Admin, "old", None)]);
        assert!(plan["old"].grant.is_empty());
        assert_eq!(
            plan["old"].revoke[0],
            r#"REVOKE CONNECT, CREATE, TEMPORARY ON DATABASE "old" FROM "app_user""#
        );
        // Unchanged: nothing to revoke.
        let same = [privilege(Role::ReadWrite, "app", None)];
        assert!(plan_for(&same, &same)["app"].revoke.is_empty());
    }

    #[test]
    fn native_grants() {
        use NativePrivilege::*;
        // The statements a grant on database "app" comes to.
        let granted = |grant: &NativeGrant| {
            let atoms = native_atoms(grant).unwrap().into_iter().collect();
            let mut plan = plan("u", "postgres", &atoms, &BTreeSet::new()).unwrap();
            plan.remove("app").unwrap().grant
        };
        assert_eq!(
            granted(&native(&[Select, Insert], Some("s"), Some("t"))),
            [r#"GRANT SELECT, INSERT ON TABLE "s"."t" TO "u""#]
        );
        assert_eq!(
            granted(&native(&[Usage, Create, Select, Execute], Some("s"), None)),
            [
                r#"GRANT CREATE, USAGE ON SCHEMA "s" TO "u""#,
                r#"GRANT SELECT ON ALL TABLES IN SCHEMA "s" TO "u""#,
                r#"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "s" TO "u""#,
            ]
        );
        let atoms = native_atoms(&native(&[Create, Temporary], None, None)).unwrap();
        assert!(atoms.iter().all(|a| a.object == Object::Database));

        for bad in [
            native(&[Find], None, Some("t")),
            native(&[Execute], None, Some("t")),
            native(&[Usage], None, Some("t")),
            native(&[ShowView], Some("s"), None),
            native(&[LockTables], None, None),
            native(&[Select], None, None),
            native(&[CreateView], Some("s"), None),
            native(&[Index], None, Some("t")),
        ] {
            assert!(
                matches!(native_atoms(&bad), Err(UserError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn role_statements_carry_only_the_verifier() {
        let v = scram_verifier("s3cret'; DROP ROLE x; --", &[1; 16], 4096);
        let sql = role_statement("app", Some(&v), Some(5), true).unwrap();
        assert!(!sql.contains("s3cret"));
        assert!(sql.starts_with(r#"CREATE ROLE "app" LOGIN NOSUPERUSER"#));
        assert!(sql.ends_with("CONNECTION LIMIT 5"));
        let sql = role_statement("app", None, None, false).unwrap();
        assert_eq!(sql, r#"ALTER ROLE "app" LOGIN CONNECTION LIMIT -1"#);
        // The literal is one token.
        let sql = role_statement("app", Some(&v), None, false).unwrap();
        let lit = sql.split_once(" PASSWORD ").unwrap().1;
        let (value, rest) = pg_lex(lit).unwrap();
        assert_eq!(value, v);
        assert_eq!(rest, " CONNECTION LIMIT -1");
    }

    #[test]
    fn hostile_names_are_quoted_in_every_statement() {
        // Names that got past the API pattern: the plan still quotes them.
        let hostile = "x\"; DROP TABLE canary; --";
        let p = Privilege {
            role: Role::Admin,
            database: hostile.into(),
            schema: Some("s\"/*".into()),
        };
        let atoms = desired_atoms(std::slice::from_ref(&p), &[], Caps::default()).unwrap();
        let quoted = plan(hostile, "postgres", &atoms, &BTreeSet::new()).unwrap();
        for sql in &quoted[hostile].grant {
            assert!(sql.contains(r#""x""; DROP TABLE canary; --""#), "{sql}");
        }
        // ... and validate refuses them before anything is sent.
        let pw = Password::new("pw");
        let user = UserSpec {
            username: "app",
            password: &pw,
            connection_limit: None,
            privileges: std::slice::from_ref(&p),
            native_grants: &[],
        };
        assert!(matches!(
            Postgresql.validate(&user),
            Err(UserError::Invalid(_))
        ));
        let user = UserSpec {
            username: hostile,
            privileges: &[],
            ..user
        };
        assert!(matches!(
            Postgresql.validate(&user),
            Err(UserError::Invalid(_))
        ));
    }

    #[test]
    fn validate_accepts_a_normal_spec() {
        let pw = Password::new("pw");
        let privileges = [privilege(Role::ReadWrite, "app-db", Some("sales_1"))];
        let grants = [native(&[NativePrivilege::Select], Some("s"), Some("t"))];
        let user = UserSpec {
            username: "app",
            password: &pw,
            connection_limit: Some(10),
            privileges: &privileges,
            native_grants: &grants,
        };
        Postgresql.validate(&user).unwrap();
    }
}
