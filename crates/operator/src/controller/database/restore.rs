//! spec.restore: fills a new Database from a backup, once.
//!
//! Each reconcile takes the next step and reports it: resolve the source
//! (a completed DatabaseBackup, or a location in a bucket; the pipeline's
//! dereference step, [`dereference`]), wait for the primary to accept
//! connections, start the restore Job that the build step made from that
//! source, follow it ([`progress`]). A
//! Completed or Failed restore is final: nothing here runs again, and at
//! steady state this costs no API call. The agent refuses a server that
//! holds data unless spec.restore.force, so a restore never runs over data
//! without being asked.

use database_operator_api::agent::{self, RestoreReport};
use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::database::S3Destination;
use database_operator_api::v1::restore::{
    BackupLocation, RestorePhase, RestoreSpec, RestoreStatus,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::builders::RestoreFrom;
use crate::builders::backup_job::S3Target;
use crate::builders::meta::Names;
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::events::publish;
use crate::controller::shared::jobs::{Outcome, agent_error, agent_output, outcome};
use crate::error::is_conflict;
use crate::error::{Error, Result};

/// What `spec.restore` points at: the pipeline's dereference step. Reads
/// only; a finished restore costs no API call.
pub(crate) async fn dereference(db: &Database, ctx: &Context, namespace: &str) -> Result<Plan> {
    let Some(spec) = &db.spec.restore else {
        return Ok(Plan::None);
    };
    let previous = previous(db);
    if previous.phase.is_some_and(RestorePhase::is_terminal) {
        return Ok(Plan::Done(previous));
    }
    resolve(db, ctx, namespace, spec).await
}

/// The restore's status after this step; `None` when spec.restore is unset.
/// `job` is the restore Job the build step made from the resolved source.
pub(crate) async fn progress(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    statefulset: Option<&StatefulSet>,
    plan: Plan,
    job: Option<Job>,
) -> Result<Option<RestoreStatus>> {
    let previous = previous(db);
    let source = match plan {
        Plan::None => return Ok(None),
        Plan::Done(status) => return Ok(Some(status)),
        Plan::Ready(source) => source,
        Plan::Waiting(message) => {
            return Ok(Some(step(&previous, RestorePhase::Pending, None, message)));
        }
        Plan::Impossible(message) => {
            return Ok(Some(fail(db, ctx, &previous, None, message).await));
        }
    };
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), namespace);
    let name = Names(&db.name_any()).restore();
    let job = match jobs.get_opt(&name).await? {
        Some(job) => job,
        None => {
            let primary_ready = statefulset
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                > 0;
            if !primary_ready {
                return Ok(Some(step(
                    &previous,
                    RestorePhase::Pending,
                    Some(&source),
                    "waiting for the primary to accept connections".into(),
                )));
            }
            let Some(job) = job else {
                return Err(Error::MissingField(
                    "the restore Job built from spec.restore",
                ));
            };
            let created = match jobs.create(&PostParams::default(), &job).await {
                Ok(job) => job,
                Err(e) if is_conflict(&e) => jobs.get(&name).await?,
                Err(e) => return Err(e.into()),
            };
            info!(database = %db.name_any(), namespace, source = %source.location.url(), "started the restore");
            publish(
                ctx,
                db,
                EventType::Normal,
                "RestoreStarted",
                format!("restoring {} (Job {name})", source.location.url()),
            )
            .await;
            created
        }
    };
    match outcome(&job) {
        Outcome::Running => {
            let mut status = step(
                &previous,
                RestorePhase::Running,
                Some(&source),
                format!("Job {name} is loading the dump"),
            );
            status.start_time = job
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or(status.start_time);
            Ok(Some(status))
        }
        Outcome::Succeeded { at } => {
            let output = agent_output(&ctx.client, namespace, &name, "restore").await?;
            let message = match output.as_deref().and_then(agent::parse::<RestoreReport>) {
                Some(r) => format!(
                    "restored {} ({} bytes, checksum verified) in {}s",
                    source.location.url(),
                    r.size_bytes,
                    r.restore_seconds
                ),
                None => format!("Job {name} succeeded; the agent reported no details"),
            };
            let mut status = step(&previous, RestorePhase::Completed, Some(&source), message);
            status.completion_time = at.or_else(|| Some(now()));
            publish(
                ctx,
                db,
                EventType::Normal,
                "Restored",
                status.message.clone(),
            )
            .await;
            Ok(Some(status))
        }
        Outcome::Failed { message, .. } => {
            let output = agent_output(&ctx.client, namespace, &name, "restore").await?;
            let why = output
                .as_deref()
                .and_then(agent_error)
                .or(output)
                .unwrap_or(message);
            Ok(Some(fail(db, ctx, &previous, Some(&source), why).await))
        }
    }
}

