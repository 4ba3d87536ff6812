//! CronJob `<name>-backup`: the scheduled backup.
//!
//! Today each run takes a full logical dump from the primary, compresses it
//! and records its size and SHA-256 in the Job's log, which proves every
//! night that a consistent dump can be taken. Streaming it to the S3
//! destination is the backup agent's job and is not built yet; the CronJob
//! says so in its `example.com/backup-stage` label and annotation.

use std::collections::BTreeMap;

use api::Database;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::meta::{Names, child_meta, labels};
use crate::engine::Driver;

/// Label that tells what a backup run does today.
pub const BACKUP_STAGE_LABEL: &str = "example.com/backup-stage";
/// The stage of this CronJob: dump and checksum, no upload yet.
pub const BACKUP_STAGE: &str = "dump-only";
const BACKUP_NOTE: &str = "Each run takes a full logical dump from the primary and logs its size and SHA-256. \
Uploading to spec.backup.destination is not implemented yet.";

/// The backup CronJob, when scheduled backups are enabled.
pub fn backup_cronjob(db: &Database, driver: &dyn Driver) -> Option<CronJob> {
    let backup = db.enabled_backup()?;
    let schedule = backup.schedule.clone()?;
    let names = Names(&db.name_any());
    let mut metadata = child_meta(db, names.backup(), "backup");
    let mut job_labels = labels(db, "backup");
    job_labels.insert(BACKUP_STAGE_LABEL.to_owned(), BACKUP_STAGE.to_owned());
    metadata.labels = Some(job_labels.clone());
    metadata.annotations = Some(BTreeMap::from([(
        "example.com/backup-note".to_owned(),
        BACKUP_NOTE.to_owned(),
    )]));
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
    Some(CronJob {
        metadata,
        spec: CronJobSpec {
            schedule,
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels.clone()),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    ttl_seconds_after_finished: Some(86_400),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(job_labels),
                            ..Default::default()
                        }),
                        spec: Some(PodSpec {
                            restart_policy: Some("Never".into()),
                            enable_service_links: Some(false),
                            automount_service_account_token: Some(false),
                            security_context: Some(PodSecurityContext {
                                run_as_non_root: Some(true),
                                run_as_user: Some(uid),
                                run_as_group: Some(uid),
                                seccomp_profile: Some(SeccompProfile {
                                    type_: "RuntimeDefault".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
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
                                    limits: Some(BTreeMap::from([(
                                        "memory".into(),
                                        Quantity("1Gi".into()),
                                    )])),
                                    ..Default::default()
                                }),
                                security_context: Some(SecurityContext {
                                    allow_privilege_escalation: Some(false),
                                    privileged: Some(false),
                                    run_as_non_root: Some(true),
                                    capabilities: Some(Capabilities {
                                        drop: Some(vec!["ALL".into()]),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }],
                            volumes: Some(vec![Volume {
                                name: "backup".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}
