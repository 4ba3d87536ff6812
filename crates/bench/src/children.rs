//! The objects the operator creates for a Database, built by the operator's
//! own builders, for the bare client to create itself: the baseline costs
//! the API server the same objects, without any reconcile.

use anyhow::Result;
use database_operator_api::v1::Database;
use kube::api::ApiResource;
use kube::{Resource, ResourceExt};
use operator::builders::{Desired, monitoring, secret};
use operator::engine::driver_of;
use serde::Serialize;

/// One object to create: its resource, namespace and body.
pub struct Child {
    pub resource: ApiResource,
    pub namespace: String,
    pub body: serde_json::Value,
}

fn child<K>(db: &Database, object: &K) -> Result<(String, Child)>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let resource = ApiResource::erase::<K>(&());
    let mut body = serde_json::to_value(object)?;
    body["apiVersion"] = resource.api_version.clone().into();
    body["kind"] = resource.kind.clone().into();
    Ok((
        K::plural(&()).into_owned(),
        Child {
            resource,
            namespace: db.namespace().unwrap_or_default(),
            body,
        },
    ))
}

/// What the operator creates for `db` (a Database as the API server
/// returned it, with its uid for the owner references), in the order it
/// applies them, each with its resource's plural name.
pub fn of(db: &Database) -> Result<Vec<(String, Child)>> {
    let driver = driver_of(&db.spec);
    let desired = Desired::build(db);
    let mut out = vec![child(
        db,
        &secret::admin_secret(db, driver, secret::generate_password()),
    )?];
    out.push(child(db, &desired.config_map)?);
    for service in desired.all_services() {
        out.push(child(db, service)?);
    }
    if let Some(access) = &desired.instance_access {
        out.push(child(db, &access.service_account)?);
        out.push(child(db, &access.role)?);
        out.push(child(db, &access.role_binding)?);
    }
    out.push(child(db, &desired.statefulset)?);
    if let Some(policy) = &desired.network_policy {
        out.push(child(db, policy)?);
    }
    out.push(child(db, &desired.pdb)?);
    for cronjob in desired.backup.iter().chain(&desired.verify) {
        out.push(child(db, cronjob)?);
    }
    if let Some(monitoring) = &desired.monitoring {
        out.push(child(
            db,
            &monitoring::exporter::monitoring_secret(db, secret::generate_password()),
        )?);
        out.push(child(db, &monitoring.service)?);
        out.push(child(db, &monitoring.monitor)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(i: usize) -> Database {
        let mut db = crate::workload::database("t", i);
        db.metadata.uid = Some(format!("uid-{i}"));
        db
    }

    #[test]
    fn a_plain_database_gets_its_secret_services_statefulset_and_budget() {
        let kinds = |i| -> Vec<String> {
            of(&created(i))
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        for i in 0..9 {
            let kinds = kinds(i);
            let has = |kind: &str| kinds.iter().any(|k| k == kind);
            for required in [
                "secrets",
                "configmaps",
                "services",
                "statefulsets",
                "poddisruptionbudgets",
            ] {
                assert!(has(required), "db-{i} lacks {required}: {kinds:?}");
            }
            let db = created(i);
            assert_eq!(has("cronjobs"), db.spec.backup.is_some(), "db-{i}");
            assert_eq!(
                has("databasemonitors"),
                db.spec.monitoring.is_some(),
                "db-{i}"
            );
        }
    }

    #[test]
    fn every_child_is_owned_by_its_database_and_names_its_kind() {
        for (_, child) in of(&created(4)).unwrap() {
            assert_eq!(child.namespace, "t-4");
            assert_eq!(child.body["kind"], child.resource.kind);
            assert_eq!(child.body["apiVersion"], child.resource.api_version);
            assert_eq!(
                child.body["metadata"]["ownerReferences"][0]["uid"], "uid-4",
                "{}",
                child.resource.kind
            );
        }
    }
}
