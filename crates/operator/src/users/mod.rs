//! User management inside the engines: create a login, set its password and
//! connection limit, grant what a DatabaseUser declares, revoke what it no
//! longer declares, drop it.
//!
//! One module per engine behind [`LoginAdmin`]; [`login_admin`] picks one.
//! Nothing a user writes reaches SQL unescaped: names are checked against
//! the API's patterns here ([`validate_common`]) *and* quoted by [`quote`],
//! which refuses NUL bytes, control characters and non-ASCII look-alikes.
//! Passwords never print: [`Password`] redacts itself, and every error text
//! that comes back from a driver has the password cut out ([`redact`]).
//!
//! Transport: connections are made without TLS for now (tokio-postgres
//! `NoTls`, mysql_async without TLS, MongoDB without TLS). PostgreSQL only
//! ever receives a SCRAM-SHA-256 verifier computed here, never the
//! cleartext; MySQL/MariaDB and MongoDB receive the cleartext password in
//! their statements/commands, so on an untrusted network those connections
//! need TLS.

pub mod mongodb;
pub mod mysql;
pub mod postgresql;
pub mod quote;

use database_operator_api::v1;
use std::fmt;
use std::time::Duration;

use database_operator_api::v1::user::{NativeGrant, Privilege};

/// A password that never prints: Debug/Display show "<redacted>".
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The cleartext, for the driver and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where and as whom to connect: the Database's primary, as its admin.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: Password,
    pub default_database: String,
}

impl Target {
    /// Refuses to manage the database's own admin login as a user: the
    /// operator's access (and the Database's Secret) depend on it.
    pub fn refuse_admin(&self, username: &str) -> Result<(), UserError> {
        if username == self.admin_user {
            return Err(UserError::Invalid(format!(
                "username {username:?} is the database's admin login"
            )));
        }
        Ok(())
    }
}

/// What the user should look like inside the engine.
#[derive(Clone, Debug)]
pub struct UserSpec<'a> {
    pub username: &'a str,
    pub password: &'a Password,
    pub connection_limit: Option<i32>,
    pub privileges: &'a [Privilege],
    pub native_grants: &'a [NativeGrant],
}

impl<'a> UserSpec<'a> {
    /// The login a DatabaseUser's spec declares, with `password`.
    pub fn of(user: &'a v1::user::DatabaseUserSpec, password: &'a Password) -> Self {
        UserSpec {
            username: &user.username,
            password,
            connection_limit: user.connection_limit,
            privileges: &user.privileges,
            native_grants: &user.native_grants,
        }
    }

    /// A login with no privileges of its own and at most `limit`
    /// connections: the operator's own logins (monitoring, replication),
    /// whose rights are granted separately.
    pub fn operator_login(username: &'a str, password: &'a Password, limit: i32) -> Self {
        UserSpec {
            username,
            password,
            connection_limit: Some(limit),
            privileges: &[],
            native_grants: &[],
        }
    }

    /// Every database a privilege or a native grant names, repeats included.
    pub fn databases(&self) -> impl Iterator<Item = &str> {
        let privileges = self.privileges.iter().map(|p| p.database.as_str());
        privileges.chain(self.native_grants.iter().map(|g| g.database.as_str()))
    }
}

/// What was granted by the previous successful apply (from status), so what
/// is no longer declared can be revoked.
#[derive(Clone, Debug, Default)]
pub struct Granted<'a> {
    pub privileges: &'a [Privilege],
    pub native_grants: &'a [NativeGrant],
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Cannot connect / authenticate as admin (retry with backoff).
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// The engine refused a statement (message from the engine, password redacted).
    #[error("the database refused: {0}")]
    Refused(String),
    /// The spec asks for something this engine cannot do (e.g. a native
    /// privilege keyword that is not this engine's, a schema on MySQL).
    #[error("{0}")]
    Invalid(String),
}

/// Manages logins inside one engine: the controllers' handle on
/// [`postgresql`], [`mysql`] and [`mongodb`], each of which holds its
/// engine's statements. [`login_admin`] picks one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginAdmin {
    Postgresql,
    Mysql,
    Mongodb,
}

/// Runs `$body` with `$engine` bound to the module of `$admin`'s engine:
/// the one place that lists the engines.
macro_rules! per_engine {
    ($admin:expr, $engine:ident => $body:expr) => {
        match $admin {
            LoginAdmin::Postgresql => {
                let $engine = postgresql::Postgresql;
                $body
            }
            LoginAdmin::Mysql => {
                let $engine = mysql::Mysql;
                $body
            }
            LoginAdmin::Mongodb => {
                let $engine = mongodb::Mongodb;
                $body
            }
        }
    };
}

