//! `DatabaseUser`: a login inside a Database's engine, with privileges and a
//! credentials Secret for applications.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::v1::condition::Condition;
use crate::v1::reference::{DatabaseRef, SecretKeyRef};

/// DatabaseUserSpec defines a login role inside a Database
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "DatabaseUser",
    plural = "databaseusers",
    singular = "databaseuser",
    shortname = "dbuser",
    category = "databases",
    namespaced,
    status = "DatabaseUserStatus",
    derive = "PartialEq",
    doc = "DatabaseUser is a login inside a Database's engine, with the privileges it declares",
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".spec.databaseRef.name"
    ),
    printcolumn(name = "Username", type_ = "string", json_path = ".spec.username"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters: it names the credentials Secret <database>-<name>-credentials")
)]
#[x_kube(
    validation = Rule::new("self.databaseRef == oldSelf.databaseRef").message("databaseRef is immutable").field_path(".databaseRef"),
    validation = Rule::new("self.username == oldSelf.username").message("username is immutable").field_path(".username"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserSpec {
    /// The Database this user lives in
    pub database_ref: DatabaseRef,

    /// Login name inside the engine: a lowercase letter, then lowercase
    /// letters, digits and underscores, at most 32 characters. Names the
    /// engines or the operator reserve are refused.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,31}$"))]
    #[x_kube(
        validation = Rule::new("!(self in ['postgres', 'root', 'admin', 'mysql', 'mariadb', 'sys', 'system', 'public', 'replicator', 'database_operator', 'dbop_monitor', 'dbop_backup', 'mariadb_sys', 'healthcheck'])")
            .message("is reserved for the engine or the operator"),
        validation = Rule::new("!self.startsWith('pg_') && !self.startsWith('mysql_') && !self.startsWith('dbop_')")
            .message("must not start with pg_, mysql_ or dbop_ (reserved prefixes)"),
    )]
    pub username: String,

    /// Portable privileges, each a role scoped to one database
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub privileges: Vec<Privilege>,

    /// Engine-native grants for power users; each keyword must be one the
    /// engine knows for that kind of object (checked before anything is sent)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub native_grants: Vec<NativeGrant>,

    /// Secret key holding the password; generated when absent. Changing the
    /// Secret's value rotates the password inside the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Maximum concurrent connections for this user
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub connection_limit: Option<i32>,

    /// What deleting the DatabaseUser does to the login: Drop (default) or Keep
    #[serde(default)]
    pub deletion_policy: UserDeletionPolicy,

    /// Other namespaces that also get a copy of the credentials Secret; each
    /// must be listed in the Database's spec.userSecretNamespaces
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub secret_namespaces: Vec<String>,
}

/// A database (and optionally schema) name, as the engines allow it.
pub const OBJECT_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$";

/// A role on one database (and, for PostgreSQL, optionally one schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Privilege {
    /// readOnly, readWrite or admin
    pub role: Role,
    /// Database (MongoDB: database; MySQL: schema) the role applies to
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"))]
    pub database: String,
    /// PostgreSQL schema the role applies to; `public` when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"))]
    pub schema: Option<String>,
}

/// Engine-native privileges on one database, schema or table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NativeGrant {
    /// Privilege keywords, e.g. SELECT, INSERT, EXECUTE (SQL engines) or find, insert (MongoDB actions)
    #[schemars(length(min = 1, max = 16))]
    pub privileges: Vec<NativePrivilege>,
    /// Database the grant applies to
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"))]
    pub database: String,
    /// Schema (PostgreSQL) the grant applies to
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"))]
    pub schema: Option<String>,
    /// Table or collection the grant applies to; every one when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"))]
    pub table: Option<String>,
}

/// The allow-list of engine-native privilege keywords.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum NativePrivilege {
    #[serde(rename = "SELECT")]
    Select,
    #[serde(rename = "INSERT")]
    Insert,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "TRUNCATE")]
    Truncate,
    #[serde(rename = "REFERENCES")]
    References,
    #[serde(rename = "TRIGGER")]
    Trigger,
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "TEMPORARY")]
    Temporary,
    #[serde(rename = "EXECUTE")]
    Execute,
    #[serde(rename = "USAGE")]
    Usage,
    #[serde(rename = "INDEX")]
    Index,
    #[serde(rename = "ALTER")]
    Alter,
    #[serde(rename = "DROP")]
    Drop,
    #[serde(rename = "CREATE VIEW")]
    CreateView,
    #[serde(rename = "SHOW VIEW")]
    ShowView,
    #[serde(rename = "LOCK TABLES")]
    LockTables,
    #[serde(rename = "find")]
    Find,
    #[serde(rename = "insert")]
    MongoInsert,
    #[serde(rename = "update")]
    MongoUpdate,
    #[serde(rename = "remove")]
    Remove,
    #[serde(rename = "createCollection")]
    CreateCollection,
    #[serde(rename = "createIndex")]
    CreateIndex,
}

impl NativePrivilege {
    /// The keyword as the user wrote it (and as the engine spells it).
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Truncate => "TRUNCATE",
            Self::References => "REFERENCES",
            Self::Trigger => "TRIGGER",
            Self::Create => "CREATE",
            Self::Temporary => "TEMPORARY",
            Self::Execute => "EXECUTE",
            Self::Usage => "USAGE",
            Self::Index => "INDEX",
            Self::Alter => "ALTER",
            Self::Drop => "DROP",
            Self::CreateView => "CREATE VIEW",
            Self::ShowView => "SHOW VIEW",
            Self::LockTables => "LOCK TABLES",
            Self::Find => "find",
            Self::MongoInsert => "insert",
            Self::MongoUpdate => "update",
            Self::Remove => "remove",
            Self::CreateCollection => "createCollection",
            Self::CreateIndex => "createIndex",
        }
    }
}

/// Portable roles, mapped to each engine's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Read data.
    ReadOnly,
    /// Read and write data.
    ReadWrite,
    /// Read, write and change the schema.
    Admin,
}

/// What deleting a DatabaseUser does to the login.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum UserDeletionPolicy {
    /// Drop the login from the engine.
    #[default]
    Drop,
    /// Leave the login in place.
    Keep,
}

/// What the operator observed of a DatabaseUser: whether the login exists
/// inside the engine as the spec says, what was granted, and where its
/// credentials Secrets are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserStatus {
    /// Pending, Ready or Failed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<UserPhase>,
    /// Latest observations
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Secret with the user's credentials and connection URI
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The privileges last granted inside the engine, so ones removed from
    /// the spec can be revoked
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_privileges: Vec<Privilege>,
    /// The native grants last granted inside the engine
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_native_grants: Vec<NativeGrant>,
    /// resourceVersion of the Secret whose password was last set in the
    /// engine: a different version means the password was rotated
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
    /// Namespaces that hold a copy of the credentials Secret
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_namespaces: Vec<String>,
    /// Most recent generation observed by the controller
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Phase of a DatabaseUser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum UserPhase {
    /// Waiting for the Database or for the first reconcile.
    Pending,
    /// The login exists with exactly the declared privileges.
    Ready,
    /// The login could not be made to match; a condition says why.
    Failed,
}
