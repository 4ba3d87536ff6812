//! The apply step: makes every child of a Database match what the build
//! step produced, deletes what it no longer contains ([`super::orphans`]),
//! keeps the Velero Schedule and follows the restore, and reports what it
//! found for the status step.
//!
//! Each child is read from the caches and written only when it differs
//! ([`crate::apply::apply_if_changed`]), so a steady-state pass writes
//! nothing. A child the API server refuses for good (a spec it cannot
//! accept) is not retried: it becomes the Database's `Failed` status.

use database_operator_api::v1;
use std::sync::Arc;

use database_operator_api::v1::Database;
use database_operator_api::v1::restore::RestoreStatus;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use super::admin_secret::{AdminSecret, ensure_admin_secret};
use super::status::Failure;
use super::{monitoring, orphans, restore, velero, volumes};
use crate::apply::apply_if_changed;
use crate::builders::Desired;
use crate::builders::instance_access::InstanceAccess;
use crate::builders::meta::Names;
use crate::builders::rollout::PendingUpdate;
use crate::controller::Context;
use crate::controller::shared::events::publish;
use crate::controller::shared::stores::cached_or_fetch;
use crate::error::{Result, StepContext, describe, is_permanent};

/// What the apply step found, for the status step.
pub(crate) struct Applied {
    /// Why the spec cannot be realised, when the API server refused a child.
    pub failure: Option<Failure>,
    /// What the Velero Schedule step wants recorded.
    pub velero: velero::Report,
    /// The StatefulSet as it stands after the apply.
    pub statefulset: Option<Arc<StatefulSet>>,
    /// The restore's progress, when spec.restore asks for one.
    pub restore: Option<RestoreStatus>,
    /// What the replication step found (filled in after the apply).
    pub replication: Option<super::replication::Report>,
    /// A pod template the operator holds back until the user approves it.
    pub pending_update: Option<PendingUpdate>,
}

/// Applies `desired`: children, orphans, the Velero Schedule, the restore.
pub(crate) async fn apply(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    mut desired: Desired,
    restore_plan: restore::Plan,
    pending_update: Option<PendingUpdate>,
) -> Result<Applied> {
    let held = pending_update.is_some();
    let failure = match apply_owned(db, ctx, namespace, &mut desired, held).await {
        Ok(failure) => failure,
        Err(e) => match e.as_kube() {
            Some(refused) if is_permanent(refused) => Some(failure_from(refused)),
            _ => return Err(e),
        },
    };
    let velero = match desired.velero.take() {
        Some(schedule) => velero::reconcile(db, ctx, namespace, schedule).await?,
        None => velero::remove_unwanted(db, ctx, namespace).await?,
    };
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace);
    let statefulset = cached_or_fetch(
        &ctx.stores.statefulsets,
        &statefulsets,
        &db.name_any(),
        namespace,
    )
    .await?;
    let restore = match failure {
        None => {
            restore::progress(
                db,
                ctx,
                namespace,
                statefulset.as_deref(),
                restore_plan,
                desired.restore.take(),
            )
            .await?
        }
        Some(_) => None,
    };
    Ok(Applied {
        failure,
        velero,
        statefulset,
        restore,
        replication: None,
        pending_update,
    })
}

/// The Failure of a Database whose admin Secret was deleted after its
/// database was initialised; said once in an event as well.
async fn admin_secret_missing(
    ctx: &Context,
    db: &Database,
    names: &Names<'_>,
    claims: &[String],
) -> Failure {
    const REASON: &str = "AdminSecretMissing";
    let secret = names.secret();
    let message = format!(
        "the admin Secret {secret} is gone, and the database was initialised with its password (its volumes {} exist): the operator does not make a new password the database would not have. Recreate {secret} with the keys username and password holding the admin login and its password, or set a new password through the engine first and put that one in it",
        claims.join(", ")
    );
    let said = db
        .status
        .as_ref()
        .and_then(|s| v1::condition::find(&s.conditions, v1::condition::types::DEGRADED))
        .is_some_and(|c| c.reason == REASON);
    if !said {
        publish(ctx, db, EventType::Warning, REASON, message.clone()).await;
    }
    Failure {
        reason: REASON.into(),
        message,
    }
}

fn failure_from(error: &kube::Error) -> Failure {
    Failure {
        reason: "InvalidSpec".into(),
        message: format!("the cluster refused a child object: {}", describe(error)),
    }
}

