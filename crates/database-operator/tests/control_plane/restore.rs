//! spec.restore and restore drills against the local control plane. KWOK
//! completes the Jobs' pods without running the agent, so what is proven
//! here is the operator's side: which Job it runs, with what, when, and how
//! the outcome reaches status. The agent's restore and verify are proven
//! against real servers in the agent_* tests, including the report the
//! drill recorder parses.

use database_operator_api::v1;
use testkit::fixtures::env_value;
use testkit::harness;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::restore::{RestorePhase, VerificationResult};
use harness::{create, env, eventually};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(120);

fn destination() -> serde_json::Value {
    serde_json::json!({"s3": {"bucket": "backups", "region": "eu-west-1",
        "endpoint": "http://s3.storage.svc:7070", "prefix": "team-a", "forcePathStyle": true,
        "credentialsSecret": {"name": "s3-credentials"}}})
}

fn database(name: &str, namespace: &str, spec_extra: serde_json::Value) -> Database {
    let mut spec =
        serde_json::json!({"engine": "postgresql", "version": "16.4", "storage": {"size": "1Gi"}});
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec
    }))
    .unwrap()
}

async fn restore_job_container(
    env: &harness::Env,
    jobs: &Api<Job>,
    name: &str,
) -> (Job, Container) {
    let job = eventually(env, &format!("Job {name}"), WAIT, || async {
        jobs.get(name).await.ok()
    })
    .await;
    let container = job.spec.clone().unwrap().template.spec.unwrap().containers[0].clone();
    (job, container)
}

async fn wait_restore(
    env: &harness::Env,
    dbs: &Api<Database>,
    name: &str,
    phase: RestorePhase,
) -> Database {
    eventually(env, &format!("{name} restore {phase:?}"), WAIT, || async {
        let db = dbs.get(name).await.ok()?;
        (db.status.as_ref()?.restore.as_ref()?.phase == Some(phase)).then_some(db)
    })
    .await
}

#[tokio::test]
async fn a_database_restored_from_a_location_is_not_running_until_the_restore_completes() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("restore-s3").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let location = "s3://backups/elsewhere/prod/orders/orders-29000001/dump.sql.zst";
    dbs.create(
        &PostParams::default(),
        &database(
            "orders-copy",
            &ns,
            serde_json::json!({"restore": {"s3": {"location": location,
                "endpoint": "http://minio.other:9000", "forcePathStyle": true,
                "credentialsSecret": {"name": "other-keys"}}}}),
        ),
    )
    .await
    .unwrap();

    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    let (job, agent) = restore_job_container(env, &jobs, "orders-copy-restore").await;
    assert_eq!(job.owner_references()[0].kind, "Database");
    assert_eq!(agent.name, "restore");
    assert_eq!(
        env_value(&agent, "S3_PREFIX").as_deref(),
        Some("elsewhere/prod/orders")
    );
    assert_eq!(
        env_value(&agent, "RESTORE_KEY").as_deref(),
        Some("orders-29000001")
    );
    assert_eq!(env_value(&agent, "RESTORE_FORCE").as_deref(), Some("false"));
    assert_eq!(
        env_value(&agent, "S3_ENDPOINT").as_deref(),
        Some("http://minio.other:9000")
    );
    assert_eq!(
        env_value(&agent, "DB_HOST"),
        Some(format!("orders-copy-primary.{ns}.svc"))
    );

    let done = wait_restore(env, &dbs, "orders-copy", RestorePhase::Completed).await;
    let status = done.status.unwrap();
    let restore = status.restore.as_ref().unwrap();
    assert_eq!(
        restore.source.as_deref(),
        Some("s3://backups/elsewhere/prod/orders/orders-29000001")
    );
    assert!(restore.completion_time.is_some());
    let restored = v1::condition::find(&status.conditions, "Restored").unwrap();
    assert_eq!(restored.status, v1::ConditionStatus::True);
    // Running comes only after the restore: Ready turned true no earlier.
    let db = eventually(env, "orders-copy Running", WAIT, || async {
        let db = dbs.get("orders-copy").await.ok()?;
        (db.status.as_ref()?.phase == Some(Phase::Running)).then_some(db)
    })
    .await;
    let status = db.status.unwrap();
    let ready = v1::condition::find(&status.conditions, "Ready").unwrap();
    let completed = status.restore.unwrap().completion_time.unwrap();
    assert!(
        ready.last_transition_time.as_ref().unwrap().0 >= completed.0,
        "Ready at {:?}, restore completed at {:?}",
        ready.last_transition_time,
        completed
    );

    // Done once: the spec cannot change it, and nothing runs again.
    let change = dbs
        .patch(
            "orders-copy",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"restore": {"force": true}}})),
        )
        .await;
    let message = format!("{:?}", change.unwrap_err());
    assert!(message.contains("restore cannot change"), "{message}");
}

