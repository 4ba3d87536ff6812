//! The pods the agent runs in: the operator's binary, copied into the
//! engine's own image (which carries the dump and load tools), streaming a
//! dump to S3 (backup), from S3 into the Database (restore), or from S3 into
//! a throwaway server beside it (verify, see [`super::drill`]).
//!
//! Nothing a user writes goes into the shell script: every value reaches the
//! agent as an environment variable, quoted where the script uses it.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::{S3CredentialsSecret, S3Destination};
use database_operator_api::v1::restore::{BackupLocation, RestoreS3Source};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::meta::Names;
use super::security::{restricted_container, restricted_pod};
use crate::engine::{Driver, PASSWORD_KEY, USERNAME_KEY, plain_env, secret_env};

/// Where the init container puts the agent binary.
pub(crate) const AGENT_DIR: &str = "/agent";
/// Where the operator image keeps its binary.
pub const AGENT_BINARY_IN_IMAGE: &str = "/usr/local/bin/database-operator";

/// The key prefix under the bucket for one Database's backups.
pub fn key_prefix(db: &Database, s3: &S3Destination) -> String {
    let base = s3.prefix.as_deref().unwrap_or("").trim_matches('/');
    let own = format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any());
    if base.is_empty() {
        own
    } else {
        format!("{base}/{own}")
    }
}

/// A bucket and the prefix the agent works under.
#[derive(Clone, Debug, PartialEq)]
pub struct S3Target {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    /// The exact prefix holding backup folders.
    pub prefix: String,
    pub force_path_style: bool,
    pub credentials: Option<S3CredentialsSecret>,
}

impl S3Target {
    /// Where `db`'s own backups go.
    pub fn destination(db: &Database, s3: &S3Destination) -> S3Target {
        S3Target {
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone(),
            prefix: key_prefix(db, s3),
            force_path_style: s3.force_path_style,
            credentials: s3.credentials_secret.clone(),
        }
    }

    /// The connection of `s3` (any Database's destination on the same
    /// bucket) with the prefix of one backup's location.
    pub fn at_location(s3: &S3Destination, location: &BackupLocation) -> S3Target {
        S3Target {
            bucket: location.bucket.clone(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone(),
            prefix: location.prefix.clone(),
            force_path_style: s3.force_path_style,
            credentials: s3.credentials_secret.clone(),
        }
    }

    /// A restore source written out in full.
    pub fn source(source: &RestoreS3Source, location: &BackupLocation) -> S3Target {
        S3Target {
            bucket: location.bucket.clone(),
            region: source.region.clone(),
            endpoint: source.endpoint.clone(),
            prefix: location.prefix.clone(),
            force_path_style: source.force_path_style,
            credentials: source.credentials_secret.clone(),
        }
    }
}

/// What one agent pod does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AgentTask<'a> {
    /// Dump to the bucket; with a retention, prune afterwards.
    Backup { retention: Option<&'a str> },
    /// Load one backup into the Database's primary.
    Restore { key: &'a str, force: bool },
    /// Load the newest backup into the throwaway server on localhost and
    /// compare row counts with its manifest.
    Verify,
}

impl AgentTask<'_> {
    /// The agent's container; its termination message is the agent's report.
    pub fn container_name(&self) -> &'static str {
        match self {
            AgentTask::Backup { .. } => "backup",
            AgentTask::Restore { .. } => "restore",
            AgentTask::Verify => "verify",
        }
    }

    fn script(&self) -> &'static str {
        match self {
            AgentTask::Backup { .. } => {
                r#""$agent" agent backup "$@" --key-name "$BACKUP_NAME"
if [ -n "$RETENTION" ]; then "$agent" agent prune "$@" --retention "$RETENTION" >&2; fi
"#
            }
            AgentTask::Restore { .. } => {
                r#"if [ "$RESTORE_FORCE" = true ]; then set -- "$@" --force; fi
"$agent" agent restore "$@" --key-name "$RESTORE_KEY"
"#
            }
            AgentTask::Verify => {
                r#""$agent" agent verify "$@" --latest
"#
            }
        }
    }

    fn env(&self) -> Vec<EnvVar> {
        match self {
            AgentTask::Backup { retention } => vec![
                plain_env("RETENTION", retention.unwrap_or("")),
                EnvVar {
                    name: "BACKUP_NAME".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['batch.kubernetes.io/job-name']".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            AgentTask::Restore { key, force } => vec![
                plain_env("RESTORE_KEY", key),
                plain_env("RESTORE_FORCE", if *force { "true" } else { "false" }),
            ],
            AgentTask::Verify => Vec::new(),
        }
    }
}

/// The backup pod for `db`. The backup's name comes from the Job's name
/// label, so scheduled and on-demand runs name their objects the same way.
/// With `retention`, older backups are pruned after a successful one.
pub fn backup_pod(
    db: &Database,
    driver: &dyn Driver,
    s3: &S3Destination,
    agent_image: &str,
    retention: Option<&str>,
) -> PodSpec {
    agent_pod(
        db,
        driver,
        &S3Target::destination(db, s3),
        agent_image,
        AgentTask::Backup { retention },
    )
}

