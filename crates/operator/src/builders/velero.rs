//! `velero.io/v1` Schedule: scheduled backups taken by Velero, for
//! `spec.backup.method: velero`.
//!
//! The Schedule lives in Velero's namespace, not the Database's, so it can
//! have no owner reference: labels name the Database instead, and the
//! controller deletes it when the Database stops asking for it. Each Backup
//! selects the database's objects (pods, volume claims, StatefulSet,
//! Services, ConfigMap, Secret) by the labels every one of them carries.

use std::collections::BTreeMap;

use database_operator_api::v1::database::{BackupSpec, VeleroSpec};
use database_operator_api::v1::retention::Retention;
use database_operator_api::v1::{Database, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::hash_of;
use super::meta::selector_labels;
use crate::velero::{BackupTemplate, Schedule, ScheduleSpec, TemplateMetadata};

/// Label on a Schedule (and its Backups) with the namespace of its Database.
pub const SOURCE_NAMESPACE_LABEL: &str = "example.com/database-namespace";
/// Label on a Schedule (and its Backups) with the name of its Database.
pub const SOURCE_NAME_LABEL: &str = "example.com/database-name";

/// Longest object name we create: Velero puts the Schedule's name in label values.
const MAX_NAME: usize = 63;

/// The Schedule's name: `<namespace>-<name>`, so Databases of the same name
/// in different namespaces get different Schedules; shortened with a hash of
/// both when longer than a label value may be.
pub fn schedule_name(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}-{name}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = &hash_of(&format!("{namespace}/{name}"))[..8];
    let keep = full[..MAX_NAME - hash.len() - 1].trim_end_matches('-');
    format!("{keep}-{hash}")
}

/// The labels that find every Schedule (and Backup) of one Database.
pub fn source_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SOURCE_NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
        (SOURCE_NAME_LABEL.to_owned(), name.to_owned()),
    ])
}

/// `source_labels` as a selector string.
pub fn source_selector(namespace: &str, name: &str) -> String {
    source_labels(namespace, name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A retention period as a Go duration, the form Velero's `ttl` takes
/// (`7d` → `168h0m0s`). A count of backups has no TTL form: `None`.
pub fn ttl(retention: &str) -> Option<String> {
    match Retention::parse(retention)? {
        Retention::Period(seconds) => Some(format!(
            "{}h{}m{}s",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )),
        Retention::Count(_) => None,
    }
}

/// The Schedule `db` should have: when backups are on with method velero.
pub fn desired(db: &Database) -> Option<Schedule> {
    let (backup, settings) = db.velero_backup()?;
    Some(schedule(db, backup, &settings))
}

/// The Schedule for `db`, whose backup settings are `backup` and `velero`.
pub fn schedule(db: &Database, backup: &BackupSpec, velero: &VeleroSpec) -> Schedule {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let source = source_labels(&namespace, &name);
    let mut meta_labels = source.clone();
    meta_labels.insert(labels::NAME.to_owned(), labels::APP_NAME.to_owned());
    meta_labels.insert(labels::COMPONENT.to_owned(), "backup".to_owned());
    meta_labels.insert(labels::PART_OF.to_owned(), db.spec.engine.to_string());
    meta_labels.insert(labels::MANAGED_BY.to_owned(), labels::OPERATOR.to_owned());
    let mut schedule = Schedule::new(
        &schedule_name(&namespace, &name),
        ScheduleSpec {
            schedule: backup.schedule.clone().unwrap_or_default(),
            template: BackupTemplate {
                metadata: Some(TemplateMetadata { labels: source }),
                included_namespaces: vec![namespace],
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(db)),
                    match_expressions: None,
                }),
                ttl: backup.retention.as_deref().and_then(ttl),
                storage_location: velero.storage_location.clone(),
                snapshot_volumes: velero.snapshot_volumes,
                default_volumes_to_fs_backup: velero.default_volumes_to_fs_backup,
            },
            // Backups must outlive a Schedule the operator deletes.
            use_owner_references_in_backup: Some(false),
        },
    );
    schedule.metadata = ObjectMeta {
        name: schedule.metadata.name.take(),
        namespace: Some(velero.namespace.clone()),
        labels: Some(meta_labels),
        ..Default::default()
    };
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_become_go_durations() {
        assert_eq!(ttl("7d").as_deref(), Some("168h0m0s"));
        assert_eq!(ttl("12h").as_deref(), Some("12h0m0s"));
        assert_eq!(ttl("4w").as_deref(), Some("672h0m0s"));
        assert_eq!(ttl("0h").as_deref(), Some("0h0m0s"));
        assert_eq!(ttl("10"), None);
        assert_eq!(ttl("bogus"), None);
    }

    #[test]
    fn names_are_per_namespace_and_fit_a_label_value() {
        assert_eq!(schedule_name("shop", "orders"), "shop-orders");
        let long_ns = "n".repeat(63);
        let a = schedule_name(&long_ns, "orders");
        let b = schedule_name(&long_ns, "invoices");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(!a.contains("--"), "{a}");
        assert_eq!(a, schedule_name(&long_ns, "orders"), "stable");
    }
}
