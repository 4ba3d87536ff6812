//! The status step: a Database's status computed from what the apply step
//! observed ([`desired_status`], pure), written only when it differs from
//! the live status, with an event for each phase change a user should see.

#[cfg(test)]
mod tests;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{self, Condition, set_condition, types};
use database_operator_api::v1::database::{DatabaseStatus, Endpoints, Phase};
use database_operator_api::v1::restore::{RestorePhase, RestoreStatus, VerificationResult};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::time::Duration;

use kube::Api;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, info};

use super::children::Applied;
use super::velero;
use crate::apply::patch_params;
use crate::builders::meta::{Names, selector_string};
use crate::builders::service::endpoint;
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::events::publish;
use crate::controller::shared::reconcile::key;
use crate::controller::shared::requeue;
use crate::engine::driver_of;
use crate::error::Result;
use crate::error::is_conflict;

/// Why the spec cannot be realised, for the Failed phase.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    /// One CamelCase word.
    pub reason: String,
    /// What went wrong, for a person; never a secret.
    pub message: String,
}

/// What the StatefulSet says about the pods.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Observed {
    /// The StatefulSet's desired replicas, as last accepted.
    spec_replicas: i32,
    /// Pods that exist.
    replicas: i32,
    ready: i32,
    /// Every pod runs the latest template and the controller has seen it.
    rollout_done: bool,
}

impl Observed {
    fn from(sts: &StatefulSet) -> Self {
        let spec_replicas = sts.spec.replicas.unwrap_or(1);
        let Some(status) = sts.status.as_ref() else {
            return Self {
                spec_replicas,
                ..Default::default()
            };
        };
        let seen = status.observed_generation.unwrap_or(0) >= sts.metadata.generation.unwrap_or(0);
        let same_revision =
            status.update_revision.is_none() || status.current_revision == status.update_revision;
        let updated = status.updated_replicas.unwrap_or(0) >= spec_replicas;
        Self {
            spec_replicas,
            replicas: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            rollout_done: seen && (same_revision || updated),
        }
    }
}

/// The status `db` should have, given its StatefulSet (if the cache has it),
/// a failure (if applying the spec failed) and the restore's progress (when
/// spec.restore asks for one; `None` keeps what the status recorded).
pub(crate) fn desired_status(
    db: &Database,
    statefulset: Option<&StatefulSet>,
    failure: Option<&Failure>,
    restore: Option<&RestoreStatus>,
    now: &Time,
) -> DatabaseStatus {
    let previous = db.status.clone().unwrap_or_default();
    let desired = db.spec.replicas;
    let observed = statefulset.map(Observed::from);
    let ever_ran = previous.current_version.is_some();
    let restore = restore.cloned().or(previous.restore.clone());
    // A restore asked for and not done holds the database back from Running:
    // its server is up, but the data is not there yet.
    let restoring = restore
        .as_ref()
        .filter(|_| db.spec.restore.is_some())
        .filter(|r| r.phase != Some(RestorePhase::Completed));
    let restore_failure = restoring
        .filter(|r| r.phase == Some(RestorePhase::Failed))
        .map(|r| Failure {
            reason: "RestoreFailed".into(),
            message: format!(
                "restoring {} failed: {}",
                r.source.as_deref().unwrap_or("the backup"),
                r.message
            ),
        });

    let (phase, detail, lost_replicas) = match (failure.or(restore_failure.as_ref()), observed) {
        (Some(f), _) => (Phase::Failed, f.message.clone(), false),
        (None, None) => (
            Phase::Pending,
            "waiting for the StatefulSet".to_owned(),
            false,
        ),
        (None, Some(o)) => match (phase_from(o, desired, ever_ran, previous.phase), restoring) {
            ((Phase::Running, counts, lost), Some(r)) if !ever_ran => (
                Phase::Creating,
                format!("{counts}; restoring: {}", r.message),
                lost,
            ),
            (found, _) => found,
        },
    };
    let failure = failure.or(restore_failure.as_ref());

    let mut status = DatabaseStatus {
        phase: Some(phase),
        conditions: previous.conditions.clone(),
        endpoints: Some(endpoints(db)),
        observed_generation: db.metadata.generation,
        replicas: observed.map(|o| o.replicas),
        ready_replicas: observed.map(|o| o.ready),
        selector: Some(selector_string(db)),
        current_version: if phase == Phase::Running {
            Some(db.spec.version.clone())
        } else {
            previous.current_version.clone()
        },
        restore,
        backup_verification: previous.backup_verification.clone(),
        replication: previous.replication.clone(),
    };
    let generation = db.metadata.generation;
    let ready = phase == Phase::Running;
    let progressing = matches!(
        phase,
        Phase::Pending | Phase::Creating | Phase::Scaling | Phase::Updating
    );
    let degraded = phase == Phase::Failed || lost_replicas;
    let reason = match failure {
        Some(f) => f.reason.clone(),
        None => phase.to_string(),
    };
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::READY,
            ready,
            if ready { "AllReplicasReady" } else { &reason },
            detail.clone(),
            generation,
        ),
        now,
    );
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::PROGRESSING,
            progressing,
            if progressing {
                &reason
            } else {
                "ReconcileComplete"
            },
            if progressing {
                detail.clone()
            } else {
                String::new()
            },
            generation,
        ),
        now,
    );
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::DEGRADED,
            degraded,
            if degraded { &reason } else { "AsExpected" },
            if degraded { detail } else { String::new() },
            generation,
        ),
        now,
    );
    set_restore_and_drill_conditions(&mut status, generation, now);
    status
}