impl LoginAdmin {
    /// Makes the engine match `user`: creates the login if missing (else
    /// sets its password and connection limit), grants what is declared and
    /// revokes what `previous` had and is no longer declared. Idempotent;
    /// touches no other user.
    pub async fn apply(
        self,
        target: &Target,
        user: &UserSpec<'_>,
        previous: &Granted<'_>,
    ) -> Result<(), UserError> {
        per_engine!(self, engine => engine.apply(target, user, previous).await)
    }

    /// Drops the login (and, for PostgreSQL, reassigns/drops what it owns so
    /// DROP ROLE succeeds). Missing user = success.
    pub async fn drop_user(self, target: &Target, username: &str) -> Result<(), UserError> {
        per_engine!(self, engine => engine.drop_user(target, username).await)
    }

    /// Checks engine-specific validity of the spec before anything is sent.
    pub fn validate(self, user: &UserSpec<'_>) -> Result<(), UserError> {
        per_engine!(self, engine => engine.validate(user))
    }

    /// Creates or updates the operator's own least-privilege login for the
    /// Prometheus exporter (see [`monitoring_privileges`]): idempotent, and
    /// the password is set only when it differs. `username` is one the
    /// operator reserves, so no DatabaseUser can collide with it.
    pub async fn ensure_monitoring_user(
        self,
        target: &Target,
        username: &str,
        password: &Password,
    ) -> Result<(), UserError> {
        per_engine!(self, engine => engine.ensure_monitoring_user(target, username, password).await)
    }

    /// The engine's standard connection URI, with user and password
    /// percent-encoded.
    pub fn connection_uri(
        self,
        username: &str,
        password: &Password,
        host: &str,
        port: u16,
        database: &str,
    ) -> String {
        let login = Login { username, password };
        per_engine!(self, engine => engine.connection_uri(&login, host, port, database))
    }
}

/// A login and its password, as a connection URI carries them.
pub(crate) struct Login<'a> {
    pub(crate) username: &'a str,
    pub(crate) password: &'a Password,
}

/// Where an engine connects as admin, and what no error it returns may
/// print.
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    pub(crate) target: &'a Target,
    pub(crate) secrets: &'a [&'a str],
}

/// A checked spec to apply, and what the previous apply granted.
#[derive(Clone, Copy)]
pub(crate) struct Change<'a> {
    pub(crate) user: &'a UserSpec<'a>,
    pub(crate) previous: &'a Granted<'a>,
}

/// What one engine module says to manage logins. The checks every engine
/// makes before it connects (the spec is valid, the admin login is not
/// touched, which secrets to cut out of errors) are the provided methods,
/// so an engine writes only its own checks and statements.
pub(crate) trait Logins {
    /// The URI scheme of the engine's connection strings.
    const SCHEME: &'static str;

