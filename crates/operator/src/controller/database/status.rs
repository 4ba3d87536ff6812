//! Computes a Database's status from what the cluster reports. Pure: the
//! controller writes the result only when it differs from the live status.

use api::condition::{self, Condition, set_condition, types};
use api::database::{DatabaseStatus, Endpoints, Phase};
use api::restore::{RestorePhase, RestoreStatus, VerificationResult};
use api::{ConditionStatus, Database};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::builders::meta::{Names, selector_string};
use crate::builders::service::endpoint;
use crate::engine::driver;

/// Why the spec cannot be realised, for the Failed phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
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
pub fn desired_status(
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
        return if o.replicas == 0 {
            (
                Phase::Pending,
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
    let engine = driver(db.spec.engine);
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

/// Whether the Ready condition holds in a status.
pub fn is_ready(status: &DatabaseStatus) -> bool {
    condition::find(&status.conditions, types::READY)
        .is_some_and(|c| c.status == ConditionStatus::True)
}