#[tokio::test]
async fn a_restore_from_a_database_backup_uses_its_bucket_settings_and_waits_for_it() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("restore-ref").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    dbs.create(
        &PostParams::default(),
        &database(
            "shop",
            &ns,
            serde_json::json!({"backup": {"enabled": false, "destination": destination()}}),
        ),
    )
    .await
    .unwrap();
    // The copy names a backup that does not exist yet: it waits, saying so.
    dbs.create(
        &PostParams::default(),
        &database(
            "shop-copy",
            &ns,
            serde_json::json!({"restore": {"backupRef": {"name": "shop-manual-1"}, "force": true}}),
        ),
    )
    .await
    .unwrap();
    let waiting = wait_restore(env, &dbs, "shop-copy", RestorePhase::Pending).await;
    let restore = waiting.status.as_ref().unwrap().restore.clone().unwrap();
    assert!(
        restore
            .message
            .contains("waiting for DatabaseBackup shop-manual-1"),
        "{}",
        restore.message
    );
    assert_ne!(waiting.status.unwrap().phase, Some(Phase::Running));

    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns);
    let backup: DatabaseBackup = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
        "metadata": {"name": "shop-manual-1", "namespace": ns},
        "spec": {"databaseRef": {"name": "shop"}}
    }))
    .unwrap();
    create(&backups, &backup).await;
    eventually(env, "the backup to complete", WAIT, || async {
        let b = backups.get("shop-manual-1").await.ok()?;
        (b.status?.phase == Some(BackupPhase::Completed)).then_some(())
    })
    .await;
    // KWOK ran no agent, so nothing reported where the dump went; the
    // restore says so instead of guessing.
    let failed = wait_restore(env, &dbs, "shop-copy", RestorePhase::Failed).await;
    let status = failed.status.unwrap();
    assert!(
        status
            .restore
            .as_ref()
            .unwrap()
            .message
            .contains("records no location"),
        "{:?}",
        status.restore
    );
    assert_eq!(status.phase, Some(Phase::Failed));
    let degraded = v1::condition::find(&status.conditions, "Degraded").unwrap();
    assert_eq!(degraded.reason, "RestoreFailed");

    // A second copy, once the record says where the dump is (as the agent's
    // report would): the restore Job reads from there with the source
    // Database's endpoint and credentials.
    let location = format!("s3://backups/team-a/{ns}/shop/shop-manual-1/dump.sql.zst");
    backups
        .patch_status(
            "shop-manual-1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"location": location}})),
        )
        .await
        .unwrap();
    dbs.create(
        &PostParams::default(),
        &database(
            "shop-copy-2",
            &ns,
            serde_json::json!({"restore": {"backupRef": {"name": "shop-manual-1"}, "force": true}}),
        ),
    )
    .await
    .unwrap();
    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    let (_, agent) = restore_job_container(env, &jobs, "shop-copy-2-restore").await;
    assert_eq!(
        env_value(&agent, "S3_PREFIX"),
        Some(format!("team-a/{ns}/shop"))
    );
    assert_eq!(
        env_value(&agent, "RESTORE_KEY").as_deref(),
        Some("shop-manual-1")
    );
    assert_eq!(env_value(&agent, "RESTORE_FORCE").as_deref(), Some("true"));
    assert_eq!(
        env_value(&agent, "S3_ENDPOINT").as_deref(),
        Some("http://s3.storage.svc:7070")
    );
    let secret = agent
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
        .unwrap()
        .value_from
        .clone()
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(secret.name, "s3-credentials");
    let done = wait_restore(env, &dbs, "shop-copy-2", RestorePhase::Completed).await;
    assert_eq!(
        done.status.unwrap().restore.unwrap().backup_name.as_deref(),
        Some("shop-manual-1")
    );
}