    /// The engine's own checks of a spec that passed [`validate_common`].
    fn check(&self, user: &UserSpec<'_>) -> Result<(), UserError>;

    /// Makes the engine match a checked spec (see [`LoginAdmin::apply`]).
    async fn upsert(&self, access: &Access<'_>, change: &Change<'_>) -> Result<(), UserError>;

    /// Drops a checked login (see [`LoginAdmin::drop_user`]).
    async fn remove(&self, access: &Access<'_>, username: &str) -> Result<(), UserError>;

    /// Creates or updates the monitoring login `user` (no privileges of
    /// its own, the monitoring connection limit) with the engine's
    /// monitoring grants.
    async fn monitoring(&self, access: &Access<'_>, user: &UserSpec<'_>) -> Result<(), UserError>;

    /// `SCHEME://user:password@host:port/database`, percent-encoded.
    fn connection_uri(&self, login: &Login<'_>, host: &str, port: u16, database: &str) -> String {
        uri(Self::SCHEME, login, host, port, database)
    }

    /// See [`LoginAdmin::validate`].
    fn validate(&self, user: &UserSpec<'_>) -> Result<(), UserError> {
        validate_common(user)?;
        self.check(user)
    }

    /// See [`LoginAdmin::apply`].
    async fn apply(
        &self,
        target: &Target,
        user: &UserSpec<'_>,
        previous: &Granted<'_>,
    ) -> Result<(), UserError> {
        self.validate(user)?;
        target.refuse_admin(user.username)?;
        let secrets = [user.password.expose(), target.admin_password.expose()];
        let access = Access {
            target,
            secrets: &secrets,
        };
        self.upsert(&access, &Change { user, previous }).await
    }

    /// See [`LoginAdmin::drop_user`].
    async fn drop_user(&self, target: &Target, username: &str) -> Result<(), UserError> {
        validate_username(username)?;
        target.refuse_admin(username)?;
        let secrets = [target.admin_password.expose()];
        let access = Access {
            target,
            secrets: &secrets,
        };
        self.remove(&access, username).await
    }

    /// See [`LoginAdmin::ensure_monitoring_user`].
    async fn ensure_monitoring_user(
        &self,
        target: &Target,
        username: &str,
        password: &Password,
    ) -> Result<(), UserError> {
        target.refuse_admin(username)?;
        let secrets = [password.expose(), target.admin_password.expose()];
        let user = UserSpec::operator_login(
            username,
            password,
            crate::builders::monitoring::MONITORING_CONNECTION_LIMIT,
        );
        let access = Access {
            target,
            secrets: &secrets,
        };
        self.monitoring(&access, &user).await
    }
}

/// What the monitoring login may do, per engine, for the README and errors.
pub fn monitoring_privileges(engine: v1::Engine) -> &'static str {
    match engine {
        v1::Engine::Postgresql => "member of pg_monitor, at most 3 connections",
        v1::Engine::Mysql => {
            "PROCESS, REPLICATION CLIENT (and SLAVE MONITOR on MariaDB) on *.*, SELECT on performance_schema.*, MAX_USER_CONNECTIONS 3"
        }
        v1::Engine::Mongodb => "clusterMonitor on admin, read on local",
    }
}

/// The login admin for an engine.
pub fn login_admin(engine: v1::Engine) -> LoginAdmin {
    match engine {
        v1::Engine::Postgresql => LoginAdmin::Postgresql,
        v1::Engine::Mysql => LoginAdmin::Mysql,
        v1::Engine::Mongodb => LoginAdmin::Mongodb,
    }
}

/// How long connecting (and authenticating) as admin may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Login names the engines or the operator reserve (the API refuses them
/// too; checked again so a spec that bypassed admission cannot take over an
/// engine's own account).
pub const RESERVED_USERNAMES: &[&str] = &[
    "postgres",
    "root",
    "admin",
    "mysql",
    "mariadb",
    "sys",
    "system",
    "public",
    "replicator",
    "database_operator",
    "dbop_monitor",
    "dbop_backup",
    "mariadb_sys",
    "healthcheck",
];

/// Reserved login-name prefixes.
pub const RESERVED_PREFIXES: &[&str] = &["pg_", "mysql_", "dbop_"];

/// Longest password accepted (bytes).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// `^[a-z][a-z0-9_]{0,31}$`, the API's username pattern, refusing reserved names.
pub fn validate_username(username: &str) -> Result<(), UserError> {
    let mut chars = username.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && username.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !ok {
        return Err(UserError::Invalid(format!(
            "username {} must be a lowercase letter, then lowercase letters, digits and underscores, at most 32 characters",
            shown(username)
        )));
    }
    if RESERVED_USERNAMES.contains(&username)
        || RESERVED_PREFIXES.iter().any(|p| username.starts_with(p))
    {
        return Err(UserError::Invalid(format!(
            "username {username:?} is reserved for the engine or the operator"
        )));
    }
    Ok(())
}

/// `^[A-Za-z_][A-Za-z0-9_-]{0,62}$`, the API's pattern for database,
/// schema and table names ([`database_operator_api::v1::user::OBJECT_NAME_PATTERN`]).
pub fn validate_object_name(what: &str, name: &str) -> Result<(), UserError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some('A'..='Z' | 'a'..='z' | '_'))
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "{what} {} must be a letter or underscore, then letters, digits, underscores and hyphens, at most 63 characters",
            shown(name)
        )))
    }
}

/// Checks every engine shares: names match the API's patterns, the password
/// is usable, the connection limit is in range.
pub fn validate_common(user: &UserSpec<'_>) -> Result<(), UserError> {
    validate_username(user.username)?;
    let password = user.password.expose();
    if password.is_empty() {
        return Err(UserError::Invalid("the password is empty".into()));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "the password is longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if password.contains('\0') {
        return Err(UserError::Invalid(
            "the password contains a NUL byte".into(),
        ));
    }
    if let Some(limit) = user.connection_limit
        && !(1..=10_000).contains(&limit)
    {
        return Err(UserError::Invalid(format!(
            "connectionLimit {limit} is outside 1..=10000"
        )));
    }
    for p in user.privileges {
        validate_object_name("database", &p.database)?;
        if let Some(schema) = &p.schema {
            validate_object_name("schema", schema)?;
        }
    }
    for g in user.native_grants {
        validate_object_name("database", &g.database)?;
        if let Some(schema) = &g.schema {
            validate_object_name("schema", schema)?;
        }
        if let Some(table) = &g.table {
            validate_object_name("table", table)?;
        }
        if g.privileges.is_empty() {
            return Err(UserError::Invalid(format!(
                "native grant on {:?} lists no privileges",
                g.database
            )));
        }
    }
    Ok(())
}

/// A name as shown in an error: Debug-escaped (no raw control characters in
/// logs) and cut short.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", s.len())
    }
}

/// Cuts every occurrence of each secret out of a message (defense in depth:
/// driver and server error texts can echo statements).
pub fn redact(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "<redacted>");
        }
    }
    out
}

