//! Snapshot tests of everything the builders produce: one full snapshot per
//! engine, and the variants (1 replica, a storage class) asserted where they
//! differ from it.

use database_operator_api::v1;
use testkit::fixtures;

use database_operator_api::v1::Engine;
use fixtures::{database, with_backup, with_storage_class};
use operator::builders::topology::Topology;
use operator::builders::{DEFAULT_AGENT_IMAGE, Desired};
use rstest::rstest;

fn snapshot_of(db: &v1::Database) -> serde_json::Value {
    snapshot_as(db, Topology::of(db, None))
}

fn snapshot_as(db: &v1::Database, topology: Topology) -> serde_json::Value {
    let desired = Desired::build_with(db, DEFAULT_AGENT_IMAGE, None, topology);
    serde_json::json!({
        "configMap": desired.config_map,
        "statefulSet": desired.statefulset,
        "services": desired.all_services().collect::<Vec<_>>(),
        "podDisruptionBudget": desired.pdb,
        "backupCronJob": desired.backup,
    })
}

/// Sorted keys: whether serde_json keeps insertion order depends on which
/// other crates in the build enable its `preserve_order` feature.
fn assert_snapshot(name: &str, snapshot: serde_json::Value) {
    insta::with_settings!({sort_maps => true}, {
        insta::assert_yaml_snapshot!(name, snapshot);
    });
}

fn version(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql => "16.4",
        Engine::Mysql => "8.4",
        Engine::Mongodb => "7.0",
    }
}

/// One full snapshot per engine, of the richest shape (3 replicas, so the
/// read-only Service exists); the variants are asserted where they differ.
#[rstest]
fn children(#[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine) {
    let db = database("orders", engine, version(engine), 3);
    assert_snapshot(&format!("{engine}"), snapshot_of(&db));
}

/// The mysql engine's `mariadb` flavor: the `mariadb` image, its
/// environment (`MARIADB_*`) and its client tools (`mariadb-admin` in the
/// probes); the rest is the MySQL snapshot's.
#[test]
fn children_of_the_mariadb_flavor() {
    let db = fixtures::mariadb("orders", "11.4", 3);
    let snapshot = snapshot_of(&db);
    assert_snapshot("mariadb", snapshot.clone());
    let text = snapshot.to_string();
    for gone in ["mysql:", "MYSQL_ROOT_PASSWORD", "mysqladmin"] {
        assert!(
            !text.contains(gone),
            "{gone} in a MariaDB Database's children"
        );
    }
}

/// A PostgreSQL Database created before the operator replicated keeps
/// exactly the children it had: this snapshot is the one every new
/// PostgreSQL Database had before (the file was renamed, not changed).
#[test]
fn an_independent_postgresql_database_keeps_its_children() {
    let db = database("orders", Engine::Postgresql, version(Engine::Postgresql), 3);
    assert_snapshot(
        "postgresql_independent",
        snapshot_as(&db, Topology::Independent),
    );
}

/// With one replica there is no read-only Service and the StatefulSet asks
/// for one pod; everything else is what the three-replica snapshot shows.
#[rstest]
fn one_replica_has_no_readonly_service(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let one = snapshot_of(&database("orders", engine, version(engine), 1));
    let mut three = snapshot_of(&database("orders", engine, version(engine), 3));
    assert_eq!(one["statefulSet"]["spec"]["replicas"], 1);
    let services = three["services"].as_array_mut().unwrap();
    let readonly = services.pop().unwrap();
    assert_eq!(readonly["metadata"]["name"], "orders-readonly");
    three["statefulSet"]["spec"]["replicas"] = 1.into();
    assert_eq!(
        one, three,
        "1 replica differs from 3 beyond the read-only Service"
    );
}

/// A storage class reaches the claim template and nothing else.
#[rstest]
fn a_storage_class_reaches_the_claim_template(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
    #[values(1, 3)] replicas: i32,
) {
    let plain = database("orders", engine, version(engine), replicas);
    let classed = snapshot_of(&with_storage_class(plain.clone(), "fast-ssd"));
    let mut expected = snapshot_of(&plain);
    let claim = &mut expected["statefulSet"]["spec"]["volumeClaimTemplates"][0]["spec"];
    assert!(claim.get("storageClassName").is_none());
    claim["storageClassName"] = "fast-ssd".into();
    assert_eq!(classed, expected);
}

