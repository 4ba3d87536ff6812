//! What happens when a Database is deleted, before its finalizer is removed.
//!
//! Children go with the garbage collector (owner references). The data
//! volumes do not: a StatefulSet's PersistentVolumeClaims have no owner, and
//! deleting a Database must never silently destroy data. So the finalizer
//! either reports the volumes it keeps (`deletionPolicy: Retain`, the default)
//! or deletes them (`Delete`). Kept volumes are useless without the admin
//! password they were initialised with, so with `Retain` the admin Secret is
//! kept too (its owner reference removed): a Database created again under
//! the same name finds both. It never blocks deletion forever: past a
//! deadline it gives up, records what it left behind, and lets go.

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, set_condition, types};
use database_operator_api::v1::database::{DeletionPolicy, Phase};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::apply::patch_params;
use crate::builders::meta::selector_string;
use crate::builders::velero::source_selector;
use crate::controller::Context;
use crate::controller::shared::clock::{elapsed, now};
use crate::controller::shared::events::publish;
use crate::error::{Error, Result, describe};

/// Runs the cleanup of a Database being deleted.
pub(crate) async fn run(db: &Database, ctx: &Context) -> Result<Action> {
    let namespace = db
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    mark_deleting(db, ctx, &namespace).await?;
    let cleaned = match super::velero::remove_schedules(db, ctx, &namespace, None).await {
        Ok(_) => clean_volumes(db, ctx, &namespace).await,
        Err(error) => Err(error),
    };
    match cleaned {
        Ok(()) => Ok(Action::await_change()),
        Err(error) if past_deadline(&db.metadata, ctx.settings.cleanup_deadline) => {
            let message = format!(
                "gave up cleaning up after {:?}: {error}; the PersistentVolumeClaims selected by {} and the velero.io Schedules labelled {} may be left behind",
                ctx.settings.cleanup_deadline,
                selector_string(db),
                source_selector(&namespace, &db.name_any())
            );
            warn!(database = %db.name_any(), %message, "cleanup abandoned");
            record_cleanup_failure(db, ctx, &namespace, &message).await;
            publish(ctx, db, EventType::Warning, "CleanupAbandoned", message).await;
            Ok(Action::await_change())
        }
        Err(error) => Err(error),
    }
}

/// Whether an object has been waiting for its finalizer longer than `deadline`.
pub(crate) fn past_deadline(meta: &ObjectMeta, deadline: Duration) -> bool {
    let Some(deleted_at) = meta.deletion_timestamp.as_ref() else {
        return false;
    };
    elapsed(deleted_at, &now()).as_secs() >= deadline.as_secs()
}

async fn clean_volumes(db: &Database, ctx: &Context, namespace: &str) -> Result<()> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace);
    let owned = claims
        .list_metadata(&ListParams::default().labels(&selector_string(db)))
        .await?;
    let names: Vec<String> = owned.items.iter().map(ResourceExt::name_any).collect();
    if names.is_empty() {
        return Ok(());
    }
    match db.spec.deletion_policy {
        DeletionPolicy::Retain => {
            let secret = crate::builders::meta::Names(&db.name_any()).secret();
            let kept = keep_admin_secret(ctx, namespace, &secret).await?;
            let with = if kept {
                format!(
                    " and the admin Secret {secret}, which holds the password that data was initialised with"
                )
            } else {
                String::new()
            };
            publish(ctx, db, EventType::Normal, "RetainedVolumes", format!(
                "deletionPolicy is Retain: kept PersistentVolumeClaims {}{with}; delete them to free the storage",
                names.join(", ")
            ))
            .await;
            Ok(())
        }
        DeletionPolicy::Delete => {
            for name in &names {
                crate::apply::delete(&claims, name).await.map_err(|e| {
                    let why = e.as_kube().map_or_else(|| e.to_string(), describe);
                    Error::Cleanup(format!("deleting PersistentVolumeClaim {name}: {why}"))
                })?;
            }
            info!(database = %db.name_any(), volumes = ?names, "deleted data volumes");
            publish(
                ctx,
                db,
                EventType::Normal,
                "DeletedVolumes",
                format!(
                    "deletionPolicy is Delete: deleted PersistentVolumeClaims {}",
                    names.join(", ")
                ),
            )
            .await;
            Ok(())
        }
    }
}

/// Removes the admin Secret's owner references, so that the garbage
/// collector leaves it with the volumes. `false` when there is no Secret.
async fn keep_admin_secret(ctx: &Context, namespace: &str, name: &str) -> Result<bool> {
    let secrets =
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
    crate::apply::patch_metadata(&secrets, name, &patch)
        .await
        .map_err(|e| {
            let why = e.as_kube().map_or_else(|| e.to_string(), describe);
            Error::Cleanup(format!("keeping the admin Secret {name}: {why}"))
        })
}

async fn mark_deleting(db: &Database, ctx: &Context, namespace: &str) -> Result<()> {
    let phase = db.status.as_ref().and_then(|s| s.phase);
    if phase == Some(Phase::Deleting) {
        return Ok(());
    }
    patch_status(
        ctx,
        namespace,
        &db.name_any(),
        serde_json::json!({"status": {"phase": Phase::Deleting}}),
    )
    .await
}

async fn record_cleanup_failure(db: &Database, ctx: &Context, namespace: &str, message: &str) {
    let mut conditions = db
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = now();
    set_condition(
        &mut conditions,
        Condition::new(
            types::CLEANUP_FAILED,
            true,
            "CleanupDeadlineExceeded",
            message,
            db.metadata.generation,
        ),
        &now,
    );
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    if let Err(error) = patch_status(ctx, namespace, &db.name_any(), patch).await {
        warn!(%error, "could not record the CleanupFailed condition");
    }
}

async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> Result<()> {
    let api = Api::<Database>::namespaced(ctx.client.clone(), namespace);
    let params = patch_params();
    api.patch_status(name, &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}