/// `Restored` while a restore is recorded, `BackupVerified` once a drill ran.
fn set_restore_and_drill_conditions(
    status: &mut DatabaseStatus,
    generation: Option<i64>,
    now: &Time,
) {
    if let Some(restore) = &status.restore {
        let phase = restore.phase.unwrap_or(RestorePhase::Pending);
        let done = phase == RestorePhase::Completed;
        let condition = Condition::new(
            types::RESTORED,
            done,
            match phase {
                RestorePhase::Completed => "RestoreCompleted",
                RestorePhase::Failed => "RestoreFailed",
                RestorePhase::Running => "RestoreRunning",
                RestorePhase::Pending => "RestorePending",
            },
            restore.message.clone(),
            generation,
        );
        set_condition(&mut status.conditions, condition, now);
    }
    if let Some(drill) = &status.backup_verification {
        let passed = drill.result == VerificationResult::Passed;
        let condition = Condition::new(
            types::BACKUP_VERIFIED,
            passed,
            if passed { "DrillPassed" } else { "DrillFailed" },
            drill.message.clone(),
            generation,
        );
        set_condition(&mut status.conditions, condition, now);
    }
}

/// The phase, a message, and whether replicas were lost without anyone asking
/// for a change (which makes the Database Degraded).
fn phase_from(
    o: Observed,
    desired: i32,
    ever_ran: bool,
    previous: Option<Phase>,
) -> (Phase, String, bool) {
    let counts = format!("{}/{} replicas ready", o.ready, desired);
    if o.spec_replicas == desired && o.ready == desired && o.replicas == desired && o.rollout_done {
        return (Phase::Running, counts, false);
    }
    if !ever_ran {
        // The StatefulSet exists, so its pods are on their way: Creating
        // from the first status on (Pending is for no StatefulSet yet), so
        // that pods appearing are progress, not a phase change.
        return if o.replicas == 0 {
            (
                Phase::Creating,
                format!("waiting for pods to be created; {counts}"),
                false,
            )
        } else {
            (Phase::Creating, counts, false)
        };
    }
    if o.spec_replicas != desired || o.replicas != desired {
        return (
            Phase::Scaling,
            format!("scaling to {desired}; {counts}"),
            false,
        );
    }
    if !o.rollout_done {
        return (
            Phase::Updating,
            format!("rolling out a new version or configuration; {counts}"),
            false,
        );
    }
    match previous {
        // Pods of a scale-up or rollout exist but are not all ready yet.
        Some(p @ (Phase::Scaling | Phase::Updating)) => (p, counts, false),
        // Ready replicas differ from spec.replicas though nobody asked for a
        // change: the seed calls that Scaling; Degraded says it was not asked for.
        _ => (
            Phase::Scaling,
            format!("replicas became unavailable; {counts}"),
            true,
        ),
    }
}

fn endpoints(db: &Database) -> Endpoints {
    let engine = driver_of(&db.spec);
    let names = Names(&db.name_any());
    Endpoints {
        primary: Some(endpoint(db, engine, &names.primary())),
        readonly: if db.spec.replicas > 1 {
            vec![endpoint(db, engine, &names.readonly())]
        } else {
            Vec::new()
        },
    }
}

/// The status step: computes the status from what the apply step found,
/// writes it if it changed, and says when to look again.
pub(crate) async fn update(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    applied: Applied,
) -> Result<Action> {
    let Applied {
        failure,
        velero,
        statefulset,
        restore,
        replication,
        pending_update,
    } = applied;
    let now = now();
    let mut status = desired_status(
        db,
        statefulset.as_deref(),
        failure.as_ref(),
        restore.as_ref(),
        &now,
    );
    super::monitoring::mirror_condition(db, ctx, &mut status, &now).await?;
    let restoring = restore
        .as_ref()
        .and_then(|r| r.phase)
        .is_some_and(|p| !p.is_terminal());
    let mut next = match failure {
        Some(_) => requeue::AFTER_REFUSAL,
        // The restore Job is not watched: look again soon while it runs.
        None if restoring => requeue::WHILE_RESTORING,
        None => ctx.settings.resync,
    };
    if let Some(report) = replication {
        status.replication = report.status;
        match report.condition {
            Some(condition) => set_condition(&mut status.conditions, condition, &now),
            None => status.conditions.retain(|c| c.type_ != types::REPLICATING),
        }
        if let Some(at) = report.requeue {
            next = next.min(at);
        }
    }
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
    match &pending_update {
        Some(pending) => {
            let was_pending = db
                .status
                .as_ref()
                .and_then(|s| condition::find(&s.conditions, types::UPDATE_PENDING))
                .is_some_and(|c| c.message == pending.message());
            let condition = Condition::new(
                types::UPDATE_PENDING,
                true,
                "OperatorUpdate",
                pending.message(),
                db.metadata.generation,
            );
            set_condition(&mut status.conditions, condition, &now);
            if !was_pending {
                publish(
                    ctx,
                    db,
                    EventType::Normal,
                    "UpdatePending",
                    pending.message(),
                )
                .await;
            }
        }
        None => status
            .conditions
            .retain(|c| c.type_ != types::UPDATE_PENDING),
    }
    if let Some(wait) = write_status_if_changed(db, ctx, namespace, status).await? {
        next = next.min(wait);
    }
    Ok(Action::requeue(next))
}

