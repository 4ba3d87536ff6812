//! The Database controller. One reconcile of a live Database is a pipeline,
//! one step a file, and only the first, third and fourth touch the API:
//!
//! 1. **dereference** — what the spec points at: the backup `spec.restore`
//!    names ([`restore::dereference`]), and whether the pods stream from a
//!    primary ([`crate::builders::topology`]).
//! 2. **build** — every child the spec asks for, from the spec and what
//!    step 1 found ([`crate::builders::Desired`]; pure).
//! 3. **apply** — make each child match ([`children`]), delete the children
//!    the spec no longer asks for ([`orphans`]), keep the Velero Schedule
//!    ([`velero`]), start and follow the restore Job ([`restore::progress`]);
//!    for a streaming Database, keep the pods' roles and fail over
//!    ([`replication`]).
//! 4. **status** — computed from what step 3 observed and written only when
//!    it changed ([`status`]).
//!
//! A Database being deleted runs [`cleanup`] instead, under the finalizer.

pub(crate) mod admin_secret;
pub(crate) mod children;
pub(crate) mod cleanup;
pub(crate) mod monitoring;
pub(crate) mod orphans;
pub(crate) mod replication;
pub(crate) mod restore;
pub(crate) mod status;
pub(crate) mod velero;
pub(crate) mod volumes;

use std::sync::Arc;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, predicates, watcher};
use kube::{Api, ResourceExt};

use crate::builders::topology::Topology;
use crate::builders::{Desired, network_policy, statefulset};
use crate::controller::Context;
use crate::controller::shared::reconcile::{
    drive, error_policy, finalized, scoped_controller_woken_by,
};
use crate::controller::shared::stores::Streams;
use crate::controller::shared::stores::{cached_or_fetch, fetch};
use crate::error::{Error, Result, StepContext};
use k8s_openapi::api::apps::v1::StatefulSet;

/// The finalizer on every Database; the seed's name.
pub(crate) const FINALIZER: &str = "database.example.com/finalizer";

/// Runs the Database controller until shutdown.
pub(crate) async fn run(ctx: Arc<Context>, streams: Streams) {
    // Not woken by its own status writes (most of a Database's changes
    // while it is created): only by what the user changes (the spec moves
    // the generation, as deletion does; an annotation approves an update),
    // by its finalizer being added, which the finalizer step waits for, and
    // by the one part of its status another controller writes.
    let controller = scoped_controller_woken_by::<Database, _>(&ctx, wakes);
    ctx.health.track_store("database", controller.store());
    ctx.metrics.inventory.watch_databases(controller.store());
    let cache = controller.store();
    // The admin Secrets users made themselves (labelled by the admin
    // Secret step): deleting one is noticed at once.
    let admin_secrets = ctx.settings.scope.touched::<PartialObjectMeta<Secret>>(
        &ctx.client,
        &watcher::Config::default()
            .labels(admin_secret::ADMIN_SECRET_LABEL)
            .any_semantic(),
    );
    let outcomes = controller
        // Velero installed (or removed): Databases with method velero look again.
        .watches_stream(streams.velero_crd, move |_| {
            cache
                .state()
                .into_iter()
                .filter(|db| db.velero_backup().is_some())
                .map(|db| ObjectRef::from_obj(&*db))
                .collect::<Vec<_>>()
        })
        .watches_stream(admin_secrets, |secret| {
            let database = secret.labels().get(admin_secret::ADMIN_SECRET_LABEL)?;
            Some(ObjectRef::<Database>::new(database).within(&secret.namespace()?))
        })
        .owns_stream(streams.statefulsets)
        .owns_stream(streams.config_maps)
        .owns_stream(streams.services)
        .owns_stream(streams.pdbs)
        .owns_stream(streams.cronjobs)
        .owns_stream(streams.secrets)
        .owns_stream(streams.monitors)
        .owns_stream(streams.service_accounts)
        .owns_stream(streams.roles)
        .owns_stream(streams.role_bindings)
        .owns_stream(streams.network_policies)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx);
    drive(outcomes).await;
}

/// One reconcile of one Database: the pipeline, or cleanup once deleted.
pub(crate) async fn reconcile(db: Arc<Database>, ctx: Arc<Context>) -> Result<Action> {
    finalized("database", db, &ctx, FINALIZER, |event, _| async {
        match event {
            Finalizer::Apply(db) => apply(&db, &ctx).await,
            Finalizer::Cleanup(db) => cleanup::run(&db, &ctx).await,
        }
    })
    .await
}

