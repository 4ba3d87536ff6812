//! `spec.backup.method: velero`: keeps one `velero.io/v1` Schedule per
//! Database in Velero's namespace, and removes it when the Database stops
//! asking for it (backups off, another method, deletion).
//!
//! A Schedule in another namespace cannot carry an owner reference, so it is
//! found by the labels that name its Database. The `BackupConfigured`
//! condition says what happened; its presence also tells a later reconcile
//! that a Schedule may exist and must be looked for when the method changes.

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, find, types};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::apply_if_changed;
use crate::builders::velero::{SOURCE_NAME_LABEL, SOURCE_NAMESPACE_LABEL, source_selector};
use crate::controller::Context;
use crate::controller::shared::events::publish;
use crate::controller::shared::requeue;
use crate::controller::shared::stores::is_established;
use crate::error::{Result, describe, is_not_found, is_permanent};
use crate::velero::{SCHEDULE_CRD, Schedule};

/// What the Velero step wants recorded.
#[derive(Debug, PartialEq)]
pub(crate) enum Report {
    /// Nothing to do with Velero: leave the conditions alone.
    Untouched,
    /// Set the BackupConfigured condition; look again after `retry`, if any.
    Condition(Condition, Option<Duration>),
    /// The Schedules are gone: drop the BackupConfigured condition.
    Removed,
}

/// Removes the Schedules of a Database that no longer asks for one. Only
/// looks when the `BackupConfigured` condition says one may exist, so a
/// Database that never used Velero costs no API call.
pub(crate) async fn remove_unwanted(
    db: &Database,
    ctx: &Context,
    namespace: &str,
) -> Result<Report> {
    let had_schedule = db
        .status
        .as_ref()
        .is_some_and(|s| find(&s.conditions, types::BACKUP_CONFIGURED).is_some());
    if !had_schedule {
        return Ok(Report::Untouched);
    }
    remove_schedules(db, ctx, namespace, None).await?;
    Ok(Report::Removed)
}

/// Makes the Velero Schedule of `db` match `desired`, built from its spec.
pub(crate) async fn reconcile(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    desired: Schedule,
) -> Result<Report> {
    let generation = db.metadata.generation;
    if !schedule_crd_installed(ctx).await? {
        return Ok(Report::Condition(
            Condition::new(
                types::BACKUP_CONFIGURED,
                false,
                "VeleroNotInstalled",
                format!(
                    "spec.backup.method is velero, but the CustomResourceDefinition {SCHEDULE_CRD} is not installed: install Velero, or use method agent"
                ),
                generation,
            ),
            None,
        ));
    }
    let target_ns = desired.namespace().unwrap_or_default();
    if !ctx.settings.scope.contains(&target_ns) {
        return Ok(Report::Condition(
            Condition::new(
                types::BACKUP_CONFIGURED,
                false,
                "VeleroNamespaceNotWatched",
                format!(
                    "spec.backup.velero.namespace {target_ns} is outside the operator's {}: add it to WATCH_NAMESPACES, where the operator gets a Role",
                    ctx.settings.scope
                ),
                generation,
            ),
            None,
        ));
    }
    let target = ObjectRef::<Schedule>::new(&desired.name_any()).within(&target_ns);
    // Schedules of this Database elsewhere (Velero's namespace changed).
    let ours = remove_schedules(db, ctx, namespace, Some(&target)).await?;
    let api = Api::<Schedule>::namespaced(ctx.client.clone(), &target_ns);
    let live = match ours {
        Some(live) => Some(live),
        None => match api.get_opt(&desired.name_any()).await? {
            Some(other) => {
                return Ok(Report::Condition(
                    Condition::new(
                        types::BACKUP_CONFIGURED,
                        false,
                        "ScheduleNameTaken",
                        format!(
                            "velero.io Schedule {target_ns}/{} exists and does not belong to this Database (it belongs to {}); rename or delete it",
                            other.name_any(),
                            owner_of(&other).unwrap_or_else(|| "no Database".into())
                        ),
                        generation,
                    ),
                    Some(requeue::AFTER_REFUSAL),
                ));
            }
            None => None,
        },
    };
    let schedule = desired.spec.schedule.clone();
    let name = desired.name_any();
    let created = live.is_none();
    match apply_if_changed(&api, desired, live.as_ref()).await {
        Ok(wrote) => {
            if wrote {
                info!(database = %db.name_any(), namespace, schedule = %format!("{target_ns}/{name}"), "applied Velero Schedule");
            }
            if created {
                publish(
                    ctx,
                    db,
                    EventType::Normal,
                    "VeleroScheduleCreated",
                    format!("created velero.io Schedule {target_ns}/{name}"),
                )
                .await;
            }
            Ok(Report::Condition(
                Condition::new(
                    types::BACKUP_CONFIGURED,
                    true,
                    "VeleroScheduleApplied",
                    format!(
                        "velero.io/v1 Schedule {target_ns}/{name} backs this database up on \"{schedule}\""
                    ),
                    generation,
                ),
                None,
            ))
        }
        Err(error) if is_permanent(&error) => Ok(Report::Condition(
            Condition::new(
                types::BACKUP_CONFIGURED,
                false,
                "ScheduleRejected",
                format!(
                    "the API server refused velero.io Schedule {target_ns}/{name}: {}",
                    describe(&error)
                ),
                generation,
            ),
            Some(requeue::AFTER_REFUSAL),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Deletes every Schedule of `db` except `keep`, which is returned if it
/// exists. No Schedule CRD means no Schedules.
pub(crate) async fn remove_schedules(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    keep: Option<&ObjectRef<Schedule>>,
) -> Result<Option<Schedule>> {
    let mut listed = Vec::new();
    for api in ctx.settings.scope.apis::<Schedule>(&ctx.client) {
        match api
            .list(&ListParams::default().labels(&source_selector(namespace, &db.name_any())))
            .await
        {
            Ok(list) => listed.extend(list.items),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
    }
    let mut kept = None;
    for schedule in listed {
        if keep.is_some_and(|k| *k == ObjectRef::from_obj(&schedule)) {
            kept = Some(schedule);
            continue;
        }
        let ns = schedule.namespace().unwrap_or_default();
        let api = Api::<Schedule>::namespaced(ctx.client.clone(), &ns);
        if crate::apply::delete(&api, &schedule.name_any()).await? > 0 {
            let which = format!("{ns}/{}", schedule.name_any());
            info!(database = %db.name_any(), namespace, schedule = %which, "deleted Velero Schedule");
            publish(
                ctx,
                db,
                EventType::Normal,
                "VeleroScheduleDeleted",
                format!("deleted velero.io Schedule {which}; its Backups are kept"),
            )
            .await;
        }
    }
    Ok(kept)
}

/// Whether the Schedule CRD is installed and served: from the watch's
/// cache, or the API server when the cache has not seen it (yet).
async fn schedule_crd_installed(ctx: &Context) -> Result<bool> {
    if let Some(crd) = ctx
        .stores
        .velero_crd
        .get(&ObjectRef::<CustomResourceDefinition>::new(SCHEDULE_CRD))
    {
        return Ok(is_established(&crd));
    }
    let crds = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    Ok(crds
        .get_opt(SCHEDULE_CRD)
        .await?
        .is_some_and(|crd| is_established(&crd)))
}

/// `namespace/name` of the Database a Schedule's labels name.
fn owner_of(schedule: &Schedule) -> Option<String> {
    let labels = schedule.labels();
    Some(format!(
        "Database {}/{}",
        labels.get(SOURCE_NAMESPACE_LABEL)?,
        labels.get(SOURCE_NAME_LABEL)?
    ))
}