/// Where the backup is and how to reach it.
pub(crate) struct Source {
    location: BackupLocation,
    target: S3Target,
    backup_name: Option<String>,
}

/// `spec.restore`, resolved.
pub(crate) enum Plan {
    /// The Database restores nothing.
    None,
    /// Completed or Failed: final, nothing runs again.
    Done(RestoreStatus),
    /// The backup to restore, and how to reach it.
    Ready(Box<Source>),
    /// Not yet: the backup is still running, or does not exist yet.
    Waiting(String),
    /// Never: say why.
    Impossible(String),
}

impl Plan {
    /// What the restore Job reads, once the source is known.
    pub(crate) fn source(&self) -> Option<RestoreFrom<'_>> {
        match self {
            Plan::Ready(source) => Some(RestoreFrom {
                target: &source.target,
                key: &source.location.key,
            }),
            _ => None,
        }
    }
}

fn previous(db: &Database) -> RestoreStatus {
    db.status
        .as_ref()
        .and_then(|s| s.restore.clone())
        .unwrap_or_default()
}

async fn resolve(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    spec: &RestoreSpec,
) -> Result<Plan> {
    if let Some(s3) = &spec.s3 {
        let Some(location) = BackupLocation::parse(&s3.location) else {
            return Ok(Plan::Impossible(format!(
                "spec.restore.s3.location {:?} does not name a backup (s3://bucket/prefix/backup)",
                s3.location
            )));
        };
        return Ok(Plan::Ready(Box::new(Source {
            target: S3Target::source(s3, &location),
            location,
            backup_name: None,
        })));
    }
    let Some(reference) = &spec.backup_ref else {
        return Ok(Plan::Impossible(
            "spec.restore names neither backupRef nor s3".into(),
        ));
    };
    let name = &reference.name;
    let Some(backup) = Api::<DatabaseBackup>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(Plan::Waiting(format!(
            "waiting for DatabaseBackup {name} to exist"
        )));
    };
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Completed) => {}
        Some(BackupPhase::Failed) => {
            return Ok(Plan::Impossible(format!(
                "DatabaseBackup {name} failed; restore from another backup"
            )));
        }
        _ => {
            return Ok(Plan::Waiting(format!(
                "waiting for DatabaseBackup {name} to complete"
            )));
        }
    }
    let Some(location) = status.location.as_deref().and_then(BackupLocation::parse) else {
        return Ok(Plan::Impossible(format!(
            "DatabaseBackup {name} records no location (its agent reported none)"
        )));
    };
    // The bucket's endpoint and credentials: this Database's own destination
    // when it is the same bucket, else the backed-up Database's.
    let source_db = &backup.spec.database_ref.name;
    let mut candidates = vec![destination(db)];
    if source_db != &db.name_any()
        && let Some(other) = Api::<Database>::namespaced(ctx.client.clone(), namespace)
            .get_opt(source_db)
            .await?
    {
        candidates.push(destination(&other));
    }
    let Some(s3) = candidates
        .into_iter()
        .flatten()
        .find(|s3| s3.bucket == location.bucket)
    else {
        return Ok(Plan::Impossible(format!(
            "no S3 settings for bucket {:?}: set spec.backup.destination.s3 for that bucket, \
             or use spec.restore.s3 with its endpoint and credentials",
            location.bucket
        )));
    };
    Ok(Plan::Ready(Box::new(Source {
        target: S3Target::at_location(&s3, &location),
        location,
        backup_name: Some(name.clone()),
    })))
}

fn destination(db: &Database) -> Option<S3Destination> {
    db.spec.backup.as_ref()?.destination.as_ref()?.s3.clone()
}

/// The previous status moved to `phase` with `message`.
fn step(
    previous: &RestoreStatus,
    phase: RestorePhase,
    source: Option<&Source>,
    message: String,
) -> RestoreStatus {
    let mut status = RestoreStatus {
        phase: Some(phase),
        message,
        ..previous.clone()
    };
    if let Some(source) = source {
        status.source = Some(source.location.url());
        status.backup_name = source.backup_name.clone();
    }
    status
}

async fn fail(
    db: &Database,
    ctx: &Context,
    previous: &RestoreStatus,
    source: Option<&Source>,
    message: String,
) -> RestoreStatus {
    let mut status = step(previous, RestorePhase::Failed, source, message);
    status.completion_time = Some(now());
    publish(
        ctx,
        db,
        EventType::Warning,
        "RestoreFailed",
        status.message.clone(),
    )
    .await;
    status
}