#[test]
fn backup_cronjob_for_the_seed_e2e_database() {
    let plain = database("e2e-test-db", Engine::Postgresql, "13.8", 2);
    let mut with = snapshot_of(&with_backup(plain.clone(), "0 2 * * *"));
    let cronjob = with["backupCronJob"].take();
    insta::with_settings!({sort_maps => true}, {
        insta::assert_yaml_snapshot!("postgresql_backup_cronjob", cronjob);
    });
    // Backups add the CronJob and change no other child.
    assert_eq!(with, snapshot_of(&plain));
}

#[test]
fn test_postgres_gets_one_replica_of_postgres_13_8_and_a_postgresql_conf() {
    let db = fixtures::sample("test-postgres.yaml");
    let mut db = db;
    db.metadata.uid = Some("uid".into());
    let desired = Desired::build(&db);
    assert_eq!(desired.statefulset.spec.replicas, Some(1));
    let pod = desired.statefulset.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("postgres:13.8"));
    assert_eq!(
        desired.config_map.metadata.name.as_deref(),
        Some("test-postgres-config")
    );
    assert!(
        desired
            .config_map
            .data
            .as_ref()
            .unwrap()
            .contains_key("postgresql.conf")
    );
}

#[rstest]
fn every_child_is_owned_and_labelled(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let db = with_backup(database("owned", engine, "1.0", 3), "0 3 * * *");
    let desired = Desired::build(&db);
    let mut metas = vec![
        &desired.config_map.metadata,
        &desired.statefulset.metadata,
        &desired.pdb.metadata,
    ];
    metas.extend(desired.all_services().map(|s| &s.metadata));
    metas.push(&desired.backup.as_ref().unwrap().metadata);
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Database", "owned", Some(true))
        );
        let labels = meta.labels.as_ref().unwrap();
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
        ] {
            assert!(labels.contains_key(key), "{:?} lacks {key}", meta.name);
        }
    }
}

#[rstest]
fn pods_meet_the_restricted_pod_security_standard(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let db = with_backup(database("secure", engine, "1.0", 1), "0 3 * * *");
    let desired = Desired::build(&db);
    let cron = desired.backup.unwrap();
    let pods = [
        desired.statefulset.spec.template.spec.unwrap(),
        cron.spec.job_template.spec.unwrap().template.spec.unwrap(),
    ];
    for pod in pods {
        let pod_sc = pod.security_context.unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        for container in pod.containers {
            let sc = container.security_context.unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        }
        for volume in pod.volumes.unwrap_or_default() {
            assert!(volume.host_path.is_none());
        }
    }
}

#[test]
fn a_readonly_service_exists_only_with_more_than_one_replica() {
    assert!(
        Desired::build(&database("one", Engine::Mysql, "8.4", 1))
            .services
            .readonly
            .is_none()
    );
    let three = Desired::build(&database("three", Engine::Mysql, "8.4", 3));
    assert_eq!(
        three.services.readonly.unwrap().metadata.name.as_deref(),
        Some("three-readonly")
    );
}

#[test]
fn a_configuration_change_changes_the_pod_template() {
    let small = database("db", Engine::Postgresql, "16.4", 1);
    let mut large = small.clone();
    large.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(
            [(
                "memory".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("8Gi".into()),
            )]
            .into(),
        ),
        ..Default::default()
    });
    let annotation = |db| {
        Desired::build(db)
            .statefulset
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["example.com/config-hash"]
            .clone()
    };
    assert_ne!(annotation(&small), annotation(&large));
}

