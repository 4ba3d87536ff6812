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
use futures::future::try_join_all;
use futures::try_join;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use super::admin_secret::{AdminSecret, ensure_admin_secret};
use super::status::Failure;
use super::{monitoring, orphans, restore, velero, volumes};
use crate::apply::{apply_returning, stamp};
use crate::builders::Desired;
use crate::builders::instance_access::InstanceAccess;
use crate::builders::meta::Names;
use crate::builders::rollout::PendingUpdate;
use crate::controller::Context;
use crate::controller::shared::events::publish;
use crate::controller::shared::owned::converge;
use crate::controller::shared::stores::fetch;
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
/// `live` is the StatefulSet the dereference step found.
pub(crate) async fn apply(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    mut desired: Desired,
    restore_plan: restore::Plan,
    pending_update: Option<PendingUpdate>,
    live: Option<Arc<StatefulSet>>,
) -> Result<Applied> {
    let held = pending_update.is_some();
    let (failure, statefulset) =
        match apply_owned(db, ctx, namespace, &desired, held, live.clone()).await {
            Ok(applied) => applied,
            // The StatefulSet as it stands: the apply was refused.
            Err(e) => match e.as_kube() {
                Some(refused) if is_permanent(refused) => (Some(failure_from(refused)), live),
                _ => return Err(e),
            },
        };
    let velero = match desired.velero.take() {
        Some(schedule) => velero::reconcile(db, ctx, namespace, schedule).await?,
        None => velero::remove_unwanted(db, ctx, namespace).await?,
    };
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
/// it should be, then deletes those the spec no longer asks for. `live` is
/// the StatefulSet as the dereference step found it. Returns why the
/// Database cannot be healthy when its admin Secret is gone, and the
/// StatefulSet as it stands after the apply.
///
/// One pass, in two waves: first, at once, everything the pods read or are
/// governed by (the admin Secret, the configuration, the Services, their
/// API access and NetworkPolicy) and the children beside them (the
/// PodDisruptionBudget, monitoring, backup CronJobs); then the StatefulSet,
/// whose pods start with all of that in place.
async fn apply_owned(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    desired: &Desired,
    held: bool,
    live: Option<Arc<StatefulSet>>,
) -> Result<(Option<Failure>, Option<Arc<StatefulSet>>)> {
    let client = &ctx.client;
    let stores = &ctx.stores;
    let names = Names(&db.name_any());

    let admin = async {
        let admin = ensure_admin_secret(client, &stores.secrets, db, namespace)
            .await
            .step("creating the admin Secret", names.secret())?;
        Ok(match admin {
            AdminSecret::Missing { claims } => {
                Some(admin_secret_missing(ctx, db, &names, &claims).await)
            }
            AdminSecret::Present | AdminSecret::Created => None,
        })
    };
    // While the pod template is held back, so is the configuration the new
    // one would read: the pods keep both until the update is approved.
    let config = async {
        let step = "applying ConfigMap";
        if held {
            let name = names.config();
            let exists = match stores.config_maps.get(&name, namespace) {
                Some(_) => true,
                None => {
                    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
                    fetch(&api, &name).await.step(step, &name)?.is_some()
                }
            };
            if exists {
                return Ok(0);
            }
        }
        let config_map = desired.config_map.clone();
        converge(client, &stores.config_maps, namespace, config_map, step).await
    };
    let services = try_join_all(desired.all_services().map(|service| {
        converge(
            &ctx.client,
            &stores.services,
            namespace,
            service.clone(),
            "applying Service",
        )
    }));
    let access = async {
        match &desired.instance_access {
            Some(access) => apply_instance_access(ctx, namespace, access).await,
            None => Ok(0),
        }
    };
    let policy = async {
        match &desired.network_policy {
            Some(policy) => {
                let step = "applying NetworkPolicy";
                converge(
                    &ctx.client,
                    &stores.network_policies,
                    namespace,
                    policy.clone(),
                    step,
                )
                .await
            }
            None => Ok(0),
        }
    };
    let pdb = converge(
        &ctx.client,
        &stores.pdbs,
        namespace,
        desired.pdb.clone(),
        "applying PodDisruptionBudget",
    );
    let monitoring = async {
        match &desired.monitoring {
            Some(children) => monitoring::apply(db, ctx, namespace, children.clone()).await,
            None => Ok(0),
        }
    };
    let cronjobs = try_join_all(
        [&desired.backup, &desired.verify]
            .into_iter()
            .flatten()
            .map(|cronjob| {
                converge(
                    &ctx.client,
                    &stores.cronjobs,
                    namespace,
                    cronjob.clone(),
                    "applying CronJob",
                )
            }),
    );
    let (failure, config, services, access, policy, pdb, monitoring, cronjobs) = try_join!(
        admin, config, services, access, policy, pdb, monitoring, cronjobs
    )?;
    let mut writes = config
        + services.iter().sum::<u32>()
        + access
        + policy
        + pdb
        + monitoring
        + cronjobs.iter().sum::<u32>();

    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace);
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
    let applied = apply_statefulset(ctx, &statefulsets, desired, namespace, live.as_deref())
        .await
        .step("applying StatefulSet", names.statefulset())?;
    if applied.is_some() {
        writes += 1;
    }
    if live.is_none() {
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
    let statefulset = applied.map(Arc::new).or(live);

    writes += orphans::delete(db, ctx, namespace, desired).await.step(
        "deleting children no longer wanted by Database",
        db.name_any(),
    )?;
    if writes > 0 {
        info!(database = %db.name_any(), namespace, writes, "applied children");
    }
    Ok((failure, statefulset))
}

/// Applies the StatefulSet unless the cache (which holds it trimmed, see
/// [`crate::controller::shared::stores::trim_statefulset`]) shows it as
/// wanted; otherwise compares it in full: `observed` when the dereference
/// step had to read it from the API server (the cache did not have it),
/// else read now. Returns it as written, when it wrote.
async fn apply_statefulset(
    ctx: &Context,
    api: &Api<StatefulSet>,
    desired: &Desired,
    namespace: &str,
    observed: Option<&StatefulSet>,
) -> std::result::Result<Option<StatefulSet>, kube::Error> {
    let cache = &ctx.stores.statefulsets;
    let mut wanted = desired.statefulset.clone();
    stamp(&mut wanted);
    let name = wanted.name_any();
    let live = match (cache.get(&name, namespace), observed) {
        (Some(cached), _) if cache.is_current(&cached.metadata, &wanted.metadata) => {
            return Ok(None);
        }
        (None, Some(whole)) => Some(whole.clone()),
        _ => fetch(api, &name).await?,
    };
    let written = apply_returning(api, wanted, live.as_ref()).await?;
    if let Some(now) = written.as_ref().or(live.as_ref()) {
        cache.record(&now.metadata);
    }
    Ok(written)
}

/// Applies the ServiceAccount, Role and RoleBinding of a replicated
/// Database's pods; returns how many it wrote. The RoleBinding comes after
/// the Role: the API server lets the operator bind a Role only if it holds
/// every right the Role grants, which it cannot check for a Role that does
/// not exist yet (the operator has no `bind` verb).
async fn apply_instance_access(
    ctx: &Context,
    namespace: &str,
    access: &InstanceAccess,
) -> Result<u32> {
    let stores = &ctx.stores;
    let (account, role) = try_join!(
        converge(
            &ctx.client,
            &stores.service_accounts,
            namespace,
            access.service_account.clone(),
            "applying ServiceAccount",
        ),
        converge(
            &ctx.client,
            &stores.roles,
            namespace,
            access.role.clone(),
            "applying Role"
        ),
    )?;
    let binding = converge(
        &ctx.client,
        &stores.role_bindings,
        namespace,
        access.role_binding.clone(),
        "applying RoleBinding",
    )
    .await?;
    Ok(account + role + binding)
}
