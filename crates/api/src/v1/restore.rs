//! Restoring a new Database from a backup, and the restore drills that prove
//! backups can be restored.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::v1::database::S3CredentialsSecret;

/// Where a new Database's data comes from. Exactly one of `backupRef` and `s3`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.backupRef) != has(self.s3)")
        .message("set exactly one of backupRef (a DatabaseBackup) and s3 (a backup's location)"),
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// A completed DatabaseBackup in this namespace
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<BackupRef>,

    /// A backup in a bucket, for example one taken in another cluster
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<RestoreS3Source>,

    /// Restore even when the new server already holds user data; the dump
    /// drops and recreates what it contains. Off by default: a restore never
    /// runs over data unless asked.
    #[serde(default)]
    pub force: bool,
}

/// Names a DatabaseBackup in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct BackupRef {
    /// Name of the DatabaseBackup
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A backup in an S3 bucket, as a DatabaseBackup's `status.location` names it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreS3Source {
    /// The backup: `s3://<bucket>/<prefix>/<backup>` (the folder holding its
    /// manifest.json), or the dump object inside it
    #[schemars(
        regex(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*'()/-]+$"),
        length(max = 1024)
    )]
    pub location: String,

    /// Region of the bucket
    #[serde(default = "default_region")]
    pub region: String,

    /// Endpoint URL of an S3-compatible server; AWS when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,

    /// Secret holding the access key; the pod's own identity is used when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<S3CredentialsSecret>,

    /// Address buckets as endpoint/bucket instead of bucket.endpoint
    #[serde(default)]
    pub force_path_style: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// A bucket, the prefix holding backups, and one backup's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLocation {
    pub bucket: String,
    /// The folder holding the backup's folder (may be empty).
    pub prefix: String,
    /// The backup's own folder name, as `agent restore --key-name` takes it.
    pub key: String,
}

/// Files the agent writes inside a backup's folder.
const BACKUP_FILES: [&str; 3] = ["manifest.json", "dump.sql.zst", "dump.archive.zst"];

impl BackupLocation {
    /// Parses `s3://bucket/prefix/key` or `s3://bucket/prefix/key/<file>`.
    pub fn parse(location: &str) -> Option<BackupLocation> {
        let rest = location.strip_prefix("s3://")?;
        let (bucket, path) = rest.split_once('/')?;
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.last().is_some_and(|last| BACKUP_FILES.contains(last)) {
            parts.pop();
        }
        let key = parts.pop()?;
        if bucket.is_empty() {
            return None;
        }
        Some(BackupLocation {
            bucket: bucket.to_owned(),
            prefix: parts.join("/"),
            key: key.to_owned(),
        })
    }

    /// `s3://bucket/prefix/key`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}/{}", self.bucket, self.key)
        } else {
            format!("s3://{}/{}/{}", self.bucket, self.prefix, self.key)
        }
    }
}

/// How the restore into this Database went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Pending, Running, Completed or Failed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The backup being restored, s3://bucket/prefix/backup
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The DatabaseBackup restored, when spec.restore.backupRef named one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// When the restore Job started
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the restore finished
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What happened, for a person
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Phase of a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RestorePhase {
    /// Waiting for the server or the backup.
    Pending,
    /// The restore Job is loading the dump.
    Running,
    /// The data is restored; it happens once.
    Completed,
    /// The restore failed; the message says why. It is not retried.
    Failed,
}

impl RestorePhase {
    /// Completed and Failed do not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, RestorePhase::Completed | RestorePhase::Failed)
    }
}

/// Restore drills: on a schedule, restore the newest backup into a throwaway
/// server and check it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct VerifySpec {
    /// Cron schedule of the drills (five fields, or @daily/@weekly/…)
    #[schemars(
        regex(
            pattern = r"^(@(annually|yearly|monthly|weekly|daily|hourly|reboot))|(@every (\d+(ns|us|µs|ms|s|m|h))+)|((((\d+,)+\d+|(\d+(\/|-)\d+)|\d+|\*) ?){5,7})$"
        ),
        length(max = 128)
    )]
    #[x_kube(
        validation = Rule::new("self != '@reboot'").message("@reboot is not supported by Kubernetes CronJobs"),
        validation = Rule::new("self.startsWith('@') || self.matches('^ *[^ ]+( +[^ ]+){4} *$')")
            .message("must have exactly five fields (minute hour day-of-month month day-of-week), as Kubernetes CronJobs require"),
    )]
    pub schedule: String,
}

/// The outcome of one restore drill.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Passed or Failed
    pub result: VerificationResult,
    /// When the drill finished
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The backup the drill restored, when it got that far
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// The drill's Job
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// What the drill found, for a person
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Whether a drill restored the backup and found what the manifest promised.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum VerificationResult {
    /// The dump loaded and every table's row count matched the manifest.
    Passed,
    /// The drill could not restore the backup, or the data differed.
    #[default]
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_the_backup_folder_or_a_file_in_it() {
        let folder = BackupLocation::parse("s3://backups/team-a/shop/orders/orders-1").unwrap();
        assert_eq!(
            folder,
            BackupLocation {
                bucket: "backups".into(),
                prefix: "team-a/shop/orders".into(),
                key: "orders-1".into()
            }
        );
        assert_eq!(
            BackupLocation::parse("s3://backups/team-a/shop/orders/orders-1/dump.sql.zst"),
            Some(folder.clone())
        );
        assert_eq!(
            BackupLocation::parse("s3://backups/team-a/shop/orders/orders-1/manifest.json/"),
            Some(folder.clone())
        );
        assert_eq!(folder.url(), "s3://backups/team-a/shop/orders/orders-1");
        let top = BackupLocation::parse("s3://backups/b1").unwrap();
        assert_eq!((top.prefix.as_str(), top.key.as_str()), ("", "b1"));
        assert_eq!(top.url(), "s3://backups/b1");
        assert_eq!(BackupLocation::parse("s3://backups/"), None);
        assert_eq!(BackupLocation::parse("https://backups/x"), None);
    }
}