#[rstest]
fn backup_cronjob_with_an_s3_destination_runs_the_agent(
    #[values(Engine::Postgresql, Engine::Mysql, Engine::Mongodb)] engine: Engine,
) {
    let mut db = with_backup(database("orders", engine, "1.0", 1), "0 3 * * *");
    db.spec.backup.as_mut().unwrap().destination = Some(serde_json::from_value(serde_json::json!({
        "s3": {"bucket": "backups", "region": "eu-west-1", "endpoint": "http://s3:7070", "prefix": "team",
            "forcePathStyle": true, "credentialsSecret": {"name": "s3-keys"}}
    })).unwrap());
    let cron = Desired::build(&db).backup.expect("a CronJob");
    assert_eq!(
        cron.metadata.labels.as_ref().unwrap()["example.com/backup-stage"],
        "upload"
    );
    let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image,
        driver_image(engine),
        "the dump tools come from the engine's image"
    );
    let env = container.env.as_ref().unwrap();
    let secret_of = |name: &str| {
        let from = env
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .value_from
            .clone()
            .unwrap();
        let key = from.secret_key_ref.unwrap();
        (key.name, key.key)
    };
    assert_eq!(
        secret_of("DB_PASSWORD"),
        ("orders-secret".to_string(), "password".to_string())
    );
    assert_eq!(
        secret_of("AWS_ACCESS_KEY_ID"),
        ("s3-keys".to_string(), "AWS_ACCESS_KEY_ID".to_string())
    );
    let plain = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap()
            .value
            .clone()
            .unwrap()
    };
    assert_eq!(plain("ENGINE"), engine.as_str());
    assert_eq!(plain("S3_PREFIX"), "team/default/orders");
    assert_eq!(plain("RETENTION"), "7d");
    // One member: the primary, with nowhere else to go.
    assert_eq!(plain("DB_HOST"), "orders-primary.default.svc");
    assert!(env.iter().all(|e| e.name != "DB_FALLBACK_HOST"));
    // With replicas: a replica through the read-only Service, the primary
    // when none answers.
    db.spec.replicas = 3;
    let cron = Desired::build(&db).backup.expect("a CronJob");
    let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("DB_HOST").as_deref(),
        Some("orders-readonly.default.svc")
    );
    assert_eq!(
        value("DB_FALLBACK_HOST").as_deref(),
        Some("orders-primary.default.svc")
    );
    // Nothing the user wrote is in the script itself.
    let script = container.command.as_ref().unwrap().join(" ");
    for value in ["backups", "eu-west-1", "s3:7070", "team", "s3-keys"] {
        assert!(
            !script.contains(value),
            "{value} is spliced into the script"
        );
    }
    assert_eq!(
        pod.init_containers.as_ref().unwrap()[0].image.as_deref(),
        Some(DEFAULT_AGENT_IMAGE)
    );
}

fn driver_image(engine: Engine) -> Option<String> {
    Some(operator::engine::driver(engine).image("1.0"))
}

fn with_velero(mut db: v1::Database, velero: serde_json::Value) -> v1::Database {
    let backup = db.spec.backup.as_mut().expect("backups on");
    backup.method = v1::database::BackupMethod::Velero;
    backup.velero = Some(serde_json::from_value(velero).unwrap());
    db
}

#[test]
fn velero_schedule_for_method_velero() {
    let mut db = with_velero(
        with_backup(
            database("orders", Engine::Postgresql, "16.4", 3),
            "0 2 * * *",
        ),
        serde_json::json!({"storageLocation": "aws-eu", "snapshotVolumes": false, "defaultVolumesToFsBackup": true}),
    );
    db.metadata.namespace = Some("shop".into());
    let desired = Desired::build(&db);
    assert!(
        desired.backup.is_none(),
        "no CronJob when Velero takes the backups"
    );
    insta::with_settings!({sort_maps => true}, {
        insta::assert_yaml_snapshot!("velero_schedule", desired.velero.expect("a Schedule"));
    });
}