/// Characters left as they are in the user and password of a URI: RFC 3986
/// unreserved characters only.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `scheme://user:password@host:port/database`, percent-encoded.
pub(crate) fn uri(
    scheme: &str,
    login: &Login<'_>,
    host: &str,
    port: u16,
    database: &str,
) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, USERINFO).to_string();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!(
        "{scheme}://{}:{}@{host}:{port}/{}",
        enc(login.username),
        enc(login.password.expose()),
        enc(database)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use database_operator_api::v1::user::Role;

    #[test]
    fn password_never_prints() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "<redacted>");
        assert_eq!(format!("{p}"), "<redacted>");
        let target = Target {
            host: "h".into(),
            port: 1,
            admin_user: "a".into(),
            admin_password: p.clone(),
            default_database: "d".into(),
        };
        assert!(!format!("{target:?}").contains("hunter2"));
        let user = UserSpec {
            username: "u",
            password: &p,
            connection_limit: None,
            privileges: &[],
            native_grants: &[],
        };
        assert!(!format!("{user:?}").contains("hunter2"));
        assert_eq!(p.expose(), "hunter2");
    }

    #[test]
    fn redact_cuts_every_occurrence() {
        assert_eq!(
            redact("a s3cr3t b s3cr3t", &["s3cr3t", ""]),
            "a <redacted> b <redacted>"
        );
        assert_eq!(redact("nothing", &[""]), "nothing");
    }

    #[test]
    fn usernames() {
        for ok in ["app", "a", "app_1", "a234567890123456789012345678901"] {
            validate_username(ok).unwrap();
        }
        for bad in [
            "",
            "App",
            "1app",
            "_app",
            "app-x",
            "a\"b",
            "a'b",
            "a;b",
            "a b",
            "a\0b",
            "аpp", // Cyrillic а
            "app\u{200b}",
            "a23456789012345678901234567890123",
            "postgres",
            "root",
            "pg_x",
            "dbop_native_x",
            "mysql_x",
        ] {
            assert!(
                matches!(validate_username(bad), Err(UserError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn object_names() {
        for ok in ["app", "App_DB-1", "_x", &"a".repeat(63)] {
            validate_object_name("database", ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            "1x",
            "a.b",
            "a`b",
            "a\"b",
            "a b",
            "a\\b",
            "a\0b",
            "ｄb",
            &"a".repeat(64),
        ] {
            assert!(validate_object_name("database", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn common_validation() {
        let p = Password::new("pw");
        let privs = [Privilege {
            role: Role::ReadOnly,
            database: "app; DROP TABLE x".into(),
            schema: None,
        }];
        let user = UserSpec {
            username: "app",
            password: &p,
            connection_limit: Some(5),
            privileges: &privs,
            native_grants: &[],
        };
        assert!(matches!(
            validate_common(&user),
            Err(UserError::Invalid(m)) if m.contains("database")
        ));
        let empty = Password::new("");
        let user = UserSpec {
            username: "app",
            password: &empty,
            connection_limit: None,
            privileges: &[],
            native_grants: &[],
        };
        assert!(validate_common(&user).is_err());
        let nul = Password::new("a\0b");
        let user = UserSpec {
            password: &nul,
            ..user
        };
        assert!(validate_common(&user).is_err());
        let user = UserSpec {
            password: &p,
            connection_limit: Some(0),
            ..user
        };
        assert!(validate_common(&user).is_err());
    }

    #[test]
    fn uris_percent_encode() {
        let password = Password::new("p@ss:w/rd?#%&=+ é");
        let login = Login {
            username: "app",
            password: &password,
        };
        assert_eq!(
            uri("postgresql", &login, "db.ns.svc", 5432, "app"),
            "postgresql://app:p%40ss%3Aw%2Frd%3F%23%25%26%3D%2B%20%C3%A9@db.ns.svc:5432/app"
        );
        let b = Password::new("b");
        let login = Login {
            username: "a",
            password: &b,
        };
        assert_eq!(
            uri("mysql", &login, "::1", 3306, "d"),
            "mysql://a:b@[::1]:3306/d"
        );
    }

    #[test]
    fn every_engine_has_its_uri() {
        let cases = [
            (
                v1::Engine::Postgresql,
                "p w",
                "postgresql://u:p%20w@h:5432/db",
            ),
            (v1::Engine::Mysql, "p", "mysql://u:p@h:3306/db"),
            (
                v1::Engine::Mongodb,
                "p",
                "mongodb://u:p@h:27017/db?authSource=admin",
            ),
        ];
        for (engine, password, want) in cases {
            let got = login_admin(engine).connection_uri(
                "u",
                &Password::new(password),
                "h",
                engine.default_port(),
                "db",
            );
            assert_eq!(got, want, "{engine:?}");
        }
    }
}
