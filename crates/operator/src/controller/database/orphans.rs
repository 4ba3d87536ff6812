//! Children the spec no longer asks for, deleted in one place.
//!
//! Every optional child a Database may own is listed here against the part
//! of [`Desired`] that would hold it: when the build step did not produce
//! it, and the cache shows one, it goes. Nothing else deletes children of a
//! live Database, so adding an optional child means adding a line here. The
//! Velero Schedule lives in Velero's namespace, found by labels rather than
//! an owner reference; [`super::velero::remove_unwanted`] removes it.

use database_operator_api::v1::Database;
use database_operator_api::v1::monitor::DatabaseMonitor;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::{Api, Resource, ResourceExt};

use crate::builders::Desired;
use crate::builders::meta::Names;
use crate::controller::Context;
use crate::controller::shared::owned::Owned;
use crate::controller::shared::stores::lookup;
use crate::error::Result;

/// Deletes each child of `db` that `desired` does not contain; returns how
/// many it deleted.
pub(crate) async fn delete(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    desired: &Desired,
) -> Result<u32> {
    let names = Names(&db.name_any());
    let stores = &ctx.stores;
    let client = &ctx.client;
    let services = Api::<Service>::namespaced(client.clone(), namespace);
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), namespace);
    let mut deleted = 0;
    if desired.services.readonly.is_none() {
        deleted += delete_cached(&services, &stores.services, &names.readonly(), namespace).await?;
    }
    if desired.backup.is_none() {
        deleted += delete_cached(&cronjobs, &stores.cronjobs, &names.backup(), namespace).await?;
    }
    if desired.verify.is_none() {
        deleted += delete_cached(&cronjobs, &stores.cronjobs, &names.verify(), namespace).await?;
    }
    if desired.monitoring.is_none() {
        deleted += delete_cached(&services, &stores.services, &names.metrics(), namespace).await?;
        // Only the monitor we created (ours carries our label, so it is cached);
        // one the user made under that name is theirs.
        if lookup(&stores.monitors, &names.monitor(), namespace)
            .is_some_and(|m| super::monitoring::owned_by(&m, db))
        {
            let monitors = Api::<DatabaseMonitor>::namespaced(client.clone(), namespace);
            deleted += crate::apply::delete(&monitors, &names.monitor()).await?;
        }
    }
    if desired.network_policy.is_none() {
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
        deleted += delete_cached(
            &policies,
            &stores.network_policies,
            &names.network_policy(),
            namespace,
        )
        .await?;
    }
    if desired.instance_access.is_none() {
        let name = names.instance();
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
        deleted += delete_cached(&accounts, &stores.service_accounts, &name, namespace).await?;
        let roles = Api::<Role>::namespaced(client.clone(), namespace);
        deleted += delete_cached(&roles, &stores.roles, &name, namespace).await?;
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace);
        deleted += delete_cached(&bindings, &stores.role_bindings, &name, namespace).await?;
    }
    Ok(deleted)
}

/// Deletes `name` if the cache holds it.
async fn delete_cached<K>(
    api: &Api<K>,
    cache: &Owned<PartialObjectMeta<K>>,
    name: &str,
    namespace: &str,
) -> Result<u32>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + 'static,
{
    if cache.get(name, namespace).is_none() {
        return Ok(0);
    }
    crate::apply::delete(api, name).await
}
