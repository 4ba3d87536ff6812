//! The restore Job and the restore-drill CronJob, per engine: snapshots, and
//! the properties a reviewer would check by hand (the throwaway server is a
//! native sidecar on an emptyDir, the agent runs the right task against the
//! right host, nothing a user wrote is in a script, pods are restricted).

use database_operator_api::v1;
use testkit::fixtures::{self, env_value};

use database_operator_api::v1::Engine;
use database_operator_api::v1::restore::{BackupLocation, RestoreS3Source};
use fixtures::{database, with_backup};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use operator::builders::Desired;
use operator::builders::backup_job::S3Target;
use operator::builders::restore_job::restore_job;
use operator::engine::driver;
use rstest::rstest;

fn with_destination_and_drills(engine: Engine) -> v1::Database {
    let mut db = with_backup(database("orders", engine, "1.0", 1), "0 3 * * *");
    let backup = db.spec.backup.as_mut().unwrap();
    backup.destination = Some(serde_json::from_value(serde_json::json!({
        "s3": {"bucket": "backups", "region": "eu-west-1", "endpoint": "http://s3:7070", "prefix": "team",
            "forcePathStyle": true, "credentialsSecret": {"name": "s3-keys"}}
    })).unwrap());
    backup.verify =
        Some(serde_json::from_value(serde_json::json!({"schedule": "30 4 * * 0"})).unwrap());
    db
}

fn script(container: &Container) -> String {
    container.command.as_ref().unwrap().join(" ")
}

fn assert_restricted(pod: &PodSpec) {
    let pod_sc = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(
        pod_sc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }
    for volume in pod.volumes.iter().flatten() {
        assert!(volume.host_path.is_none());
    }
}

#[rstest]
fn the_drill_cronjob_restores_the_newest_backup_into_a_throwaway_sidecar(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let db = with_destination_and_drills(engine);
    let cron = Desired::build(&db).verify.expect("a drill CronJob");
    assert_eq!(cron.metadata.name.as_deref(), Some("orders-verify"));
    assert_eq!(cron.spec.schedule, "30 4 * * 0");
    assert_eq!(cron.spec.concurrency_policy.as_deref(), Some("Forbid"));
    let labels = cron.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["example.com/backup-verify"], "orders");
    assert!(
        !labels.contains_key("example.com/backup-schedule"),
        "a drill is not a backup: it must not become a DatabaseBackup"
    );
    let job = cron.spec.job_template.spec.clone().unwrap();
    assert_eq!(job.backoff_limit, Some(0));
    let pod = job.template.spec.unwrap();
    assert_restricted(&pod);

    let inits = pod.init_containers.as_ref().unwrap();
    assert_eq!(inits[0].name, "install-agent");
    let server = &inits[1];
    assert_eq!(server.name, "drill-server");
    assert_eq!(
        server.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar, stopped when the agent ends"
    );
    let d = driver(engine);
    assert_eq!(server.image, Some(d.image("1.0")));
    let data = &server.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(data.mount_path, d.data_mount_path());
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == data.name)
        .unwrap();
    assert!(
        volume.empty_dir.is_some(),
        "the drill never touches a real volume"
    );
    let probe = server.startup_probe.as_ref().unwrap();
    assert!(
        probe.tcp_socket.is_some(),
        "TCP on the pod address: first-start init servers do not listen there"
    );

    let agent = &pod.containers[0];
    assert_eq!(agent.name, "verify");
    assert_eq!(env_value(agent, "DB_HOST").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        env_value(agent, "S3_PREFIX").as_deref(),
        Some("team/default/orders")
    );
    let script = script(agent);
    assert!(script.contains("agent verify \"$@\" --latest"), "{script}");
    for value in ["backups", "eu-west-1", "s3:7070", "s3-keys"] {
        assert!(
            !script.contains(value),
            "{value} is spliced into the script"
        );
    }
    insta::with_settings!({sort_maps => true}, {
        insta::assert_yaml_snapshot!(format!("drill_{}", engine.as_str()), cron);
    });
}

#[test]
fn no_drills_without_a_schedule() {
    let mut db = with_destination_and_drills(Engine::Postgresql);
    db.spec.backup.as_mut().unwrap().verify = None;
    assert!(Desired::build(&db).verify.is_none());
}

#[rstest]
fn the_restore_job_loads_one_backup_into_the_primary_once(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
    #[values(false, true)] force: bool,
) {
    let db = database("orders-copy", engine, "1.0", 1);
    let source: RestoreS3Source = serde_json::from_value(serde_json::json!({
        "location": "s3://backups/team/default/orders/orders-29000001",
        "endpoint": "http://s3:7070", "forcePathStyle": true,
        "credentialsSecret": {"name": "s3-keys"}
    }))
    .unwrap();
    let location = BackupLocation::parse(&source.location).unwrap();
    let target = S3Target::source(&source, &location);
    let job = restore_job(
        &db,
        driver(engine),
        &target,
        &location.key,
        force,
        "operator:dev",
    );
    assert_eq!(job.metadata.name.as_deref(), Some("orders-copy-restore"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Database", Some(true))
    );
    let spec = job.spec.clone().unwrap();
    assert_eq!(
        spec.backoff_limit,
        Some(0),
        "a half-applied dump is not retried"
    );
    let pod = spec.template.spec.unwrap();
    assert_restricted(&pod);
    let agent = &pod.containers[0];
    assert_eq!(agent.name, "restore");
    assert_eq!(
        env_value(agent, "DB_HOST").as_deref(),
        Some("orders-copy-primary.default.svc")
    );
    assert_eq!(
        env_value(agent, "S3_PREFIX").as_deref(),
        Some("team/default/orders")
    );
    assert_eq!(
        env_value(agent, "RESTORE_KEY").as_deref(),
        Some("orders-29000001")
    );
    assert_eq!(
        env_value(agent, "RESTORE_FORCE").as_deref(),
        Some(if force { "true" } else { "false" })
    );
    let script = script(agent);
    assert!(
        script.contains("agent restore \"$@\" --key-name \"$RESTORE_KEY\""),
        "{script}"
    );
    assert!(!script.contains("orders-29000001"));
    if engine == Engine::Postgresql && !force {
        insta::with_settings!({sort_maps => true}, {
            insta::assert_yaml_snapshot!("restore_job_postgresql", job);
        });
    }
}
