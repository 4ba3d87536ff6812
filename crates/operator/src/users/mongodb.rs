//! MongoDB users: a SCRAM-SHA-256 user in the `admin` database with
//! built-in roles per database, and native grants as one custom role per
//! user.
//!
//! - readOnly → `{role: "read", db: D}`, readWrite → `readWrite`, admin →
//!   `dbOwner`.
//! - Native grants become the custom role `dbop_native_<username>` in
//!   `admin` (`createRole`/`updateRole` with privileges
//!   `{resource: {db, collection}, actions}`; collection `""` = every
//!   collection of the database), granted to the user. `dbop_` is a prefix
//!   the API reserves, so no user can be named like it.
//! - Apply sends `updateUser` (falling back to `createUser` when the user is
//!   missing) with the password, the whole role list and
//!   `mechanisms: ["SCRAM-SHA-256"]`. `roles` replaces the user's roles
//!   wholesale, so whatever is no longer declared is revoked by that one
//!   command; `previous` only tells whether a custom role is left to drop.
//! - The server hashes the password (SCRAM-SHA-256 has no client-side
//!   digest in MongoDB), so the cleartext travels in the command; the
//!   connection has no TLS for now.
//! - MongoDB has no per-user connection limit: `connectionLimit` is refused.
//! - Databases are created by their first write, so a database that does
//!   not exist yet is not an error here (unlike the SQL engines).
//!
//! FerretDB 1.x (the test stand-in) can create, authenticate, update the
//! password of and drop such a user, but does not implement roles:
//! `createUser`/`updateUser` with a non-empty `roles` and
//! `createRole`/`updateRole` are refused there, so role enforcement is
//! proven only by the unit tests of the command documents below, not
//! against a server.

use std::collections::{BTreeMap, BTreeSet};

use database_operator_api::v1::user::{NativeGrant, NativePrivilege, Privilege, Role};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use mongodb::{Client, Database};

use super::{
    Access, CONNECT_TIMEOUT, Change, Login, Logins, Password, Target, UserError, UserSpec, redact,
    uri,
};

/// The MongoDB login admin.
pub struct Mongodb;

/// Databases no DatabaseUser may get roles on: roles there reach other
/// users (dbOwner on admin can grant itself anything) or the server.
pub const RESERVED_DATABASES: &[&str] = &["admin", "local", "config"];

/// The database users and roles live in.
pub const AUTH_DATABASE: &str = "admin";

/// Error codes.
const USER_NOT_FOUND: i32 = 11;
const ROLE_NOT_FOUND: i32 = 31;
const COMMAND_NOT_FOUND: i32 = 59;
const NOT_IMPLEMENTED: i32 = 238;
const USER_ALREADY_EXISTS: i32 = 51003;

/// The name of a user's custom role for its native grants.
pub fn native_role_name(username: &str) -> String {
    format!("dbop_native_{username}")
}

/// The built-in role a portable role maps to.
pub fn builtin_role(role: Role) -> &'static str {
    match role {
        Role::ReadOnly => "read",
        Role::ReadWrite => "readWrite",
        Role::Admin => "dbOwner",
    }
}

/// `[{role, db}]` for the portable privileges, without duplicates.
pub fn role_documents(privileges: &[Privilege]) -> Vec<Document> {
    let set: BTreeSet<(&str, &str)> = privileges
        .iter()
        .map(|p| (builtin_role(p.role), p.database.as_str()))
        .collect();
    set.into_iter()
        .map(|(role, db)| doc! { "role": role, "db": db })
        .collect()
}

fn action(p: NativePrivilege) -> Result<&'static str, UserError> {
    use NativePrivilege::*;
    match p {
        Find | MongoInsert | MongoUpdate | Remove | CreateCollection | CreateIndex => {
            Ok(p.keyword())
        }
        _ => Err(UserError::Invalid(format!(
            "{:?} is not a MongoDB action (use find, insert, update, remove, createCollection or createIndex)",
            p.keyword()
        ))),
    }
}