#[test]
fn velero_schedule_defaults_and_what_it_selects() {
    let db = with_velero(
        with_backup(database("orders", Engine::Mysql, "8.4", 1), "@daily"),
        serde_json::json!({}),
    );
    let desired = Desired::build(&db);
    let schedule = desired.velero.expect("a Schedule");
    assert_eq!(schedule.metadata.namespace.as_deref(), Some("velero"));
    assert_eq!(schedule.metadata.name.as_deref(), Some("default-orders"));
    assert!(schedule.metadata.owner_references.is_none());
    let template = &schedule.spec.template;
    assert_eq!(template.ttl.as_deref(), Some("168h0m0s"));
    assert_eq!(template.storage_location, None);
    assert_eq!(template.snapshot_volumes, None);
    // The selector matches the pods, their claims and every other child.
    let selector = template
        .label_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    let pod_labels = desired
        .statefulset
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    // The StatefulSet controller labels each claim with the selector's labels.
    let claim_labels = desired
        .statefulset
        .spec
        .selector
        .match_labels
        .as_ref()
        .unwrap();
    let service_labels = desired.services.primary.metadata.labels.as_ref().unwrap();
    for labels in [pod_labels, claim_labels, service_labels] {
        for (key, value) in selector {
            assert_eq!(labels.get(key), Some(value), "{key} in {labels:?}");
        }
    }
    // Switching back to the agent brings the CronJob back and drops the Schedule.
    let mut agent = db.clone();
    agent.spec.backup.as_mut().unwrap().method = v1::database::BackupMethod::Agent;
    let desired = Desired::build(&agent);
    assert!(desired.velero.is_none() && desired.backup.is_some());
    // Backups off: neither.
    let mut off = db;
    off.spec.backup.as_mut().unwrap().enabled = false;
    let desired = Desired::build(&off);
    assert!(desired.velero.is_none() && desired.backup.is_none());
}

/// The supervisor in a replicated Database's pods is the operator's binary,
/// from the operator's image: a new operator version leaves the running
/// pods' image in place (no restart), and rides along when the template
/// changes for another reason.
#[test]
fn a_new_operator_image_restarts_no_database_until_the_template_changes_anyway() {
    use operator::builders::statefulset::keep_supervisor_image;
    let db = database("orders", Engine::Postgresql, "16.4", 3);
    let installer = |sts: &k8s_openapi::api::apps::v1::StatefulSet| {
        let pod = sts.spec.template.spec.as_ref().unwrap();
        let init = pod.init_containers.as_ref().unwrap();
        assert_eq!(init[0].name, "install-agent");
        init[0].image.clone().unwrap()
    };
    let live =
        Desired::build_with(&db, "database-operator:0.1.0", None, Topology::Streaming).statefulset;
    // Every pod reads the API as the Database's own ServiceAccount.
    let pod = live.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("orders-instance"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let command = pod.containers[0].command.clone().unwrap();
    assert_eq!(
        command[..2],
        ["/agent/database-operator".to_owned(), "instance".to_owned()]
    );

    // A new operator: same template but for its image.
    let mut upgraded =
        Desired::build_with(&db, "database-operator:0.2.0", None, Topology::Streaming).statefulset;
    keep_supervisor_image(&mut upgraded, &live);
    assert_eq!(installer(&upgraded), "database-operator:0.1.0");
    assert_eq!(
        upgraded.spec.template, live.spec.template,
        "nothing to roll"
    );

    // A change that rolls the pods anyway takes the new image along.
    let mut resized = db.clone();
    resized.spec.resources = Some(
        serde_json::from_value(serde_json::json!({
            "requests": {"memory": "2Gi", "cpu": "1"}, "limits": {"memory": "2Gi"}
        }))
        .unwrap(),
    );
    let mut changed = Desired::build_with(
        &resized,
        "database-operator:0.2.0",
        None,
        Topology::Streaming,
    )
    .statefulset;
    keep_supervisor_image(&mut changed, &live);
    assert_eq!(installer(&changed), "database-operator:0.2.0");

    // MongoDB members run no supervisor.
    let mongo = database("docs", Engine::Mongodb, "7.0", 3);
    let sts = Desired::build_with(&mongo, DEFAULT_AGENT_IMAGE, None, Topology::Streaming);
    assert!(
        sts.statefulset
            .spec
            .template
            .spec
            .unwrap()
            .init_containers
            .is_none()
    );
    assert!(sts.instance_access.is_none());
}
