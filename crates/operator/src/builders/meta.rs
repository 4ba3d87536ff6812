//! Names, labels and owner references shared by every child of a Database.

use std::collections::BTreeMap;

use database_operator_api::v1::{Database, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

/// Annotation with the hash of what the operator last applied to a child;
/// a different hash means the child must be applied again.
pub const APPLIED_HASH: &str = "example.com/applied-hash";
/// Pod-template annotation with the hash of the configuration file, so a
/// configuration change rolls the pods.
pub const CONFIG_HASH: &str = "example.com/config-hash";
/// The label the StatefulSet controller puts on each pod with its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Names of the children of one Database.
pub struct Names<'a>(pub &'a str);

impl Names<'_> {
    pub fn statefulset(&self) -> String {
        self.0.to_owned()
    }
    pub fn config(&self) -> String {
        format!("{}-config", self.0)
    }
    pub fn secret(&self) -> String {
        format!("{}-secret", self.0)
    }
    /// The replication login's credentials.
    pub fn replication(&self) -> String {
        format!("{}-replication", self.0)
    }
    pub fn headless(&self) -> String {
        format!("{}-headless", self.0)
    }
    pub fn primary(&self) -> String {
        format!("{}-primary", self.0)
    }
    pub fn readonly(&self) -> String {
        format!("{}-readonly", self.0)
    }
    pub fn pdb(&self) -> String {
        self.0.to_owned()
    }
    /// The backup CronJob. Kubernetes caps CronJob names at 52 characters
    /// (its Jobs add a suffix), as it does Database names, so long names are
    /// cut and made unique again with a hash.
    pub fn backup(&self) -> String {
        cronjob_name(format!("{}-backup", self.0))
    }
    /// The Job that fills a new Database from spec.restore.
    pub fn restore(&self) -> String {
        format!("{}-restore", self.0)
    }
    /// The CronJob of the restore drills.
    pub fn verify(&self) -> String {
        cronjob_name(format!("{}-verify", self.0))
    }
    /// The exporters' Service.
    pub fn metrics(&self) -> String {
        format!("{}-metrics", self.0)
    }
    /// The monitoring login's credentials.
    pub fn monitoring_secret(&self) -> String {
        format!("{}-monitoring", self.0)
    }
    /// The DatabaseMonitor the operator creates for a Database.
    pub fn monitor(&self) -> String {
        self.0.to_owned()
    }
    /// The NetworkPolicy that admits the Database's clients.
    pub fn network_policy(&self) -> String {
        self.0.to_owned()
    }
    /// The ServiceAccount of the Database's pods, its Role and RoleBinding:
    /// what the in-pod supervisor reads the API as.
    pub fn instance(&self) -> String {
        format!("{}-instance", self.0)
    }
}

/// The longest CronJob name Kubernetes accepts.
pub const MAX_CRONJOB_NAME: usize = 52;

/// `name`, or when longer than a CronJob may be, its start and a hash of the
/// whole (names are lowercase ASCII, so cutting bytes is cutting characters).
fn cronjob_name(name: String) -> String {
    if name.len() <= MAX_CRONJOB_NAME {
        return name;
    }
    let hash = &super::hash_of(&name)[..8];
    let keep = name[..MAX_CRONJOB_NAME - 9].trim_end_matches('-');
    format!("{keep}-{hash}")
}

/// The labels that select a Database's pods. Never change them: a
/// StatefulSet's selector is immutable.
pub fn selector_labels(db: &Database) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), labels::APP_NAME.to_owned()),
        (labels::INSTANCE.to_owned(), db.name_any()),
    ])
}

/// The selector as a string, for `status.selector` and the scale subresource.
pub fn selector_string(db: &Database) -> String {
    selector_labels(db)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every label a child of `db` carries.
pub fn labels(db: &Database, component: &str) -> BTreeMap<String, String> {
    let mut all = selector_labels(db);
    all.insert(labels::COMPONENT.to_owned(), component.to_owned());
    all.insert(labels::PART_OF.to_owned(), db.spec.engine.to_string());
    all.insert(labels::VERSION.to_owned(), db.spec.version.clone());
    all.insert(labels::MANAGED_BY.to_owned(), labels::OPERATOR.to_owned());
    all
}

/// The controller owner reference that ties a child to `db` for garbage collection.
pub fn owner_reference(db: &Database) -> OwnerReference {
    db.controller_owner_ref(&())
        .expect("a Database read from the API server has a name and uid")
}

/// Metadata for a child named `name` of `db`.
pub fn child_meta(db: &Database, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: db.namespace(),
        labels: Some(labels(db, component)),
        owner_references: Some(vec![owner_reference(db)]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cronjob_names_fit_kubernetes_limit_and_stay_distinct() {
        assert_eq!(Names("orders").backup(), "orders-backup");
        assert_eq!(Names("orders").verify(), "orders-verify");
        let long = "a".repeat(52);
        let (backup, verify) = (Names(&long).backup(), Names(&long).verify());
        assert!(backup.len() <= MAX_CRONJOB_NAME && verify.len() <= MAX_CRONJOB_NAME);
        assert_ne!(backup, verify);
        assert_eq!(backup, Names(&long).backup(), "stable");
        let other = format!("{}b", "a".repeat(51));
        assert_ne!(Names(&other).backup(), backup);
    }
}