/// What of a Database wakes its controller (see [`run`]), as a hash.
fn wakes(db: &Database) -> Option<u64> {
    predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .combine(predicates::finalizers)
        .combine(drill_verdict)
        .hash_property(db)
}

/// The drill's verdict on a Database (`status.backupVerification`), which
/// the DatabaseBackup controller records and the status step turns into
/// the `BackupVerified` condition: a change of it wakes the Database.
fn drill_verdict(db: &Database) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let verdict = db
        .status
        .as_ref()
        .and_then(|s| s.backup_verification.as_ref());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&verdict)
        .unwrap_or_default()
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// One pass of the pipeline over a Database that is not being deleted.
async fn apply(db: &Database, ctx: &Context) -> Result<Action> {
    let namespace = db
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    // 1. Dereference.
    let name = format!("{namespace}/{}", db.name_any());
    let restore = restore::dereference(db, ctx, &namespace)
        .await
        .within("reading what spec.restore names for", &name)?;
    let live = observe_statefulset(db, ctx, &namespace)
        .await
        .within("reading the StatefulSet of", &name)?;
    let topology = Topology::of(db, live.as_deref());
    // 2. Build.
    let mut desired =
        Desired::build_with(db, &ctx.settings.agent_image, restore.source(), topology).isolate(
            db,
            &ctx.settings.operator_namespace,
            network_policy::created_isolated(live.as_deref()),
        );
    let built = desired.statefulset.clone();
    let mut pending = desired.settle(db, live.as_deref());
    if let Some(cached) = live.as_deref()
        && (pending.is_some()
            || statefulset::supervisor_image(&built) != statefulset::supervisor_image(cached))
    {
        // Settling compares with, or keeps, the live pod template, which
        // the cache holds only in part (`stores::trim_statefulset`): a
        // template held back, or a new operator's supervisor image, is
        // settled against the whole StatefulSet.
        let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace);
        let whole = fetch(&statefulsets, &db.name_any())
            .await
            .step("reading the StatefulSet of", &name)?;
        if let Some(whole) = whole {
            desired.statefulset = built;
            pending = desired.settle(db, Some(&whole));
        }
    }
    // 3. Apply.
    let mut applied = children::apply(db, ctx, &namespace, desired, restore, pending, live)
        .await
        .within("applying the children of", &name)?;
    let replication = replication::reconcile(db, ctx, &namespace, topology)
        .await
        .within("the replication step of", &name)?;
    applied.replication = Some(replication);
    // 4. Status.
    status::update(db, ctx, &namespace, applied)
        .await
        .within("writing the status of", &name)
}

/// The Database's live StatefulSet: whether its pods stream from a primary
/// or are servers of their own ([`Topology::of`]), and whether it was
/// created isolated ([`network_policy::created_isolated`]).
async fn observe_statefulset(
    db: &Database,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<Arc<StatefulSet>>> {
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace);
    Ok(cached_or_fetch(
        &ctx.stores.statefulsets.store,
        &statefulsets,
        &db.name_any(),
        namespace,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::wakes;
    use database_operator_api::v1::Engine;
    use database_operator_api::v1::database::{DatabaseStatus, Phase};

    #[test]
    fn its_own_status_writes_do_not_wake_a_database_but_the_user_and_a_drill_do() {
        let mut db = crate::fixtures::database("ledger", Engine::Postgresql, "16", 1);
        db.metadata.generation = Some(1);
        let before = wakes(&db);
        db.status = Some(DatabaseStatus {
            phase: Some(Phase::Running),
            ..Default::default()
        });
        db.metadata.resource_version = Some("7".into());
        assert_eq!(wakes(&db), before, "the operator's own status write");

        let mut drilled = db.clone();
        drilled.status.as_mut().unwrap().backup_verification = Some(
            serde_json::from_value(serde_json::json!({
                "result": "Failed", "job": "x-verify-1", "message": "reported no result"
            }))
            .unwrap(),
        );
        assert_ne!(wakes(&drilled), before, "a drill's verdict");

        let mut edited = db.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(wakes(&edited), before, "a spec change");
        let mut approved = db.clone();
        approved
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("example.com/approve-update".into(), "abc".into());
        assert_ne!(wakes(&approved), before, "an annotation");
        let mut finalized = db;
        finalized.metadata.finalizers = Some(vec![super::FINALIZER.into()]);
        assert_ne!(wakes(&finalized), before, "its finalizer added");
    }
}
