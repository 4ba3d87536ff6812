//! CronJob `<name>-backup`: the scheduled backup.
//!
//! With `spec.backup.destination.s3` each run is the backup agent streaming
//! a dump to the bucket (see [`super::backup_job`]), and each run's Job
//! becomes a DatabaseBackup record. Without a destination (the seed's
//! `e2e-test-db` has none) there is nowhere to store a backup: each run then
//! takes a full dump from the primary and logs its size and SHA-256, which
//! proves a consistent dump can be taken, and the CronJob's
//! `example.com/backup-stage: dump-only` label and note say that nothing is
//! stored.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::BackupMethod;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::backup_job::backup_pod;
use super::meta::{Names, child_meta, labels};
use super::security::{restricted_container, restricted_pod};
use crate::engine::Driver;

/// Label that tells what a backup run does.
pub const BACKUP_STAGE_LABEL: &str = "example.com/backup-stage";
/// Runs that store a backup in the S3 destination.
pub const STAGE_UPLOAD: &str = "upload";
/// Runs that only prove a dump can be taken: there is no destination.
pub const STAGE_DUMP_ONLY: &str = "dump-only";
/// Label on scheduled backup Jobs naming their Database, so each run
/// becomes a DatabaseBackup.
pub const SCHEDULE_LABEL: &str = "example.com/backup-schedule";
const DUMP_ONLY_NOTE: &str = "spec.backup.destination.s3 is not set, so nothing is stored: each run takes a full \
logical dump from the primary and logs its size and SHA-256.";

/// The backup CronJob, when scheduled backups are enabled.
pub fn backup_cronjob(db: &Database, driver: &dyn Driver, agent_image: &str) -> Option<CronJob> {
    let backup = db.enabled_backup()?;
    if backup.method == BackupMethod::Velero {
        return None;
    }
    let schedule = backup.schedule.clone()?;
    let names = Names(&db.name_any());
    let s3 = backup.destination.as_ref().and_then(|d| d.s3.as_ref());
    let mut job_labels = labels(db, "backup");
    job_labels.insert(
        BACKUP_STAGE_LABEL.to_owned(),
        if s3.is_some() {
            STAGE_UPLOAD
        } else {
            STAGE_DUMP_ONLY
        }
        .to_owned(),
    );
    job_labels.insert(SCHEDULE_LABEL.to_owned(), db.name_any());
    let mut metadata = child_meta(db, names.backup(), "backup");
    metadata.labels = Some(job_labels.clone());
    if s3.is_none() {
        metadata.annotations = Some(BTreeMap::from([(
            "example.com/backup-note".to_owned(),
            DUMP_ONLY_NOTE.to_owned(),
        )]));
    }
    let pod = match s3 {
        Some(s3) => backup_pod(db, driver, s3, agent_image, backup.retention.as_deref()),
        None => dump_only_pod(db, driver),
    };
    Some(scheduled_jobs(
        metadata,
        schedule,
        job_labels,
        ScheduledRuns {
            history_succeeded: 3,
            backoff_limit: 2,
        },
        pod,
    ))
}

/// How a schedule's runs are kept and retried.
pub struct ScheduledRuns {
    /// Finished Jobs kept for their logs (failed ones: always three).
    pub history_succeeded: i32,
    /// Pod retries of one run.
    pub backoff_limit: i32,
}

/// A CronJob running `pod` on `schedule`, one run at a time; every Job and
/// pod carries `job_labels`, and finished Jobs go after a day.
pub fn scheduled_jobs(
    metadata: ObjectMeta,
    schedule: String,
    job_labels: BTreeMap<String, String>,
    runs: ScheduledRuns,
    pod: PodSpec,
) -> CronJob {
    CronJob {
        metadata,
        spec: CronJobSpec {
            schedule,
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(600),
            successful_jobs_history_limit: Some(runs.history_succeeded),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels.clone()),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(runs.backoff_limit),
                    // Records outlive the Job (DatabaseBackup, the drill's
                    // verification); keep the Job a day for its logs.
                    ttl_seconds_after_finished: Some(86_400),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(job_labels),
                            ..Default::default()
                        }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A pod that dumps every database from the primary and logs the dump's
/// size and checksum, storing nothing.
fn dump_only_pod(db: &Database, driver: &dyn Driver) -> PodSpec {
    let names = Names(&db.name_any());
    let host = format!(
        "{}.{}.svc",
        names.primary(),
        db.namespace().unwrap_or_default()
    );
    let script = format!(
        "set -euo pipefail\n\
         {dump} | gzip -c > /backup/dump.gz\n\
         size=$(wc -c < /backup/dump.gz)\n\
         sum=$(sha256sum /backup/dump.gz | cut -d' ' -f1)\n\
         echo \"dump complete: size=$size sha256=$sum\"\n",
        dump = driver.dump_command(&host)
    );
    let uid = driver.run_as_user();
    PodSpec {
        restart_policy: Some("Never".into()),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod(uid)),
        containers: vec![Container {
            name: "backup".into(),
            image: Some(driver.tools_image(&db.spec.version)),
            command: Some(vec!["bash".into(), "-c".into(), script]),
            env: Some(driver.dump_env(&names.secret())),
            volume_mounts: Some(vec![VolumeMount {
                name: "backup".into(),
                mount_path: "/backup".into(),
                ..Default::default()
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), Quantity("100m".into())),
                    ("memory".into(), Quantity("256Mi".into())),
                ])),
                limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "backup".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
