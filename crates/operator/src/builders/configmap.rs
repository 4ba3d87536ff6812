//! ConfigMap `<name>-config`: the engine's configuration file and, for a
//! streaming Database, the instance script its pods start through.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::meta::{Names, child_meta};
use super::topology::Topology;
use crate::engine::{Driver, Sizing};

pub fn config_map(
    db: &Database,
    driver: &dyn Driver,
    sizing: &Sizing,
    topology: Topology,
) -> ConfigMap {
    let mut config = driver.render_config(sizing);
    let mut data = BTreeMap::new();
    if let Some(streaming) = driver.streaming().filter(|_| topology.is_streaming()) {
        let volume = database_operator_api::v1::quantity::bytes(&db.spec.storage.size);
        config.push_str(&streaming.config(volume.unwrap_or(1 << 30)));
        data.extend(
            streaming
                .files()
                .into_iter()
                .map(|(name, contents)| (name.to_owned(), contents)),
        );
        let sync = db
            .spec
            .replication
            .as_ref()
            .is_some_and(database_operator_api::v1::replication::ReplicationSpec::is_sync);
        if let Some((name, contents)) = streaming.mode_settings(sync) {
            data.insert(name.to_owned(), contents);
        }
    }
    data.insert(driver.config_file_name().to_owned(), config);
    ConfigMap {
        metadata: child_meta(db, Names(&db.name_any()).config(), "database"),
        data: Some(data),
        ..Default::default()
    }
}

/// The hash of what the server reads, on the pod template: a change rolls
/// the pods. The instance script is left out, so that a new operator's
/// script never restarts a database by itself, and so are the replication
/// mode's settings, which the operator applies to the running servers.
pub fn config_hash(config_map: &ConfigMap, driver: &dyn Driver) -> String {
    let mut data = config_map.data.clone().unwrap_or_default();
    if let Some(streaming) = driver.streaming() {
        data.remove(streaming.script_file());
        if let Some((name, _)) = streaming.mode_settings(false) {
            data.remove(name);
        }
    }
    super::hash_of(&Some(data))
}
