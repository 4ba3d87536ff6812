//! Services: `<name>-headless` for the StatefulSet's pod DNS, `<name>-primary`
//! for writes, and `<name>-readonly` for reads when there is more than one replica.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta::{Names, POD_INDEX_LABEL, child_meta, selector_labels};
use crate::engine::Driver;

/// Which Services a Database should have. Each is `Some` when it should exist.
pub struct Services {
    pub headless: Service,
    pub primary: Service,
    pub readonly: Option<Service>,
}

pub fn services(db: &Database, driver: &dyn Driver) -> Services {
    let names = Names(&db.name_any());
    let mut primary_selector = selector_labels(db);
    // The first pod is the one that takes writes.
    primary_selector.insert(POD_INDEX_LABEL.to_owned(), "0".to_owned());
    Services {
        headless: service(db, driver, names.headless(), selector_labels(db), true),
        // Replicas beyond the first are not fed by replication yet (see the
        // README), so reads go to the primary until they are: a read-only
        // endpoint answering from an empty server would be worse than none.
        readonly: (db.spec.replicas > 1).then(|| {
            service(
                db,
                driver,
                names.readonly(),
                primary_selector.clone(),
                false,
            )
        }),
        primary: service(db, driver, names.primary(), primary_selector, false),
    }
}

/// The endpoint clients use, `<service>.<namespace>.svc:<port>`.
pub fn endpoint(db: &Database, driver: &dyn Driver, service_name: &str) -> String {
    format!(
        "{service_name}.{}.svc:{}",
        db.namespace().unwrap_or_else(|| "default".into()),
        driver.port()
    )
}

fn service(
    db: &Database,
    driver: &dyn Driver,
    name: String,
    selector: BTreeMap<String, String>,
    headless: bool,
) -> Service {
    Service {
        metadata: child_meta(db, name, "database"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: headless.then(|| "None".into()),
            // Peers must find each other before they are ready (replica bootstrap).
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(driver.container_name().into()),
                port: driver.port(),
                target_port: Some(IntOrString::String(driver.container_name().into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
