//! The part of Velero's `velero.io/v1` API the operator writes: a Schedule.
//!
//! Our own typed subset of the fields we set (Velero's CRD has many more);
//! fields we do not know are dropped when a live object is read, which is
//! fine because the operator only compares the fields it sends.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The CustomResourceDefinition that must be installed for method velero.
pub(crate) const SCHEDULE_CRD: &str = "schedules.velero.io";

/// A Velero Schedule: Velero creates a Backup from `template` on `schedule`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "Schedule",
    plural = "schedules",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron expression of when Backups are taken.
    pub schedule: String,
    /// The Backup each run creates.
    pub template: BackupTemplate,
    /// Whether Backups get an owner reference to the Schedule (and so go when it goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_owner_references_in_backup: Option<bool>,
}

/// The subset of Velero's BackupSpec the operator sets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupTemplate {
    /// Labels and annotations of every Backup the Schedule creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// A Go duration (`168h0m0s`) after which a Backup is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
}

/// Velero's `template.metadata`: labels only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