/// Applies every child in the Database's namespace that differs from what
/// it should be, then deletes those the spec no longer asks for. Returns
/// why the Database cannot be healthy when its admin Secret is gone.
async fn apply_owned(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    desired: &mut Desired,
    held: bool,
) -> Result<Option<Failure>> {
    let client = &ctx.client;
    let stores = &ctx.stores;
    let names = Names(&db.name_any());
    let mut writes = 0u32;

    let admin = ensure_admin_secret(client, &stores.secrets, db, namespace)
        .await
        .step("creating the admin Secret", names.secret())?;
    let failure = match admin {
        AdminSecret::Missing { claims } => {
            Some(admin_secret_missing(ctx, db, &names, &claims).await)
        }
        AdminSecret::Present | AdminSecret::Created => None,
    };

    // While the pod template is held back, so is the configuration the new
    // one would read: the pods keep both until the update is approved.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(
        &stores.config_maps,
        &config_maps,
        &names.config(),
        namespace,
    )
    .await?;
    if !(held && live.is_some()) {
        writes += u32::from(
            apply_if_changed(&config_maps, desired.config_map.clone(), live.as_deref())
                .await
                .step("applying ConfigMap", names.config())?,
        );
    }

    let services = Api::<Service>::namespaced(client.clone(), namespace);
    for service in desired.all_services() {
        let live =
            cached_or_fetch(&stores.services, &services, &service.name_any(), namespace).await?;
        writes += u32::from(
            apply_if_changed(&services, service.clone(), live.as_deref())
                .await
                .step("applying Service", service.name_any())?,
        );
    }

    // The pods' ServiceAccount and its rights exist before the pods start.
    if let Some(access) = &desired.instance_access {
        writes += apply_instance_access(ctx, namespace, access).await?;
    }

    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(
        &stores.statefulsets,
        &statefulsets,
        &names.statefulset(),
        namespace,
    )
    .await?;
    let created = live.is_none();
    // The template keeps its creation size; a larger spec means growing the claims.
    let wanted = v1::quantity::parse(&db.spec.storage.size);
    if let Some(live) = live.as_deref()
        && volumes::template_size(live)
            .zip(wanted)
            .is_some_and(|(have, want)| have < want)
    {
        writes += volumes::grow_claims(client, db, namespace)
            .await
            .step("growing the PersistentVolumeClaims of", names.statefulset())?;
    }
    writes += u32::from(
        apply_if_changed(&statefulsets, desired.statefulset.clone(), live.as_deref())
            .await
            .step("applying StatefulSet", names.statefulset())?,
    );
    if created {
        publish(
            ctx,
            db,
            EventType::Normal,
            "Created",
            format!(
                "created StatefulSet {} with {} replica(s) of {} {}",
                names.statefulset(),
                db.spec.replicas,
                db.spec.engine,
                db.spec.version
            ),
        )
        .await;
    }

    if let Some(policy) = &desired.network_policy {
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
        let live = cached_or_fetch(
            &stores.network_policies,
            &policies,
            &names.network_policy(),
            namespace,
        )
        .await?;
        writes += u32::from(
            apply_if_changed(&policies, policy.clone(), live.as_deref())
                .await
                .step("applying NetworkPolicy", names.network_policy())?,
        );
    }

    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(&stores.pdbs, &pdbs, &names.pdb(), namespace).await?;
    writes += u32::from(
        apply_if_changed(&pdbs, desired.pdb.clone(), live.as_deref())
            .await
            .step("applying PodDisruptionBudget", names.pdb())?,
    );

    if let Some(children) = &desired.monitoring {
        writes += monitoring::apply(db, ctx, namespace, children.clone()).await?;
    }

    let cronjobs = Api::<CronJob>::namespaced(client.clone(), namespace);
    for cronjob in [&desired.backup, &desired.verify].into_iter().flatten() {
        let live =
            cached_or_fetch(&stores.cronjobs, &cronjobs, &cronjob.name_any(), namespace).await?;
        writes += u32::from(
            apply_if_changed(&cronjobs, cronjob.clone(), live.as_deref())
                .await
                .step("applying CronJob", cronjob.name_any())?,
        );
    }

    writes += orphans::delete(db, ctx, namespace, desired).await.step(
        "deleting children no longer wanted by Database",
        db.name_any(),
    )?;
    if writes > 0 {
        info!(database = %db.name_any(), namespace, writes, "applied children");
    }
    Ok(failure)
}

/// Applies the ServiceAccount, Role and RoleBinding of a replicated
/// Database's pods; returns how many it wrote.
async fn apply_instance_access(
    ctx: &Context,
    namespace: &str,
    access: &InstanceAccess,
) -> Result<u32> {
    let client = &ctx.client;
    let stores = &ctx.stores;
    let name = access.service_account.name_any();
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(&stores.service_accounts, &accounts, &name, namespace).await?;
    let mut writes = u32::from(
        apply_if_changed(&accounts, access.service_account.clone(), live.as_deref())
            .await
            .step("applying ServiceAccount", &name)?,
    );
    let roles = Api::<Role>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(&stores.roles, &roles, &name, namespace).await?;
    writes += u32::from(
        apply_if_changed(&roles, access.role.clone(), live.as_deref())
            .await
            .step("applying Role", &name)?,
    );
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(&stores.role_bindings, &bindings, &name, namespace).await?;
    writes += u32::from(
        apply_if_changed(&bindings, access.role_binding.clone(), live.as_deref())
            .await
            .step("applying RoleBinding", &name)?,
    );
    Ok(writes)
}
