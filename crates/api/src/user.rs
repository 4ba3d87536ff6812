//! `DatabaseUser`: a login inside a Database's engine, with privileges and a
//! credentials Secret for applications.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::reference::{DatabaseRef, SecretKeyRef};

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
    )
)]
#[x_kube(
    validation = Rule::new("self.databaseRef == oldSelf.databaseRef").message("databaseRef is immutable").field_path(".databaseRef"),
    validation = Rule::new("self.username == oldSelf.username").message("username is immutable").field_path(".username"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserSpec {
    /// The Database this user lives in
    pub database_ref: DatabaseRef,

    /// Login name inside the engine: a letter, then letters, digits and underscores
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,30}$"))]
    pub username: String,

    /// Portable privileges, each a role scoped to one database
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub privileges: Vec<Privilege>,

    /// Secret key holding the password; generated when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Maximum concurrent connections for this user
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub connection_limit: Option<i32>,

    /// What deleting the DatabaseUser does to the login: Drop (default) or Keep
    #[serde(default)]
    pub deletion_policy: UserDeletionPolicy,
}

/// A role on one database (and, for PostgreSQL, optionally one schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Privilege {
    /// readOnly, readWrite or admin
    pub role: Role,
    /// Database (MongoDB: database; MySQL: schema) the role applies to
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"))]
    pub database: String,
    /// PostgreSQL schema the role applies to; every schema when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"))]
    pub schema: Option<String>,
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

/// DatabaseUserStatus is the observed state of a DatabaseUser
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