/// The custom role's privileges: `{resource: {db, collection}, actions}`,
/// one per (database, collection), actions sorted.
pub fn native_privileges(grants: &[NativeGrant]) -> Result<Vec<Document>, UserError> {
    let mut by_resource: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for g in grants {
        if g.schema.is_some() {
            return Err(UserError::Invalid(format!(
                "MongoDB has no schemas: drop `schema` from the native grant on {:?}",
                g.database
            )));
        }
        let actions = by_resource
            .entry((g.database.as_str(), g.table.as_deref().unwrap_or("")))
            .or_default();
        for &p in &g.privileges {
            actions.insert(action(p)?);
        }
    }
    Ok(by_resource
        .into_iter()
        .map(|((db, collection), actions)| {
            let actions: Vec<&str> = actions.into_iter().collect();
            doc! {
                "resource": { "db": db, "collection": collection },
                "actions": actions,
            }
        })
        .collect())
}

/// Every role the user should hold, the custom role last.
pub fn user_roles(username: &str, privileges: &[Privilege], native: bool) -> Vec<Document> {
    let mut roles = role_documents(privileges);
    if native {
        roles.push(doc! { "role": native_role_name(username), "db": AUTH_DATABASE });
    }
    roles
}

/// `createUser` (create) or `updateUser`, with the password, the whole role
/// list and SCRAM-SHA-256.
pub fn user_command(
    username: &str,
    password: &str,
    roles: Vec<Document>,
    create: bool,
) -> Document {
    let verb = if create { "createUser" } else { "updateUser" };
    doc! {
        verb: username,
        "pwd": password,
        "roles": roles,
        "mechanisms": ["SCRAM-SHA-256"],
    }
}

/// `createRole` (create) or `updateRole` for the custom role.
pub fn role_command(name: &str, privileges: Vec<Document>, create: bool) -> Document {
    if create {
        doc! { "createRole": name, "privileges": privileges, "roles": [] }
    } else {
        doc! { "updateRole": name, "privileges": privileges, "roles": [] }
    }
}

// ---------------------------------------------------------------------------
// Talking to the server.

fn mongo_error(e: &mongodb::error::Error, secrets: &[&str]) -> UserError {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => UserError::Refused(redact(
            &format!("{} ({} {})", c.message, c.code_name, c.code),
            secrets,
        )),
        ErrorKind::Authentication { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => UserError::Unreachable(redact(&e.to_string(), secrets)),
        _ => UserError::Refused(redact(&e.to_string(), secrets)),
    }
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The options of a client of the one server `target` (no discovery of a
/// replica set), as its admin when `authenticate`, within `timeout`.
pub(crate) fn client_options(
    target: &Target,
    authenticate: bool,
    timeout: std::time::Duration,
) -> ClientOptions {
    let credential = authenticate.then(|| {
        Credential::builder()
            .username(target.admin_user.clone())
            .password(target.admin_password.expose().to_owned())
            .source(AUTH_DATABASE.to_owned())
            .build()
    });
    ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: target.host.clone(),
            port: Some(target.port),
        }])
        .credential(credential)
        .direct_connection(true)
        .connect_timeout(timeout)
        .server_selection_timeout(timeout)
        .app_name("database-operator".to_owned())
        .build()
}

