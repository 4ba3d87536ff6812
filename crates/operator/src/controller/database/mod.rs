//! The Database controller: dereference → build → apply → status.

pub mod admin_secret;
pub mod cleanup;
pub mod monitoring;
pub mod restore;
pub mod status;
pub mod velero;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use api::condition::{set_condition, types};
use api::database::{DatabaseStatus, Phase};
use api::{Condition, Database};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use crate::apply::{FIELD_MANAGER, apply_if_changed};
use crate::builders::Desired;
use crate::builders::meta::Names;
use crate::builders::statefulset::keep_immutable_fields;
use crate::controller::Context;
use crate::controller::shared::events::publish;
use crate::controller::shared::stores::{Streams, cached_or_fetch, lookup};
use crate::error::{Error, Result, describe, is_permanent};
use admin_secret::ensure_admin_secret;
use status::{Failure, desired_status};

/// The finalizer on every Database; the seed's name.
pub const FINALIZER: &str = "database.example.com/finalizer";

/// Runs the Database controller until shutdown.
pub async fn run(ctx: Arc<Context>, streams: Streams) {
    let databases = Api::<Database>::all(ctx.client.clone());
    let controller = Controller::new(databases, watcher::Config::default().any_semantic());
    ctx.health.track_store("database", controller.store());
    ctx.metrics.inventory.watch_databases(controller.store());
    let cache = controller.store();
    controller
        // Velero installed (or removed): Databases with method velero look again.
        .watches_stream(streams.velero_crd, move |_| {
            cache
                .state()
                .into_iter()
                .filter(|db| db.velero_backup().is_some())
                .map(|db| ObjectRef::from_obj(&*db))
                .collect::<Vec<_>>()
        })
        .owns_stream(streams.statefulsets)
        .owns_stream(streams.config_maps)
        .owns_stream(streams.services)
        .owns_stream(streams.pdbs)
        .owns_stream(streams.cronjobs)
        .owns_stream(streams.secrets)
        .owns_stream(streams.monitors)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
        .await;
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// One reconcile of one Database.
pub async fn reconcile(db: Arc<Database>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("database");
    let namespace = db
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api = Api::<Database>::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{namespace}/{}", db.name_any());
    let result = finalizer(&api, FINALIZER, db, |event| async {
        match event {
            Finalizer::Apply(db) => apply(&db, &ctx).await,
            Finalizer::Cleanup(db) => cleanup::run(&db, &ctx).await,
        }
    })
    .await
    .map_err(finalizer_error);
    ctx.metrics
        .reconciled("database", result.as_ref().err().map(Error::kind));
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Unwraps the finalizer helper's error into ours.
pub(crate) fn finalizer_error(error: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match error {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
        F::UnnamedObject => Error::MissingField("metadata.name"),
        F::InvalidFinalizer => Error::MissingField("a valid finalizer name"),
    }
}

/// Retries with a per-object exponential backoff.
pub fn error_policy(db: Arc<Database>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any());
    let delay = ctx.backoff.next_delay(&key);
    warn!(database = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(db: &Database, ctx: &Context) -> Result<Action> {
    let namespace = db
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let failure = match apply_children(db, ctx, &namespace).await {
        Ok(()) => None,
        Err(Error::Kube(e)) if is_permanent(&e) => Some(failure_from(&e)),
        Err(e) => return Err(e),
    };
    let velero = velero::reconcile(db, ctx, &namespace).await?;
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace);
    let statefulset = cached_or_fetch(
        &ctx.stores.statefulsets,
        &statefulsets,
        &db.name_any(),
        &namespace,
    )
    .await?;
    let restore = match failure {
        None => restore::progress(db, ctx, &namespace, statefulset.as_deref()).await?,
        Some(_) => None,
    };
    let now = now();
    let mut status = desired_status(
        db,
        statefulset.as_deref(),
        failure.as_ref(),
        restore.as_ref(),
        &now,
    );
    monitoring::mirror_condition(db, ctx, &mut status, &now).await?;
    let restoring = restore
        .as_ref()
        .and_then(|r| r.phase)
        .is_some_and(|p| !p.is_terminal());
    let mut next = match failure {
        Some(_) => Duration::from_secs(60),
        // The restore Job is not watched: look again soon while it runs.
        None if restoring => Duration::from_secs(5),
        None => ctx.settings.resync,
    };
    match velero {
        velero::Report::Untouched => {}
        velero::Report::Condition(condition, retry) => {
            set_condition(&mut status.conditions, condition, &now);
            next = next.min(retry.unwrap_or(next));
        }
        velero::Report::Removed => status
            .conditions
            .retain(|c| c.type_ != types::BACKUP_CONFIGURED),
    }
    write_status_if_changed(db, ctx, &namespace, status).await?;
    Ok(Action::requeue(next))
}

fn failure_from(error: &kube::Error) -> Failure {
    Failure {
        reason: "InvalidSpec".into(),
        message: format!("the cluster refused a child object: {}", describe(error)),
    }
}

/// Applies every child that differs from what it should be.
async fn apply_children(db: &Database, ctx: &Context, namespace: &str) -> Result<()> {
    let client = &ctx.client;
    let stores = &ctx.stores;
    let names = Names(&db.name_any());
    let mut desired = Desired::build_with(db, &ctx.settings.agent_image);
    let mut writes = 0u32;

    ensure_admin_secret(client, &stores.secrets, db, namespace).await?;

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(
        &stores.config_maps,
        &config_maps,
        &names.config(),
        namespace,
    )
    .await?;
    writes += u32::from(
        apply_if_changed(&config_maps, desired.config_map.clone(), live.as_deref()).await?,
    );

    let services = Api::<Service>::namespaced(client.clone(), namespace);
    for service in desired.all_services() {
        let live =
            cached_or_fetch(&stores.services, &services, &service.name_any(), namespace).await?;
        writes += u32::from(apply_if_changed(&services, service.clone(), live.as_deref()).await?);
    }
    if desired.services.readonly.is_none() {
        delete_if_present(&services, &stores.services, &names.readonly(), namespace).await?;
    }

    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(
        &stores.statefulsets,
        &statefulsets,
        &names.statefulset(),
        namespace,
    )
    .await?;
    if let Some(live) = live.as_deref() {
        keep_immutable_fields(&mut desired.statefulset, live);
    }
    let created = live.is_none();
    // The template keeps its creation size; a larger spec means growing the claims.
    let wanted = api::quantity::parse(&db.spec.storage.size);
    if let Some(live) = live.as_deref()
        && volumes::template_size(live)
            .zip(wanted)
            .is_some_and(|(have, want)| have < want)
    {
        writes += volumes::grow_claims(client, db, namespace).await?;
    }
    writes +=
        u32::from(apply_if_changed(&statefulsets, desired.statefulset, live.as_deref()).await?);
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

    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace);
    let live = cached_or_fetch(&stores.pdbs, &pdbs, &names.pdb(), namespace).await?;
    writes += u32::from(apply_if_changed(&pdbs, desired.pdb, live.as_deref()).await?);

    writes += monitoring::apply(db, ctx, namespace, desired.monitoring.take()).await?;

    let cronjobs = Api::<CronJob>::namespaced(client.clone(), namespace);
    match desired.backup {
        Some(cronjob) => {
            let live =
                cached_or_fetch(&stores.cronjobs, &cronjobs, &names.backup(), namespace).await?;
            writes += u32::from(apply_if_changed(&cronjobs, cronjob, live.as_deref()).await?);
        }
        None => delete_if_present(&cronjobs, &stores.cronjobs, &names.backup(), namespace).await?,
    }
    match desired.verify {
        Some(cronjob) => {
            let live =
                cached_or_fetch(&stores.cronjobs, &cronjobs, &names.verify(), namespace).await?;
            writes += u32::from(apply_if_changed(&cronjobs, cronjob, live.as_deref()).await?);
        }
        None => delete_if_present(&cronjobs, &stores.cronjobs, &names.verify(), namespace).await?,
    }
    if writes > 0 {
        info!(database = %db.name_any(), namespace, writes, "applied children");
    }
    Ok(())
}

async fn delete_if_present<K>(
    api: &Api<K>,
    store: &kube::runtime::reflector::Store<K>,
    name: &str,
    namespace: &str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + 'static,
{
    if lookup(store, name, namespace).is_none() {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `status` if it differs from the live one, and records an event
/// for each phase transition a user should see.
async fn write_status_if_changed(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    status: DatabaseStatus,
) -> Result<()> {
    let previous = db.status.as_ref();
    if previous == Some(&status) {
        return Ok(());
    }
    let before = previous.and_then(|s| s.phase);
    let api = Api::<Database>::namespaced(ctx.client.clone(), namespace);
    // Only over the version this status was computed from: the drill
    // recorder writes status.backupVerification too, and a status computed
    // from an older copy must not put the old value back.
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": db.resource_version() },
        "status": status,
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&db.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Someone wrote after our read; their write triggers a fresh reconcile.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if before != status.phase
        && let Some(phase) = status.phase
    {
        announce_phase(db, ctx, before, phase, &status).await;
    }
    Ok(())
}

async fn announce_phase(
    db: &Database,
    ctx: &Context,
    before: Option<Phase>,
    phase: Phase,
    status: &DatabaseStatus,
) {
    let ready = api::condition::find(&status.conditions, types::READY);
    let message = ready
        .map(|c: &Condition| c.message.clone())
        .unwrap_or_default();
    let (kind, reason, note) = match phase {
        Phase::Running => (
            EventType::Normal,
            "Running",
            format!("database is running: {message}"),
        ),
        Phase::Scaling => (
            EventType::Normal,
            "Scaling",
            format!("scaling to {} replicas: {message}", db.spec.replicas),
        ),
        Phase::Updating => (
            EventType::Normal,
            "Updating",
            format!("rolling out version {}: {message}", db.spec.version),
        ),
        Phase::Failed => (EventType::Warning, "Failed", message),
        Phase::Creating => (EventType::Normal, "Creating", message),
        Phase::Pending | Phase::Deleting => return,
    };
    info!(database = %db.name_any(), from = ?before, to = %phase, "phase changed");
    publish(ctx, db, kind, reason, note).await;
}
