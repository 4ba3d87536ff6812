//! ConfigMap `<name>-config`: the engine's configuration file.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::meta::{Names, child_meta};
use crate::engine::{Driver, Sizing};

pub fn config_map(db: &Database, driver: &dyn Driver, sizing: &Sizing) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(db, Names(&db.name_any()).config(), "database"),
        data: Some(BTreeMap::from([(
            driver.config_file_name().to_owned(),
            driver.render_config(sizing),
        )])),
        ..Default::default()
    }
}