/// Whether `next` differs from `previous` only in progress: the same phase,
/// on the way somewhere (Pending, Creating, Scaling, Updating), with the
/// same conditions but for their messages, and other pod counts. Such a
/// change is coalesced ([`crate::controller::shared::coalesce`]).
pub(crate) fn progress_only(previous: &DatabaseStatus, next: &DatabaseStatus) -> bool {
    let on_the_way = matches!(
        next.phase,
        Some(Phase::Pending | Phase::Creating | Phase::Scaling | Phase::Updating)
    );
    let without_progress = |status: &DatabaseStatus| {
        let mut status = status.clone();
        status.replicas = None;
        status.ready_replicas = None;
        for condition in &mut status.conditions {
            condition.message.clear();
        }
        status
    };
    on_the_way
        && previous.phase == next.phase
        && without_progress(previous) == without_progress(next)
}

/// What differs between two statuses, for the debug log: top-level
/// fields by name, conditions by type.
pub(crate) fn changed_fields(
    previous: Option<&DatabaseStatus>,
    next: &DatabaseStatus,
) -> Vec<String> {
    let as_map = |status: Option<&DatabaseStatus>| match status.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(previous), as_map(Some(next)));
    let mut changed: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| *k != "conditions" && old.get(*k) != new.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let conditions =
        |status: Option<&DatabaseStatus>| status.map(|s| s.conditions.clone()).unwrap_or_default();
    let (old, new) = (conditions(previous), conditions(Some(next)));
    for c in &new {
        match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o == c => {}
            Some(o) => changed.push(format!(
                "condition {} ({} {:?} -> {} {:?})",
                c.type_, o.reason, o.message, c.reason, c.message
            )),
            None => changed.push(format!("condition {} (new)", c.type_)),
        }
    }
    for o in &old {
        if !new.iter().any(|c| c.type_ == o.type_) {
            changed.push(format!("condition {} (removed)", o.type_));
        }
    }
    changed
}

/// Writes `status` if it differs from the live one, and records an event
/// for each phase transition a user should see. Progress only
/// ([`progress_only`]) within the window of the last write is not written:
/// returns how long until it may be.
async fn write_status_if_changed(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    status: DatabaseStatus,
) -> Result<Option<Duration>> {
    let previous = db.status.as_ref();
    if previous == Some(&status) {
        return Ok(None);
    }
    let key = key(db);
    if previous.is_some_and(|p| progress_only(p, &status))
        && let Some(wait) = ctx.status_writes.wait(&key)
    {
        return Ok(Some(wait));
    }
    let before = previous.and_then(|s| s.phase);
    debug!(
        database = %db.name_any(),
        namespace,
        changed = %changed_fields(previous, &status).join(", "),
        "writing status"
    );
    let api = Api::<Database>::namespaced(ctx.client.clone(), namespace);
    // Only over the version this status was computed from: the drill
    // recorder writes status.backupVerification too, and a status computed
    // from an older copy must not put the old value back.
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": db.resource_version() },
        "status": crate::diff::merge_patch(previous, &status)?,
    });
    let params = patch_params();
    match api
        .patch_status(&db.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Someone (often this operator, a pass ago) wrote after our read:
        // look again once the cache has the newer copy.
        Err(e) if is_conflict(&e) => {
            debug!(database = %db.name_any(), namespace, "status written meanwhile; looking again");
            return Ok(Some(requeue::AFTER_CONFLICT));
        }
        Err(e) => return Err(e.into()),
    }
    ctx.status_writes.wrote(&key);
    if before != status.phase
        && let Some(phase) = status.phase
    {
        announce_phase(db, ctx, before, phase, &status).await;
    }
    Ok(None)
}

async fn announce_phase(
    db: &Database,
    ctx: &Context,
    before: Option<Phase>,
    phase: Phase,
    status: &DatabaseStatus,
) {
    info!(database = %db.name_any(), from = ?before, to = %phase, "phase changed");
    let ready = condition::find(&status.conditions, types::READY);
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
        // A new Database's `Created` event (its StatefulSet, replicas,
        // engine and version) already says it is being created: one event
        // per Database on the way to Running fewer for the API server.
        Phase::Creating | Phase::Pending | Phase::Deleting => return,
    };
    publish(ctx, db, kind, reason, note).await;
}
