//! The DatabaseBackup controller: one backup Job per DatabaseBackup, and the
//! backup's status read from the Job and from what the agent reported.
//!
//! On-demand backups get a Job named after the DatabaseBackup, owned by it.
//! Scheduled runs are Jobs the CronJob creates; [`adopt_scheduled_runs`]
//! gives each one a DatabaseBackup of the same name, so `kubectl get
//! databasebackups` lists every backup of a Database.

pub mod drills;
pub(crate) mod retention;

use database_operator_api::v1;
use std::collections::BTreeMap;
use std::sync::Arc;

use database_operator_api::agent::{self, BackupReport};
use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup, DatabaseBackupStatus};
use database_operator_api::v1::condition::{Condition, set_condition, types};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::patch_params;
use crate::builders::backup_job::on_demand_job;
use crate::builders::cronjob::{BACKUP_STAGE_LABEL, SCHEDULE_LABEL, STAGE_UPLOAD};
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::jobs::{self, Outcome};
use crate::controller::shared::reconcile::{
    drive, error_policy, instrumented, key, scoped_controller,
};
use crate::controller::shared::requeue;
use crate::error::is_conflict;
use crate::error::{Error, Result};

/// Label on every DatabaseBackup naming its Database, for retention.
pub const DATABASE_LABEL: &str = "example.com/database";

/// Runs the DatabaseBackup controller and the adopter of scheduled runs.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let scope = &ctx.settings.scope;
    let controller = scoped_controller::<DatabaseBackup>(&ctx);
    ctx.health.track_store("databasebackup", controller.store());
    ctx.metrics.inventory.watch_backups(controller.store());
    let controller = controller
        .owns_stream(scope.touched::<Job>(
            &client,
            &watcher::Config::default().labels(&crate::controller::shared::stores::managed_selector()),
        ))
        // Scheduled Jobs are the CronJob's, not the record's: map them by name.
        .watches_stream(
            scope.touched::<Job>(&client, &watcher::Config::default().labels(SCHEDULE_LABEL)),
            |job| {
                let namespace = job.namespace().unwrap_or_default();
                Some(ObjectRef::<DatabaseBackup>::new(&job.name_any()).within(&namespace))
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone());
    // The adopter watches forever; it stops when the controller stops (on
    // SIGTERM), or the process would never exit.
    tokio::select! {
        () = drive(controller) => {}
        () = adopt_scheduled_runs(ctx.clone()) => {}
        () = drills::record_drills(ctx) => {}
    }
}

/// Gives every scheduled backup Job that uploads a DatabaseBackup record.
async fn adopt_scheduled_runs(ctx: Arc<Context>) {
    let selector = format!("{SCHEDULE_LABEL},{BACKUP_STAGE_LABEL}={STAGE_UPLOAD}");
    jobs::for_each_job(
        ctx,
        &selector,
        "record a scheduled backup",
        |ctx, job| async move { record_scheduled_run(&ctx, &job).await },
    )
    .await;
}

