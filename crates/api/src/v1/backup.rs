//! `DatabaseBackup`: one backup of a Database, on demand or one run of its schedule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::v1::condition::Condition;
use crate::v1::reference::DatabaseRef;
use crate::v1::restore::Verification;

/// DatabaseBackupSpec asks for one backup of a Database
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "DatabaseBackup",
    plural = "databasebackups",
    singular = "databasebackup",
    shortname = "dbbackup",
    category = "databases",
    namespaced,
    status = "DatabaseBackupStatus",
    derive = "PartialEq",
    doc = "DatabaseBackup is one backup of a Database to object storage",
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".spec.databaseRef.name"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.sizeBytes"),
    printcolumn(
        name = "Completed",
        type_ = "date",
        json_path = ".status.completionTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters: it names the backup Job, whose pods carry it as a label")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a DatabaseBackup's spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBackupSpec {
    /// The Database to back up; its spec.backup.destination says where to
    pub database_ref: DatabaseRef,
}

/// DatabaseBackupStatus is where a backup is and what it holds
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBackupStatus {
    /// Pending, Running, Completed or Failed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// When the backup Job started
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup finished
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Object location, s3://bucket/key
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size of the stored object in bytes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256 of the stored object
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Latest observations, with the reason when the backup failed
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Most recent generation observed by the controller
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The latest restore drill of this backup (spec.backup.verify of its Database)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// Phase of a DatabaseBackup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BackupPhase {
    /// Waiting for the Job to start.
    Pending,
    /// The Job is streaming the dump.
    Running,
    /// The dump is stored and its checksum recorded.
    Completed,
    /// The backup failed; a condition says why.
    Failed,
}
