//! Test fixtures: Databases as the API server would return them. Compiled
//! for this crate's unit tests and, with the `fixtures` feature, for
//! testkit (the integration tests), so both build them one way.

use database_operator_api::v1::database::{BackupSpec, StorageSpec};
use database_operator_api::v1::{Database, DatabaseSpec, Engine};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A Database as the API server would return it: named, namespaced, with a uid and generation.
pub fn database(name: &str, engine: Engine, version: &str, replicas: i32) -> Database {
    let mut db = Database::new(
        name,
        DatabaseSpec {
            engine,
            flavor: None,
            version: version.into(),
            replicas,
            storage: StorageSpec {
                size: "1Gi".into(),
                storage_class: None,
            },
            backup: None,
            monitoring: None,
            resources: None,
            user_secret_namespaces: Vec::new(),
            deletion_policy: Default::default(),
            update_policy: Default::default(),
            restore: None,
            replication: None,
            network: None,
        },
    );
    db.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some("00000000-0000-0000-0000-000000000001".into()),
        generation: Some(1),
        ..Default::default()
    };
    db
}

/// A MariaDB Database: the mysql engine's `mariadb` flavor.
pub fn mariadb(name: &str, version: &str, replicas: i32) -> Database {
    let mut db = database(name, Engine::Mysql, version, replicas);
    db.spec.flavor = Some(database_operator_api::v1::database::Flavor::Mariadb);
    db
}

pub fn with_storage_class(mut db: Database, class: &str) -> Database {
    db.spec.storage.storage_class = Some(class.into());
    db
}

pub fn with_backup(mut db: Database, schedule: &str) -> Database {
    db.spec.backup = Some(BackupSpec {
        enabled: true,
        schedule: Some(schedule.into()),
        retention: Some("7d".into()),
        ..Default::default()
    });
    db
}
