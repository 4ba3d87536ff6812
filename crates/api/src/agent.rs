//! What the backup agent reports, and what the controllers read back.
//!
//! The agent (`database-operator agent …`, running in a Job's pod) ends by
//! writing exactly one JSON line: to stdout and to the container's
//! termination message, which is how the outcome reaches the operator
//! without anyone reading pod logs. These types are that line, written by
//! the agent and parsed by the backup, restore and drill controllers, so the
//! two sides cannot drift apart. Field names are camelCase on the wire.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// After `agent backup`: where the dump went and how to check it.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// The dump object, `s3://bucket/prefix/key/dump…`.
    pub location: String,
    /// Bytes stored (after compression).
    pub size_bytes: u64,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    /// The backup's folder name under the prefix.
    #[serde(default)]
    pub key_name: String,
    /// The manifest object, `s3://…/manifest.json`.
    #[serde(default)]
    pub manifest: String,
}

/// After `agent restore` and `agent verify` (a restore drill).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The backup restored.
    pub key_name: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub sha256: String,
    /// When the restored backup finished, as its manifest says.
    #[serde(default)]
    pub backup_completion_time: String,
    /// Wall-clock time of the restore, rounded to a tenth of a second.
    #[serde(default)]
    pub restore_seconds: f64,
    /// `verify` only: tables or collections the manifest counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
    /// `verify` only: rows or documents the manifest counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// `verify` only: every row count equals the manifest's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
}

/// After `agent prune`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub deleted: Vec<PrunedBackup>,
    pub kept: Vec<String>,
    pub unreadable_manifests: Vec<UnreadableManifest>,
}

/// One backup `agent prune` deleted (or would delete, in a dry run).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunedBackup {
    pub key_name: String,
    pub reason: PruneReason,
    pub objects: Vec<String>,
}

/// Why `agent prune` deleted a backup.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PruneReason {
    /// Completed longer ago than the retention period.
    Expired,
    /// Beyond the newest N complete backups.
    BeyondCount,
    /// No manifest and untouched for more than a day.
    Incomplete,
}

/// A backup whose manifest could not be read; it is never deleted.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreadableManifest {
    pub key_name: String,
    pub reason: String,
}

/// After any command that failed.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureReport {
    /// What went wrong, secrets cut out.
    pub error: String,
    /// The backup the command was working on, when it had picked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
}

/// Parses the agent's line as `T`; `None` if it is not one.
pub fn parse<T: DeserializeOwned>(line: &str) -> Option<T> {
    serde_json::from_str(line.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_report_round_trips_with_the_fields_the_agent_writes() {
        let line = r#"{"location":"s3://b/ns/db/x/dump.sql.zst","sizeBytes":1234,"sha256":"ab","startTime":"2026-11-26T10:00:00Z","completionTime":"2026-11-26T10:01:00Z","keyName":"x","manifest":"s3://b/ns/db/x/manifest.json"}"#;
        let report: BackupReport = parse(line).expect("parses");
        assert_eq!(report.size_bytes, 1234);
        assert_eq!(report.location, "s3://b/ns/db/x/dump.sql.zst");
        assert!(report.completion_time.is_some());
        let again: serde_json::Value = serde_json::to_value(&report).expect("serialises");
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(line).expect("json")
        );
    }

    #[test]
    fn a_verify_report_carries_counts_and_a_restore_report_does_not() {
        let verify: RestoreReport = parse(
            r#"{"keyName":"b-2","sizeBytes":9,"restoreSeconds":1.5,"tables":3,"rows":70,"verified":true}"#,
        )
        .expect("parses");
        assert!(verify.verified);
        assert_eq!((verify.tables, verify.rows), (Some(3), Some(70)));
        let restore = RestoreReport {
            key_name: "b-2".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&restore).expect("serialises");
        assert!(!json.contains("verified") && !json.contains("tables"));
    }

    #[test]
    fn a_failure_names_the_backup_only_when_there_was_one() {
        let failure: FailureReport =
            parse(r#"{"error":"error: boom","keyName":"b-2"}"#).expect("parses");
        assert_eq!(failure.key_name.as_deref(), Some("b-2"));
        assert!(parse::<FailureReport>("not json").is_none());
        let json = serde_json::to_string(&FailureReport {
            error: "e".into(),
            key_name: None,
        })
        .expect("serialises");
        assert_eq!(json, r#"{"error":"e"}"#);
    }
}
