//! Services: `<name>-headless` for the StatefulSet's pod DNS, `<name>-primary`
//! for writes, and `<name>-readonly` for reads from the replicas when there
//! is more than one member. A streaming Database's Services select by the
//! role label the operator keeps on its pods.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta::{Names, POD_INDEX_LABEL, child_meta, selector_labels};
use super::topology::Topology;
use crate::engine::Driver;
use crate::replication;

/// Which Services a Database should have. Each is `Some` when it should exist.
pub struct Services {
    pub headless: Service,
    pub primary: Service,
    pub readonly: Option<Service>,
}

pub fn services(db: &Database, driver: &dyn Driver, topology: Topology) -> Services {
    let names = Names(&db.name_any());
    let with = |key: &str, value: &str| {
        let mut selector = selector_labels(db);
        selector.insert(key.to_owned(), value.to_owned());
        selector
    };
    let (primary, readonly) = match topology {
        // The operator keeps the role labels true.
        Topology::Streaming => (with(replication::ROLE_LABEL, replication::PRIMARY), {
            let mut caught_up = with(replication::ROLE_LABEL, replication::REPLICA);
            caught_up.insert(replication::CAUGHT_UP_LABEL.to_owned(), "true".to_owned());
            caught_up
        }),
        // Members beyond the first hold data of their own, so reads go to
        // the first too: a read-only endpoint answering from another
        // server would be worse than none.
        Topology::Independent => (with(POD_INDEX_LABEL, "0"), with(POD_INDEX_LABEL, "0")),
    };
    Services {
        headless: service(db, driver, names.headless(), selector_labels(db), true),
        readonly: (db.spec.replicas > 1)
            .then(|| service(db, driver, names.readonly(), readonly, false)),
        primary: service(db, driver, names.primary(), primary, false),
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
