//! The pod that takes one backup: the operator's agent, copied into the
//! engine's own image (which carries the dump tools), streaming a dump to
//! the Database's S3 destination.
//!
//! Nothing a user writes goes into the shell script: every value reaches the
//! agent as an environment variable, quoted where the script uses it.

use std::collections::BTreeMap;

use api::Database;
use api::database::S3Destination;
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
const AGENT_DIR: &str = "/agent";
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
    let names = Names(&db.name_any());
    let host = format!(
        "{}.{}.svc",
        names.primary(),
        db.namespace().unwrap_or_default()
    );
    let mut env = vec![
        plain_env("ENGINE", db.spec.engine.as_str()),
        plain_env("DB_HOST", &host),
        plain_env("DB_PORT", &driver.port().to_string()),
        secret_env("DB_USER", &names.secret(), USERNAME_KEY),
        secret_env("DB_PASSWORD", &names.secret(), PASSWORD_KEY),
        plain_env("S3_BUCKET", &s3.bucket),
        plain_env("S3_REGION", &s3.region),
        plain_env("S3_PREFIX", &key_prefix(db, s3)),
        plain_env("S3_ENDPOINT", s3.endpoint.as_deref().unwrap_or("")),
        plain_env(
            "S3_FORCE_PATH_STYLE",
            if s3.force_path_style { "true" } else { "false" },
        ),
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
    ];
    if let Some(credentials) = &s3.credentials_secret {
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
    let script = r#"set -eu
agent="/agent/database-operator"
set -- --engine "$ENGINE" --host "$DB_HOST" --port "$DB_PORT" --bucket "$S3_BUCKET" --region "$S3_REGION" --prefix "$S3_PREFIX"
if [ -n "$S3_ENDPOINT" ]; then set -- "$@" --endpoint "$S3_ENDPOINT"; fi
if [ "$S3_FORCE_PATH_STYLE" = true ]; then set -- "$@" --force-path-style; fi
"$agent" agent backup "$@" --key-name "$BACKUP_NAME"
if [ -n "$RETENTION" ]; then "$agent" agent prune "$@" --retention "$RETENTION" >&2; fi
"#;
    let uid = driver.run_as_user();
    let restricted = restricted_container();
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
        init_containers: Some(vec![Container {
            name: "install-agent".into(),
            image: Some(agent_image.to_owned()),
            command: Some(vec![
                "cp".into(),
                AGENT_BINARY_IN_IMAGE.into(),
                format!("{AGENT_DIR}/database-operator"),
            ]),
            volume_mounts: Some(vec![agent_mount.clone()]),
            security_context: Some(restricted.clone()),
            ..Default::default()
        }]),
        containers: vec![Container {
            name: "backup".into(),
            image: Some(driver.tools_image(&db.spec.version)),
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
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
            security_context: Some(restricted),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "agent".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
