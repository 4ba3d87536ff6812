//! CronJob `<name>-verify`: restore drills. Each run starts a throwaway
//! server of the Database's engine and version inside the Job's pod (a
//! native sidecar on an emptyDir, so nothing outlives the pod), restores the
//! newest complete backup into it with the agent, and compares every
//! table's row count with the backup's manifest. The agent's report (the
//! container's termination message) is what the operator records on the
//! DatabaseBackup and the Database.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PodSpec, Probe, ResourceRequirements,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::backup_job::{AgentTask, S3Target, agent_container, install_agent};
use super::cronjob::{BACKUP_STAGE_LABEL, ScheduledRuns, scheduled_jobs};
use super::meta::{Names, child_meta, labels};
use super::security::{restricted_container, restricted_pod};
use crate::engine::Driver;

/// The stage label value of drill Jobs.
pub const STAGE_VERIFY: &str = "verify";
/// Label on drill Jobs naming their Database.
pub const VERIFY_LABEL: &str = "example.com/backup-verify";
/// Name of the throwaway server's container.
pub const DRILL_SERVER: &str = "drill-server";

/// The drill CronJob, when spec.backup.verify is set and there is a bucket.
pub fn verify_cronjob(db: &Database, driver: &dyn Driver, agent_image: &str) -> Option<CronJob> {
    let backup = db.spec.backup.as_ref()?;
    let verify = backup.verify.as_ref()?;
    let s3 = backup.destination.as_ref()?.s3.as_ref()?;
    let names = Names(&db.name_any());
    let mut job_labels = labels(db, "verify");
    job_labels.insert(BACKUP_STAGE_LABEL.to_owned(), STAGE_VERIFY.to_owned());
    job_labels.insert(VERIFY_LABEL.to_owned(), db.name_any());
    let mut metadata = child_meta(db, names.verify(), "verify");
    metadata.labels = Some(job_labels.clone());
    Some(scheduled_jobs(
        metadata,
        verify.schedule.clone(),
        job_labels,
        // A failed drill is a finding, not a glitch to retry away.
        ScheduledRuns {
            history_succeeded: 1,
            backoff_limit: 0,
        },
        drill_pod(db, driver, &S3Target::destination(db, s3), agent_image),
    ))
}

fn drill_pod(db: &Database, driver: &dyn Driver, target: &S3Target, agent_image: &str) -> PodSpec {
    let agent_mount = VolumeMount {
        name: "agent".into(),
        mount_path: "/agent".into(),
        ..Default::default()
    };
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    PodSpec {
        restart_policy: Some("Never".into()),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod(driver.run_as_user())),
        init_containers: Some(vec![
            install_agent(agent_image, &agent_mount),
            throwaway_server(db, driver),
        ]),
        containers: vec![agent_container(
            db,
            driver,
            target,
            AgentTask::Verify,
            agent_mount,
        )],
        volumes: Some(vec![empty("agent"), empty("drill-data")]),
        ..Default::default()
    }
}

/// The engine's server on an emptyDir, with the Database's admin login so
/// the agent connects the same way it does to the real one. A native
/// sidecar: the agent starts once the server accepts TCP connections on the
/// pod's address (the entrypoints' first-start servers do not listen
/// there), and the kubelet stops it when the agent is done.
fn throwaway_server(db: &Database, driver: &dyn Driver) -> Container {
    let names = Names(&db.name_any());
    let memory = db
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory").cloned())
        .unwrap_or_else(|| Quantity("1Gi".into()));
    Container {
        name: DRILL_SERVER.into(),
        image: Some(driver.image(&db.spec.version)),
        restart_policy: Some("Always".into()),
        env: Some(driver.env(&db.name_any(), &names.secret())),
        ports: Some(vec![ContainerPort {
            name: Some("drill".into()),
            container_port: driver.port(),
            ..Default::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: "drill-data".into(),
            mount_path: driver.data_mount_path().into(),
            ..Default::default()
        }]),
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(driver.port()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(150),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("256Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), memory)])),
            ..Default::default()
        }),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}