#[tokio::test]
async fn restore_drills_run_on_their_schedule_and_their_outcome_reaches_status() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("drills").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut backup = serde_json::json!({"enabled": false, "destination": destination(),
        "verify": {"schedule": "0 5 * * 0"}});
    dbs.create(
        &PostParams::default(),
        &database("ledger", &ns, serde_json::json!({"backup": backup.clone()})),
    )
    .await
    .unwrap();
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), &ns);
    let cronjob = eventually(env, "the drill CronJob", WAIT, || async {
        cronjobs.get("ledger-verify").await.ok()
    })
    .await;
    assert_eq!(cronjob.spec.schedule, "0 5 * * 0");
    let template = cronjob.spec.job_template.clone();

    // Run one now, as `kubectl create job --from=cronjob/ledger-verify` does.
    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    let run = Job {
        metadata: ObjectMeta {
            name: Some("ledger-verify-manual".into()),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            owner_references: Some(vec![
                kube::Resource::controller_owner_ref(&cronjob, &()).unwrap(),
            ]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            ..template.spec.clone().unwrap()
        }),
        ..Default::default()
    };
    create(&jobs, &run).await;

    // KWOK completes the pod without a report: a drill that proves nothing
    // is recorded as failed, on the Database and in its condition.
    let db = eventually(env, "the drill recorded", WAIT, || async {
        let db = dbs.get("ledger").await.ok()?;
        let status = db.status.as_ref()?;
        let condition = v1::condition::find(&status.conditions, "BackupVerified")?;
        (status.backup_verification.is_some() && condition.reason == "DrillFailed").then_some(db)
    })
    .await;
    let status = db.status.unwrap();
    let drill = status.backup_verification.unwrap();
    assert_eq!(drill.result, VerificationResult::Failed);
    assert_eq!(drill.job, "ledger-verify-manual");
    assert!(
        drill.message.contains("reported no result"),
        "{}",
        drill.message
    );
    let condition = v1::condition::find(&status.conditions, "BackupVerified").unwrap();
    assert_eq!(condition.status, v1::ConditionStatus::False);
    // The drill's pod carries the Database's selector labels, but it is no
    // member: it never gets a replication role (so no Service selects it).
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns)
        .list(&kube::api::ListParams::default().labels("job-name=ledger-verify-manual"))
        .await
        .unwrap();
    assert!(!pods.items.is_empty(), "KWOK ran the drill's pod");
    for pod in &pods.items {
        assert_eq!(
            pod.labels().get("example.com/role"),
            None,
            "{:?}",
            pod.metadata.name
        );
    }

    // Without a schedule the CronJob goes.
    backup["verify"] = serde_json::Value::Null;
    dbs.patch(
        "ledger",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"backup": backup}})),
    )
    .await
    .unwrap();
    eventually(env, "the drill CronJob deleted", WAIT, || async {
        match cronjobs.get_opt("ledger-verify").await {
            Ok(None) => Some(()),
            Ok(Some(c)) if c.metadata.deletion_timestamp.is_some() => Some(()),
            _ => None,
        }
    })
    .await;

    // Drills need a bucket: refused at admission without one.
    let refused = dbs
        .create(
            &PostParams::default(),
            &database(
                "nowhere",
                &ns,
                serde_json::json!({"backup": {"verify": {"schedule": "@daily"}}}),
            ),
        )
        .await;
    let message = format!("{:?}", refused.unwrap_err());
    assert!(message.contains("verify needs destination.s3"), "{message}");
}