/// The Job of the on-demand backup `backup` of `db`, named and owned by
/// it; None when `backup` has no uid (it did not come from the API server).
pub fn on_demand_job(
    backup: &database_operator_api::v1::backup::DatabaseBackup,
    db: &Database,
    s3: &S3Destination,
    agent_image: &str,
) -> Option<k8s_openapi::api::batch::v1::Job> {
    use k8s_openapi::api::batch::v1::{Job, JobSpec};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::Resource;
    let mut job_labels = super::meta::labels(db, "backup");
    job_labels.insert(
        super::cronjob::BACKUP_STAGE_LABEL.to_owned(),
        super::cronjob::STAGE_UPLOAD.to_owned(),
    );
    Some(Job {
        metadata: ObjectMeta {
            name: Some(backup.name_any()),
            namespace: backup.namespace(),
            labels: Some(job_labels.clone()),
            owner_references: Some(vec![backup.controller_owner_ref(&())?]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..Default::default()
                }),
                // On-demand backups do not prune: retention is the schedule's.
                spec: Some(backup_pod(
                    db,
                    crate::engine::driver_of(&db.spec),
                    s3,
                    agent_image,
                    None,
                )),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The host the agent reaches the database at: for a backup of a Database
/// with replicas, the read-only Service (the dump then loads a replica, not
/// the primary); otherwise the primary Service; for a drill, the throwaway
/// server in the same pod.
fn database_host(db: &Database, task: AgentTask) -> String {
    let names = Names(&db.name_any());
    let service = match task {
        AgentTask::Verify => return "127.0.0.1".into(),
        AgentTask::Backup { .. } if db.spec.replicas > 1 => names.readonly(),
        _ => names.primary(),
    };
    format!("{service}.{}.svc", db.namespace().unwrap_or_default())
}

/// Where a backup goes when no replica answers: the primary.
fn fallback_host(db: &Database, task: AgentTask) -> Option<String> {
    (matches!(task, AgentTask::Backup { .. }) && db.spec.replicas > 1).then(|| {
        format!(
            "{}.{}.svc",
            Names(&db.name_any()).primary(),
            db.namespace().unwrap_or_default()
        )
    })
}

/// A pod running one agent task against `db` and `target`.
pub fn agent_pod(
    db: &Database,
    driver: &dyn Driver,
    target: &S3Target,
    agent_image: &str,
    task: AgentTask,
) -> PodSpec {
    let uid = driver.run_as_user();
    let agent_mount = VolumeMount {
        name: "agent".into(),
        mount_path: AGENT_DIR.into(),
        ..Default::default()
    };
    PodSpec {
        restart_policy: Some("Never".into()),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod(uid)),
        init_containers: Some(vec![install_agent(agent_image, &agent_mount)]),
        containers: vec![agent_container(db, driver, target, task, agent_mount)],
        volumes: Some(vec![Volume {
            name: "agent".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// Copies the agent out of the operator's image into the shared volume,
/// with the binary's own `copy-self`: the image has no shell and no `cp`.
pub fn install_agent(agent_image: &str, mount: &VolumeMount) -> Container {
    Container {
        name: "install-agent".into(),
        image: Some(agent_image.to_owned()),
        command: Some(vec![
            AGENT_BINARY_IN_IMAGE.into(),
            "copy-self".into(),
            format!("{AGENT_DIR}/database-operator"),
        ]),
        volume_mounts: Some(vec![mount.clone()]),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// The container that runs the agent from the shared volume.
pub fn agent_container(
    db: &Database,
    driver: &dyn Driver,
    target: &S3Target,
    task: AgentTask,
    agent_mount: VolumeMount,
) -> Container {
    let names = Names(&db.name_any());
    let mut env = vec![
        plain_env("ENGINE", db.spec.engine.as_str()),
        plain_env("DB_HOST", &database_host(db, task)),
        plain_env("DB_PORT", &driver.port().to_string()),
        secret_env("DB_USER", &names.secret(), USERNAME_KEY),
        secret_env("DB_PASSWORD", &names.secret(), PASSWORD_KEY),
        plain_env("S3_BUCKET", &target.bucket),
        plain_env("S3_REGION", &target.region),
        plain_env("S3_PREFIX", &target.prefix),
        plain_env("S3_ENDPOINT", target.endpoint.as_deref().unwrap_or("")),
        plain_env(
            "S3_FORCE_PATH_STYLE",
            if target.force_path_style {
                "true"
            } else {
                "false"
            },
        ),
    ];
    env.extend(fallback_host(db, task).map(|host| plain_env("DB_FALLBACK_HOST", &host)));
    env.extend(task.env());
    if let Some(credentials) = &target.credentials {
        env.push(secret_env(
            "AWS_ACCESS_KEY_ID",
            &credentials.name,
            &credentials.access_key_id_key,
        ));
        env.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            &credentials.name,
            &credentials.secret_access_key_key,
        ));
    }
    let script = format!(
        r#"set -eu
agent="/agent/database-operator"
set -- --engine "$ENGINE" --host "$DB_HOST" --port "$DB_PORT" --bucket "$S3_BUCKET" --region "$S3_REGION" --prefix "$S3_PREFIX"
if [ -n "$S3_ENDPOINT" ]; then set -- "$@" --endpoint "$S3_ENDPOINT"; fi
if [ "$S3_FORCE_PATH_STYLE" = true ]; then set -- "$@" --force-path-style; fi
{}"#,
        task.script()
    );
    Container {
        name: task.container_name().into(),
        image: Some(driver.tools_image(&db.spec.version)),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        env: Some(env),
        volume_mounts: Some(vec![agent_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("512Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}
