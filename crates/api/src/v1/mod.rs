//! `example.com/v1`: the custom resource types, their defaults and their
//! validation, and the labels and conditions they share.

pub mod backup;
pub mod condition;
pub mod database;
pub mod labels;
pub mod monitor;
pub mod network;
pub mod quantity;
pub mod reference;
pub mod replication;
pub mod restore;
pub mod retention;
pub mod user;

pub use backup::{DatabaseBackup, DatabaseBackupSpec, DatabaseBackupStatus};
pub use condition::{Condition, ConditionStatus};
pub use database::{Database, DatabaseSpec, DatabaseStatus, Engine, Flavor, Phase};
pub use monitor::{DatabaseMonitor, DatabaseMonitorSpec, DatabaseMonitorStatus};
pub use reference::DatabaseRef;
pub use user::{DatabaseUser, DatabaseUserSpec, DatabaseUserStatus};

/// The API group of every kind in this crate.
pub const GROUP: &str = "example.com";
/// The one served and stored version.
pub const VERSION: &str = "v1";

/// Every CRD of the API, in a stable order: what `database-operator crd` prints
/// and what `deploy/crds/` holds.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let mut crds = vec![
        Database::crd(),
        DatabaseUser::crd(),
        DatabaseBackup::crd(),
        DatabaseMonitor::crd(),
    ];
    // The API server would default listKind; the seed's CRD states it.
    for crd in &mut crds {
        crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    }
    crds
}
