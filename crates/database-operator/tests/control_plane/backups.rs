//! DatabaseBackup against the local control plane: on-demand backups run a
//! Job, scheduled runs become DatabaseBackup records, status follows the Job
//! (KWOK completes the pods), and retention prunes the records. KWOK runs no
//! containers, so the agent's own work (dump → S3 → restore) is proven by
//! the agent tests against real servers, not here.

use database_operator_api::v1;
use testkit::fixtures;
use testkit::harness;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::database::Phase;
use harness::{create, env, eventually};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(120);

fn database_with_destination(name: &str, namespace: &str, retention: &str) -> Database {
    engine_with_destination(name, namespace, retention, "postgresql", "16.4")
}

fn engine_with_destination(
    name: &str,
    namespace: &str,
    retention: &str,
    engine: &str,
    version: &str,
) -> Database {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"engine": engine, "version": version, "storage": {"size": "1Gi"},
            "backup": {"enabled": true, "schedule": "* * * * *", "retention": retention,
                "destination": {"s3": {"bucket": "backups", "region": "eu-west-1",
                    "endpoint": "http://s3.storage.svc:7070", "prefix": "team-a", "forcePathStyle": true,
                    "credentialsSecret": {"name": "s3-credentials"}}}}}
    }))
    .unwrap()
}

fn on_demand(name: &str, namespace: &str, database: &str) -> DatabaseBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
        "metadata": {"name": name, "namespace": namespace}, "spec": {"databaseRef": {"name": database}}
    }))
    .unwrap()
}

async fn wait_backup(
    env: &harness::Env,
    backups: &Api<DatabaseBackup>,
    name: &str,
    phase: BackupPhase,
) -> DatabaseBackup {
    eventually(env, &format!("backup {name} {phase:?}"), WAIT, || async {
        let b = backups.get(name).await.ok()?;
        (b.status.as_ref()?.phase == Some(phase)).then_some(b)
    })
    .await
}

#[tokio::test]
async fn an_on_demand_postgresql_backup_runs_the_agent_job_and_follows_it_to_completed() {
    on_demand_backup_of("postgresql", "16.4", "postgres:16.4").await;
}

#[tokio::test]
async fn an_on_demand_mysql_backup_runs_the_agent_job_and_follows_it_to_completed() {
    on_demand_backup_of("mysql", "8.4", "mysql:8.4").await;
}

#[tokio::test]
async fn an_on_demand_mongodb_backup_runs_the_agent_job_and_follows_it_to_completed() {
    on_demand_backup_of("mongodb", "7.0", "mongo:7.0").await;
}

async fn on_demand_backup_of(engine: &str, version: &str, image: &str) {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace(&format!("backup-on-demand-{engine}")).await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(
        &dbs,
        &engine_with_destination("orders", &ns, "30d", engine, version),
    )
    .await;
    eventually(env, "orders Running", WAIT, || async {
        (dbs.get("orders").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns);
    create(&backups, &on_demand("orders-manual-1", &ns, "orders")).await;

    let job = eventually(env, "the backup Job", WAIT, || async {
        Api::<Job>::namespaced(client.clone(), &ns)
            .get("orders-manual-1")
            .await
            .ok()
    })
    .await;
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("DatabaseBackup", "orders-manual-1")
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        init.image.as_deref(),
        Some(concat!("database-operator:", env!("CARGO_PKG_VERSION")))
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(image),
        "dump tools come from the engine's image"
    );
    let script = container.command.as_ref().unwrap().join(" ");
    assert!(
        script.contains("agent backup \"$@\" --key-name \"$BACKUP_NAME\""),
        "{script}"
    );
    let user = env_of_container(container, "DB_USER")
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (user.name.as_str(), user.key.as_str()),
        ("orders-secret", "username")
    );
    assert_eq!(
        env_of_container(container, "ENGINE").value.as_deref(),
        Some(engine)
    );
    let env_of = |name: &str| env_of_container(container, name);
    assert_eq!(
        env_of("S3_PREFIX").value.as_deref(),
        Some(format!("team-a/{ns}/orders").as_str())
    );
    assert_eq!(
        env_of("S3_ENDPOINT").value.as_deref(),
        Some("http://s3.storage.svc:7070")
    );
    let password = env_of("DB_PASSWORD")
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (password.name.as_str(), password.key.as_str()),
        ("orders-secret", "password")
    );
    let access = env_of("AWS_SECRET_ACCESS_KEY")
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (access.name.as_str(), access.key.as_str()),
        ("s3-credentials", "AWS_SECRET_ACCESS_KEY")
    );
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));

    let done = wait_backup(env, &backups, "orders-manual-1", BackupPhase::Completed).await;
    let status = done.status.unwrap();
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let ready = v1::condition::find(&status.conditions, "Ready").unwrap();
    // KWOK completes the pod without running the agent, so there is no report.
    assert!(
        ready.message.contains("reported no result"),
        "{}",
        ready.message
    );
}

#[tokio::test]
async fn a_backup_of_a_database_without_destination_fails_saying_why() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("backup-nowhere").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &fixtures::sample_in("test-postgres.yaml", &ns)).await;
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns);
    create(&backups, &on_demand("nowhere", &ns, "test-postgres")).await;
    let failed = wait_backup(env, &backups, "nowhere", BackupPhase::Failed).await;
    let ready = v1::condition::find(&failed.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready.reason, "NotConfigured");
    assert!(
        ready.message.contains("spec.backup.destination.s3"),
        "{}",
        ready.message
    );
}

#[tokio::test]
async fn scheduled_runs_become_records_and_retention_keeps_the_newest() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("backup-scheduled").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &database_with_destination("shop", &ns, "2")).await;
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), &ns);
    let cronjob = eventually(env, "the backup CronJob", WAIT, || async {
        cronjobs.get("shop-backup").await.ok()
    })
    .await;
    assert_eq!(cronjob.labels()["example.com/backup-stage"], "upload");
    let template = cronjob
        .spec
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(
        template.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "RETENTION")
            .unwrap()
            .value
            .as_deref(),
        Some("2")
    );

    // The real CronJob controller starts a run within a minute; it becomes a DatabaseBackup.
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns);
    let first = eventually(
        env,
        "a scheduled run recorded as a DatabaseBackup",
        WAIT,
        || async {
            let all = backups.list(&ListParams::default()).await.ok()?;
            all.items
                .into_iter()
                .find(|b| b.name_any().starts_with("shop-backup-"))
        },
    )
    .await;
    assert_eq!(first.spec.database_ref.name, "shop");
    wait_backup(env, &backups, &first.name_any(), BackupPhase::Completed).await;

    // Stop the schedule so no run lands mid-test, then three on-demand
    // backups: retention "2" keeps the newest two records.
    dbs.patch(
        "shop",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"backup": {"enabled": false}}})),
    )
    .await
    .unwrap();
    for i in 1..=3 {
        let name = format!("shop-manual-{i}");
        create(&backups, &on_demand(&name, &ns, "shop")).await;
        wait_backup(env, &backups, &name, BackupPhase::Completed).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let kept = eventually(env, "retention to leave two records", WAIT, || async {
        let all = backups.list(&ListParams::default()).await.ok()?;
        let names: Vec<String> = all
            .items
            .iter()
            .filter(|b| b.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert!(
        kept.contains(&"shop-manual-3".to_string()) && kept.contains(&"shop-manual-2".to_string()),
        "{kept:?}"
    );
}

fn env_of_container(
    container: &k8s_openapi::api::core::v1::Container,
    name: &str,
) -> k8s_openapi::api::core::v1::EnvVar {
    container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no env {name}"))
}