async fn record_scheduled_run(ctx: &Context, job: &Job) -> Result<()> {
    let namespace = job
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let Some(database) = job.labels().get(SCHEDULE_LABEL).cloned() else {
        return Ok(());
    };
    let backups = Api::<DatabaseBackup>::namespaced(ctx.client.clone(), &namespace);
    if backups.get_metadata_opt(&job.name_any()).await?.is_some() {
        return Ok(());
    }
    let mut record = DatabaseBackup::new(
        &job.name_any(),
        v1::backup::DatabaseBackupSpec {
            database_ref: v1::DatabaseRef {
                name: database.clone(),
            },
        },
    );
    record.metadata.namespace = Some(namespace);
    record.metadata.labels = Some(BTreeMap::from([
        (DATABASE_LABEL.to_owned(), database),
        (
            v1::labels::MANAGED_BY.to_owned(),
            v1::labels::OPERATOR.to_owned(),
        ),
    ]));
    match backups.create(&PostParams::default(), &record).await {
        Ok(_) => {
            info!(backup = %job.name_any(), "recorded a scheduled backup");
            Ok(())
        }
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn reconcile(backup: Arc<DatabaseBackup>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(
        "databasebackup",
        &*backup,
        &ctx,
        reconcile_inner(&backup, &ctx),
    )
    .await
}

async fn reconcile_inner(backup: &DatabaseBackup, ctx: &Context) -> Result<Action> {
    let namespace = backup
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let previous = backup.status.clone().unwrap_or_default();
    // A finished backup's outcome never changes.
    if matches!(
        previous.phase,
        Some(BackupPhase::Completed | BackupPhase::Failed)
    ) {
        return Ok(Action::await_change());
    }
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    let job = match jobs.get_opt(&backup.name_any()).await? {
        Some(job) => Some(job),
        None => match start_job(backup, ctx, &namespace, &jobs).await? {
            Ok(job) => Some(job),
            Err(message) => {
                let status = finished_status(
                    backup,
                    &previous,
                    BackupPhase::Failed,
                    "NotConfigured",
                    message,
                );
                write_status(backup, ctx, &namespace, previous, status).await?;
                return Ok(Action::await_change());
            }
        },
    };
    let status = observe(backup, ctx, &namespace, &previous, job.as_ref()).await?;
    let done = matches!(
        status.phase,
        Some(BackupPhase::Completed | BackupPhase::Failed)
    );
    let completed = status.phase == Some(BackupPhase::Completed);
    write_status(backup, ctx, &namespace, previous, status).await?;
    if completed {
        retention::apply(ctx, &namespace, &backup.spec.database_ref.name).await?;
    }
    Ok(if done {
        Action::await_change()
    } else {
        Action::requeue(requeue::WHILE_BACKING_UP)
    })
}

/// Creates the Job of an on-demand backup; `Err` says why it cannot run.
async fn start_job(
    backup: &DatabaseBackup,
    ctx: &Context,
    namespace: &str,
    jobs: &Api<Job>,
) -> Result<std::result::Result<Job, String>> {
    let db_name = &backup.spec.database_ref.name;
    let Some(db) = Api::<Database>::namespaced(ctx.client.clone(), namespace)
        .get_opt(db_name)
        .await?
    else {
        return Ok(Err(format!("Database {db_name} does not exist")));
    };
    let Some(s3) = db
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.destination.as_ref())
        .and_then(|d| d.s3.as_ref())
    else {
        return Ok(Err(format!(
            "Database {db_name} has no spec.backup.destination.s3 to store the backup in"
        )));
    };
    let job = on_demand_job(backup, &db, s3, &ctx.settings.agent_image)
        .ok_or(Error::MissingField("metadata.uid"))?;
    match jobs.create(&PostParams::default(), &job).await {
        Ok(job) => Ok(Ok(job)),
        Err(e) if is_conflict(&e) => Ok(Ok(jobs.get(&backup.name_any()).await?)),
        Err(e) => Err(e.into()),
    }
}

/// The status the Job says the backup has.
async fn observe(
    backup: &DatabaseBackup,
    ctx: &Context,
    namespace: &str,
    previous: &DatabaseBackupStatus,
    job: Option<&Job>,
) -> Result<DatabaseBackupStatus> {
    let job_status = job.and_then(|j| j.status.clone()).unwrap_or_default();
    let finished = job.map_or(Outcome::Running, jobs::outcome);
    if let Outcome::Failed { message, .. } = finished {
        let detail = agent_output(ctx, namespace, &backup.name_any())
            .await?
            .unwrap_or_default();
        let message = format!("{message}: {}", detail.trim());
        return Ok(finished_status(
            backup,
            previous,
            BackupPhase::Failed,
            "BackupFailed",
            message,
        ));
    }
    if let Outcome::Succeeded { .. } = finished {
        let output = agent_output(ctx, namespace, &backup.name_any()).await?;
        let report = output.as_deref().and_then(agent::parse::<BackupReport>);
        let mut status = finished_status(
            backup,
            previous,
            BackupPhase::Completed,
            "BackupCompleted",
            match &report {
                Some(r) => format!("stored {} bytes at {}", r.size_bytes, r.location),
                None => "the Job succeeded but the agent reported no result".into(),
            },
        );
        status.start_time = job_status.start_time.clone();
        status.completion_time = job_status.completion_time.clone();
        if let Some(report) = report {
            status.location = Some(report.location);
            status.size_bytes = i64::try_from(report.size_bytes).ok();
            status.checksum = Some(report.sha256);
            status.start_time = report.start_time.or(status.start_time);
            status.completion_time = report.completion_time.or(status.completion_time);
        }
        return Ok(status);
    }
    let running = job_status.active.unwrap_or(0) > 0;
    let mut status = DatabaseBackupStatus {
        phase: Some(if running {
            BackupPhase::Running
        } else {
            BackupPhase::Pending
        }),
        start_time: job_status.start_time,
        observed_generation: backup.metadata.generation,
        ..previous.clone()
    };
    let message = if running {
        "the backup Job is running"
    } else {
        "waiting for the backup Job to start"
    };
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::READY,
            false,
            if running { "Running" } else { "Pending" },
            message,
            backup.metadata.generation,
        ),
        &now(),
    );
    Ok(status)
}

fn finished_status(
    backup: &DatabaseBackup,
    previous: &DatabaseBackupStatus,
    phase: BackupPhase,
    reason: &str,
    message: String,
) -> DatabaseBackupStatus {
    let mut status = DatabaseBackupStatus {
        phase: Some(phase),
        observed_generation: backup.metadata.generation,
        ..previous.clone()
    };
    let ok = phase == BackupPhase::Completed;
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::READY,
            ok,
            reason,
            message,
            backup.metadata.generation,
        ),
        &now(),
    );
    status
}

async fn agent_output(ctx: &Context, namespace: &str, job: &str) -> Result<Option<String>> {
    jobs::agent_output(&ctx.client, namespace, job, "backup").await
}

async fn write_status(
    backup: &DatabaseBackup,
    ctx: &Context,
    namespace: &str,
    previous: DatabaseBackupStatus,
    status: DatabaseBackupStatus,
) -> Result<()> {
    if status == previous {
        return Ok(());
    }
    let params = patch_params();
    Api::<DatabaseBackup>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &backup.name_any(),
            &params,
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    if status.phase != previous.phase {
        info!(backup = %key(backup), phase = ?status.phase, "backup phase changed");
        // Counted here, on the one write that moves it to a final phase
        // (a finished backup is never reconciled again), not per reconcile.
        if let Some(phase @ (BackupPhase::Completed | BackupPhase::Failed)) = status.phase {
            ctx.metrics.backup_finished(
                namespace,
                &backup.spec.database_ref.name,
                phase == BackupPhase::Completed,
            );
        }
    }
    Ok(())
}