/// Fails at once, as Unreachable, when nothing accepts a connection at
/// `target`: a host name that does not resolve (a pod whose DNS record is
/// not published yet) or a port nobody listens on. The driver would keep
/// selecting a server there until its timeout ran out, holding one of the
/// reconciles that may run at once; one TCP connection finds out first.
pub(crate) async fn reachable(target: &Target) -> Result<(), UserError> {
    let address = (target.host.as_str(), target.port);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(UserError::Unreachable(format!(
            "{}:{}: {e}",
            target.host, target.port
        ))),
        Err(_) => Err(UserError::Unreachable(format!(
            "{}:{}: no connection within {}s",
            target.host,
            target.port,
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

async fn connect(target: &Target, secrets: &[&str]) -> Result<Client, UserError> {
    reachable(target).await?;
    let options = client_options(target, true, CONNECT_TIMEOUT);
    let client = Client::with_options(options).map_err(|e| mongo_error(&e, secrets))?;
    // The driver connects lazily: authenticate now, so failing here means
    // the admin cannot get in (Unreachable) rather than a refused command.
    match client
        .database(AUTH_DATABASE)
        .run_command(doc! { "ping": 1 })
        .await
    {
        Ok(_) => Ok(client),
        Err(e) => Err(UserError::Unreachable(redact(
            &format!(
                "connecting to {}:{} as {:?}: {e}",
                target.host, target.port, target.admin_user
            ),
            secrets,
        ))),
    }
}

async fn run(db: &Database, command: Document, secrets: &[&str]) -> Result<Document, UserError> {
    db.run_command(command)
        .await
        .map_err(|e| mongo_error(&e, secrets))
}

/// Drops the custom role; a missing role, or a server without roles
/// (FerretDB: command not implemented), has none to drop.
async fn drop_native_role(
    db: &Database,
    username: &str,
    secrets: &[&str],
) -> Result<(), UserError> {
    match db
        .run_command(doc! { "dropRole": native_role_name(username) })
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                command_code(&e),
                Some(ROLE_NOT_FOUND | COMMAND_NOT_FOUND | NOT_IMPLEMENTED)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(mongo_error(&e, secrets)),
    }
}

async fn role_exists(db: &Database, name: &str, secrets: &[&str]) -> Result<bool, UserError> {
    let reply = run(db, doc! { "rolesInfo": name }, secrets).await?;
    Ok(matches!(reply.get("roles"), Some(Bson::Array(roles)) if !roles.is_empty()))
}

/// Sets `username`'s password and roles, creating the user when it does
/// not exist yet (and updating it after all when another reconcile created
/// it meanwhile).
async fn upsert_user(
    admin: &Database,
    username: &str,
    password: &Password,
    roles: &[Document],
    secrets: &[&str],
) -> Result<(), UserError> {
    let command = |create| user_command(username, password.expose(), roles.to_vec(), create);
    match admin.run_command(command(false)).await {
        Ok(_) => Ok(()),
        Err(e) if command_code(&e) == Some(USER_NOT_FOUND) => {
            match admin.run_command(command(true)).await {
                Ok(_) => Ok(()),
                Err(e) if command_code(&e) == Some(USER_ALREADY_EXISTS) => {
                    run(admin, command(false), secrets).await.map(|_| ())
                }
                Err(e) => Err(mongo_error(&e, secrets)),
            }
        }
        Err(e) => Err(mongo_error(&e, secrets)),
    }
}

/// The roles of the monitoring login: `clusterMonitor` (serverStatus,
/// replSetGetStatus, top, …) and `read` on `local` (the oplog, for
/// replication lag). Nothing on application databases.
pub fn monitoring_roles() -> Vec<Document> {
    vec![
        doc! { "role": "clusterMonitor", "db": AUTH_DATABASE },
        doc! { "role": "read", "db": "local" },
    ]
}

impl Logins for Mongodb {
    const SCHEME: &'static str = "mongodb";

    fn check(&self, user: &UserSpec<'_>) -> Result<(), UserError> {
        if user.connection_limit.is_some() {
            return Err(UserError::Invalid(
                "MongoDB has no per-user connection limit: remove connectionLimit".into(),
            ));
        }
        for p in user.privileges {
            if p.schema.is_some() {
                return Err(UserError::Invalid(format!(
                    "MongoDB has no schemas: drop `schema` from the privilege on {:?}",
                    p.database
                )));
            }
        }
        for db in user.databases() {
            if RESERVED_DATABASES.contains(&db) {
                return Err(UserError::Invalid(format!(
                    "database {db:?} is reserved by MongoDB: roles on it reach other users or the server"
                )));
            }
        }
        native_privileges(user.native_grants)?;
        Ok(())
    }

    async fn upsert(&self, access: &Access<'_>, change: &Change<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let Change { user, previous } = *change;
        let native = native_privileges(user.native_grants)?;
        let has_native = !native.is_empty();
        let client = connect(target, secrets).await?;
        let admin = client.database(AUTH_DATABASE);
        let result = async {
            if has_native {
                let name = native_role_name(user.username);
                let create = !role_exists(&admin, &name, secrets).await?;
                run(&admin, role_command(&name, native, create), secrets).await?;
            }
            let roles = user_roles(user.username, user.privileges, has_native);
            upsert_user(&admin, user.username, user.password, &roles, secrets).await?;
            if !has_native && !previous.native_grants.is_empty() {
                drop_native_role(&admin, user.username, secrets).await?;
            }
            Ok(())
        }
        .await;
        client.shutdown().await;
        result
    }

    async fn remove(&self, access: &Access<'_>, username: &str) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let client = connect(target, secrets).await?;
        let admin = client.database(AUTH_DATABASE);
        let result = async {
            match admin.run_command(doc! { "dropUser": username }).await {
                Ok(_) => {}
                Err(e) if command_code(&e) == Some(USER_NOT_FOUND) => {}
                Err(e) => return Err(mongo_error(&e, secrets)),
            }
            drop_native_role(&admin, username, secrets).await
        }
        .await;
        client.shutdown().await;
        result
    }

    async fn monitoring(&self, access: &Access<'_>, user: &UserSpec<'_>) -> Result<(), UserError> {
        let Access { target, secrets } = *access;
        let client = connect(target, secrets).await?;
        let admin = client.database(AUTH_DATABASE);
        let result = upsert_user(
            &admin,
            user.username,
            user.password,
            &monitoring_roles(),
            secrets,
        )
        .await;
        client.shutdown().await;
        result
    }

    /// `authSource` names where the users live: the operator makes every
    /// login in `admin`, whatever database the URI opens.
    fn connection_uri(&self, login: &Login<'_>, host: &str, port: u16, database: &str) -> String {
        format!(
            "{}?authSource={AUTH_DATABASE}",
            uri(Self::SCHEME, login, host, port, database)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json(d: Document) -> serde_json::Value {
        Bson::Document(d).into_relaxed_extjson()
    }

    fn privilege(role: Role, database: &str) -> Privilege {
        Privilege {
            role,
            database: database.into(),
            schema: None,
        }
    }

    #[test]
    fn monitoring_roles_are_cluster_monitor_and_read_on_local() {
        let roles = monitoring_roles();
        assert_eq!(
            roles,
            vec![
                doc! { "role": "clusterMonitor", "db": "admin" },
                doc! { "role": "read", "db": "local" },
            ]
        );
        let create = user_command("dbop_monitor", "pw", roles, true);
        assert_eq!(create.get_str("createUser").unwrap(), "dbop_monitor");
        assert_eq!(create.get_array("mechanisms").unwrap().len(), 1);
    }

    #[test]
    fn create_user_command_document() {
        let roles = user_roles(
            "app",
            &[
                privilege(Role::ReadOnly, "reports"),
                privilege(Role::ReadWrite, "app"),
                privilege(Role::Admin, "ops"),
                privilege(Role::ReadOnly, "reports"),
            ],
            false,
        );
        assert_eq!(
            json(user_command("app", "pw", roles, true)),
            json!({
                "createUser": "app",
                "pwd": "pw",
                "roles": [
                    {"role": "dbOwner", "db": "ops"},
                    {"role": "read", "db": "reports"},
                    {"role": "readWrite", "db": "app"},
                ],
                "mechanisms": ["SCRAM-SHA-256"],
            })
        );
    }

    #[test]
    fn update_user_replaces_the_role_list() {
        // Revocation: readWrite on app was granted before; now only read is
        // declared, and the whole list is sent.
        let roles = user_roles("app", &[privilege(Role::ReadOnly, "app")], false);
        assert_eq!(
            json(user_command("app", "pw", roles, false)),
            json!({
                "updateUser": "app",
                "pwd": "pw",
                "roles": [{"role": "read", "db": "app"}],
                "mechanisms": ["SCRAM-SHA-256"],
            })
        );
        let none = user_roles("app", &[], false);
        assert_eq!(
            json(user_command("app", "pw", none, false))["roles"],
            json!([])
        );
    }

    #[test]
    fn native_grants_become_a_custom_role() {
        use NativePrivilege::*;
        let grants = [
            NativeGrant {
                privileges: vec![MongoInsert, Find, Find],
                database: "app".into(),
                schema: None,
                table: Some("orders".into()),
            },
            NativeGrant {
                privileges: vec![Find],
                database: "app".into(),
                schema: None,
                table: None,
            },
            NativeGrant {
                privileges: vec![Remove, MongoUpdate, CreateCollection, CreateIndex],
                database: "app".into(),
                schema: None,
                table: Some("orders".into()),
            },
        ];
        let privileges = native_privileges(&grants).unwrap();
        assert_eq!(
            json(role_command("dbop_native_app", privileges.clone(), true)),
            json!({
                "createRole": "dbop_native_app",
                "privileges": [
                    {"resource": {"db": "app", "collection": ""}, "actions": ["find"]},
                    {"resource": {"db": "app", "collection": "orders"},
                     "actions": ["createCollection", "createIndex", "find", "insert", "remove", "update"]},
                ],
                "roles": [],
            })
        );
        assert_eq!(
            json(role_command("dbop_native_app", privileges, false))["updateRole"],
            json!("dbop_native_app")
        );
        let roles = user_roles("app", &[privilege(Role::ReadOnly, "app")], true);
        assert_eq!(
            json(user_command("app", "pw", roles, false))["roles"],
            json!([
                {"role": "read", "db": "app"},
                {"role": "dbop_native_app", "db": "admin"},
            ])
        );
    }

    #[test]
    fn validation() {
        let pw = Password::new("pw");
        let base = UserSpec {
            username: "app",
            password: &pw,
            connection_limit: None,
            privileges: &[],
            native_grants: &[],
        };
        Mongodb.validate(&base).unwrap();
        let limited = UserSpec {
            connection_limit: Some(3),
            ..base.clone()
        };
        assert!(matches!(
            Mongodb.validate(&limited),
            Err(UserError::Invalid(_))
        ));
        for db in ["admin", "local", "config"] {
            let p = [privilege(Role::ReadOnly, db)];
            let u = UserSpec {
                privileges: &p,
                ..base.clone()
            };
            assert!(
                matches!(Mongodb.validate(&u), Err(UserError::Invalid(_))),
                "{db}"
            );
        }
        let sql = [NativeGrant {
            privileges: vec![NativePrivilege::Select],
            database: "app".into(),
            schema: None,
            table: None,
        }];
        let u = UserSpec {
            native_grants: &sql,
            ..base.clone()
        };
        assert!(
            matches!(Mongodb.validate(&u), Err(UserError::Invalid(m)) if m.contains("MongoDB action"))
        );
        let schema = [Privilege {
            role: Role::ReadOnly,
            database: "app".into(),
            schema: Some("s".into()),
        }];
        let u = UserSpec {
            privileges: &schema,
            ..base.clone()
        };
        assert!(Mongodb.validate(&u).is_err());
        let hostile = [privilege(Role::ReadOnly, "app.$cmd")];
        let u = UserSpec {
            privileges: &hostile,
            ..base
        };
        assert!(Mongodb.validate(&u).is_err());
    }

    #[test]
    fn uri() {
        assert_eq!(
            super::super::login_admin(database_operator_api::v1::Engine::Mongodb).connection_uri(
                "app",
                &Password::new("a@b/c"),
                "db",
                27017,
                "app"
            ),
            "mongodb://app:a%40b%2Fc@db:27017/app?authSource=admin"
        );
    }
}
