//! Job `<name>-restore`: fills a new Database from a backup, once.

use database_operator_api::v1::Database;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::backup_job::{AgentTask, S3Target, agent_pod};
use super::cronjob::BACKUP_STAGE_LABEL;
use super::meta::{Names, child_meta, labels};
use crate::engine::Driver;

/// The stage label value of restore Jobs.
pub const STAGE_RESTORE: &str = "restore";

/// The restore Job: the agent checks the backup's checksum, refuses a server
/// that holds data unless `force`, and loads the dump into the primary.
/// It is not retried: a half-applied dump would make a retry refuse (the
/// server now holds data) or, forced, replay over it.
pub fn restore_job(
    db: &Database,
    driver: &dyn Driver,
    target: &S3Target,
    key: &str,
    force: bool,
    agent_image: &str,
) -> Job {
    let names = Names(&db.name_any());
    let mut job_labels = labels(db, "restore");
    job_labels.insert(BACKUP_STAGE_LABEL.to_owned(), STAGE_RESTORE.to_owned());
    let mut metadata = child_meta(db, names.restore(), "restore");
    metadata.labels = Some(job_labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..Default::default()
                }),
                spec: Some(agent_pod(
                    db,
                    driver,
                    target,
                    agent_image,
                    AgentTask::Restore { key, force },
                )),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
