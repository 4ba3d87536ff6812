//! The operator against a real control plane: etcd, kube-apiserver,
//! controller-manager and scheduler, with KWOK making pods Running and Ready.
//! Each test is what a user would do and see.

use database_operator_api::v1;
use testkit::harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use database_operator_api::v1::database::{DeletionPolicy, Phase};
use database_operator_api::v1::{ConditionStatus, Database};
use futures::StreamExt;
use harness::{create, env, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use testkit::fixtures::sample_in;

const WAIT: Duration = Duration::from_secs(90);

/// Records every phase a Database passes through, in order.
fn record_phases(client: Client, namespace: &str, name: &str) -> Arc<Mutex<Vec<Phase>>> {
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = phases.clone();
    let api = Api::<Database>::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(db)) = stream.next().await {
            if let Some(phase) = db.status.and_then(|s| s.phase) {
                let mut phases = seen.lock().unwrap();
                if phases.last() != Some(&phase) {
                    phases.push(phase);
                }
            }
        }
    });
    phases
}

async fn wait_for_phase(
    env: &harness::Env,
    dbs: &Api<Database>,
    name: &str,
    phase: Phase,
) -> Database {
    eventually(env, &format!("{name} to be {phase}"), WAIT, || async {
        let db = dbs.get(name).await.ok()?;
        (db.status.as_ref()?.phase == Some(phase)).then_some(db)
    })
    .await
}

async fn wait_for_absence<K>(env: &harness::Env, api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(env, &format!("{name} to be gone"), WAIT, || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn test_postgres_is_created_runs_scales_to_three_and_back_to_running() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("lifecycle").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let phases = record_phases(client.clone(), &ns, "test-postgres");
    tokio::time::sleep(Duration::from_millis(300)).await;
    create(&dbs, &sample_in("test-postgres.yaml", &ns)).await;

    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let sts = eventually(env, "StatefulSet test-postgres", WAIT, || async {
        statefulsets.get("test-postgres").await.ok()
    })
    .await;
    assert_eq!(sts.spec.replicas, Some(1));
    let pod = sts.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("postgres:13.8"));
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("test-postgres-config")
        .await
        .unwrap();
    assert!(config.data.unwrap()["postgresql.conf"].contains("shared_buffers"));
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("test-postgres-secret")
        .await
        .unwrap();
    assert!(secret.data.unwrap()["password"].0.len() >= 24);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    for name in ["test-postgres-headless", "test-postgres-primary"] {
        services
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        services
            .get_opt("test-postgres-readonly")
            .await
            .unwrap()
            .is_none()
    );
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get("test-postgres")
        .await
        .unwrap();

    let running = wait_for_phase(env, &dbs, "test-postgres", Phase::Running).await;
    let status = running.status.unwrap();
    let ready = v1::condition::find(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.status, ConditionStatus::True);
    assert!(ready.last_transition_time.is_some());
    assert_eq!(ready.observed_generation, running.metadata.generation);
    assert_eq!(status.observed_generation, running.metadata.generation);
    assert_eq!(
        status.endpoints.unwrap().primary.as_deref(),
        Some(format!("test-postgres-primary.{ns}.svc:5432").as_str())
    );
    let seen = phases.lock().unwrap().clone();
    assert!(
        seen.contains(&Phase::Creating) && seen.ends_with(&[Phase::Running]),
        "phases: {seen:?}"
    );

    dbs.patch(
        "test-postgres",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually(env, "StatefulSet scaled to 3", WAIT, || async {
        (statefulsets.get("test-postgres").await.ok()?.spec.replicas == Some(3)).then_some(())
    })
    .await;
    eventually(env, "Running with 3 ready replicas", WAIT, || async {
        let status = dbs.get("test-postgres").await.ok()?.status?;
        (status.phase == Some(Phase::Running) && status.ready_replicas == Some(3)).then_some(status)
    })
    .await;
    let seen = phases.lock().unwrap().clone();
    let scaling = seen
        .iter()
        .rposition(|p| *p == Phase::Scaling)
        .expect("passed through Scaling");
    assert_eq!(seen.last(), Some(&Phase::Running), "phases: {seen:?}");
    assert!(scaling > seen.iter().position(|p| *p == Phase::Running).unwrap());
    services.get("test-postgres-readonly").await.unwrap();
    let endpoints = dbs
        .get("test-postgres")
        .await
        .unwrap()
        .status
        .unwrap()
        .endpoints
        .unwrap();
    assert_eq!(
        endpoints.readonly,
        vec![format!("test-postgres-readonly.{ns}.svc:5432")]
    );

    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let reasons: Vec<String> = events
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    for reason in ["Created", "Running", "Scaling"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} event in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn e2e_test_db_gets_its_backup_cronjob_with_the_schedule() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("backups").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &sample_in("e2e-test-db.yaml", &ns)).await;
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), &ns);
    let cronjob = eventually(env, "CronJob e2e-test-db-backup", WAIT, || async {
        cronjobs.get("e2e-test-db-backup").await.ok()
    })
    .await;
    assert_eq!(cronjob.spec.schedule, "0 2 * * *");
    assert_eq!(cronjob.spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(cronjob.labels()["example.com/backup-stage"], "dump-only");
    let container = &cronjob
        .spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let script = container.command.as_ref().unwrap().join(" ");
    assert!(
        script.contains("pg_dumpall") && script.contains("e2e-test-db-primary"),
        "{script}"
    );
    wait_for_phase(env, &dbs, "e2e-test-db", Phase::Running).await;
    assert_eq!(
        Api::<StatefulSet>::namespaced(client, &ns)
            .get("e2e-test-db")
            .await
            .unwrap()
            .spec
            .replicas,
        Some(2)
    );

    // Turning backups off removes the CronJob.
    dbs.patch(
        "e2e-test-db",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"backup": {"enabled": false}}})),
    )
    .await
    .unwrap();
    wait_for_absence(env, &cronjobs, "e2e-test-db-backup").await;
}

#[tokio::test]
async fn every_engine_reaches_running() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("engines").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    for file in [
        "postgresql-sample.yaml",
        "mysql-sample.yaml",
        "mariadb-sample.yaml",
        "mongodb-sample.yaml",
        "postgres-sample.yaml",
    ] {
        create(&dbs, &sample_in(file, &ns)).await;
    }
    for (name, image, config) in [
        ("postgresql-sample", "postgres:16.4", "postgresql.conf"),
        ("mysql-sample", "mysql:8.4", "my.cnf"),
        ("mariadb-sample", "mariadb:11.4", "my.cnf"),
        ("mongodb-sample", "mongo:7.0", "mongod.conf"),
        ("postgres-sample", "postgres:13.8", "postgresql.conf"),
    ] {
        wait_for_phase(env, &dbs, name, Phase::Running).await;
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .unwrap();
        assert_eq!(
            sts.spec.template.spec.unwrap().containers[0]
                .image
                .as_deref(),
            Some(image)
        );
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get(&format!("{name}-config"))
            .await
            .unwrap();
        assert!(cm.data.unwrap().contains_key(config), "{name}");
    }
}

#[tokio::test]
async fn deleting_a_database_removes_its_children_and_keeps_its_data_by_default() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("deletion").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut keep = sample_in("mysql-sample.yaml", &ns);
    keep.metadata.name = Some("keep".into());
    let mut drop = sample_in("mongodb-sample.yaml", &ns);
    drop.metadata.name = Some("drop".into());
    drop.spec.deletion_policy = DeletionPolicy::Delete;
    for db in [&keep, &drop] {
        dbs.create(&PostParams::default(), db).await.unwrap();
    }
    for name in ["keep", "drop"] {
        let db = wait_for_phase(env, &dbs, name, Phase::Running).await;
        assert!(
            db.finalizers()
                .iter()
                .any(|f| f == "database.example.com/finalizer")
        );
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    for claim in ["data-keep-0", "data-drop-0"] {
        eventually(env, claim, WAIT, || async { claims.get(claim).await.ok() }).await;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let password = |s: Secret| s.data.unwrap()["password"].0.clone();
    let keep_password = password(secrets.get("keep-secret").await.unwrap());
    for name in ["keep", "drop"] {
        dbs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["keep", "drop"] {
        wait_for_absence(env, &dbs, name).await;
        wait_for_absence(
            env,
            &Api::<StatefulSet>::namespaced(client.clone(), &ns),
            name,
        )
        .await;
        wait_for_absence(
            env,
            &Api::<ConfigMap>::namespaced(client.clone(), &ns),
            &format!("{name}-config"),
        )
        .await;
        wait_for_absence(
            env,
            &Api::<Service>::namespaced(client.clone(), &ns),
            &format!("{name}-primary"),
        )
        .await;
    }
    assert!(
        claims.get_opt("data-keep-0").await.unwrap().is_some(),
        "Retain must keep the data"
    );
    // ... and the password it was initialised with; Delete drops both.
    wait_for_absence(env, &secrets, "drop-secret").await;
    let kept = secrets.get("keep-secret").await.unwrap();
    assert!(kept.metadata.owner_references.is_none_or(|o| o.is_empty()));
    eventually(env, "data-drop-0 to be deleted", WAIT, || async {
        let claim = claims.get_opt("data-drop-0").await.ok()?;
        claim
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    let events = Api::<Event>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let notes: Vec<String> = events
        .items
        .iter()
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("kept PersistentVolumeClaims data-keep-0")
                && n.contains("the admin Secret keep-secret")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("deleted PersistentVolumeClaims data-drop-0")),
        "{notes:?}"
    );
    // Created again under its name, the Database finds its data and its
    // password.
    dbs.create(&PostParams::default(), &keep).await.unwrap();
    wait_for_phase(env, &dbs, "keep", Phase::Running).await;
    assert_eq!(
        password(secrets.get("keep-secret").await.unwrap()),
        keep_password
    );
}

/// The admin Secret of an initialised Database deleted by hand: the
/// operator does not make a new password the database would not have; it
/// says so loudly (Failed, Degraded, a Warning event), and the Database
/// runs again once the Secret is restored.
#[tokio::test]
async fn a_deleted_admin_secret_is_reported_never_regenerated_and_restorable() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("lost-secret").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    create(&dbs, &sample_in("postgresql-sample.yaml", &ns)).await;
    wait_for_phase(env, &dbs, "postgresql-sample", Phase::Running).await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    eventually(env, "the data volume", WAIT, || async {
        claims.get_opt("data-postgresql-sample-0").await.ok()?
    })
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let original = secrets.get("postgresql-sample-secret").await.unwrap();
    secrets
        .delete("postgresql-sample-secret", &DeleteParams::default())
        .await
        .unwrap();
    let db = wait_for_phase(env, &dbs, "postgresql-sample", Phase::Failed).await;
    let status = db.status.unwrap();
    let degraded = v1::condition::find(&status.conditions, v1::condition::types::DEGRADED).unwrap();
    assert_eq!(degraded.status, ConditionStatus::True);
    assert_eq!(degraded.reason, "AdminSecretMissing");
    assert!(
        degraded.message.contains("postgresql-sample-secret")
            && degraded.message.contains("data-postgresql-sample-0"),
        "{}",
        degraded.message
    );
    let ready = v1::condition::find(&status.conditions, v1::condition::types::READY).unwrap();
    assert_eq!(ready.status, ConditionStatus::False);
    // Not made again, even after more passes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        secrets
            .get_opt("postgresql-sample-secret")
            .await
            .unwrap()
            .is_none(),
        "the operator made a new admin Secret"
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let warnings: Vec<&Event> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AdminSecretMissing"))
        .collect();
    assert_eq!(warnings.len(), 1, "said once: {warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    // The documented recovery: put the Secret back (the same password, or
    // one set through the engine first).
    let restored: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "postgresql-sample-secret", "namespace": ns},
        "data": original.data.clone().unwrap(),
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    let db = wait_for_phase(env, &dbs, "postgresql-sample", Phase::Running).await;
    let degraded = v1::condition::find(
        &db.status.unwrap().conditions,
        v1::condition::types::DEGRADED,
    )
    .cloned()
    .unwrap();
    assert_eq!(degraded.status, ConditionStatus::False);
}

#[tokio::test]
async fn cleanup_that_cannot_finish_lets_go_after_the_deadline_and_says_what_was_left() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("stuck-cleanup").await;
    // A real admission policy that refuses to delete claims in this namespace.
    let policy = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "deny-claim-deletion"},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["DELETE"], "resources": ["persistentvolumeclaims"]}]},
            "validations": [{"expression": "false", "message": "claims are protected in this namespace"}]}
    });
    let binding = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "deny-claim-deletion"},
        "spec": {"policyName": "deny-claim-deletion", "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}
    });
    let ar = |kind: &str, plural: &str| kube::core::ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    for (value, resource) in [
        (
            policy,
            ar("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        ),
        (
            binding,
            ar(
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
            ),
        ),
    ] {
        let api = Api::<kube::core::DynamicObject>::all_with(client.clone(), &resource);
        let object: kube::core::DynamicObject = serde_json::from_value(value).unwrap();
        api.patch(
            &object.name_any(),
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    }
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut db = sample_in("postgresql-sample.yaml", &ns);
    db.spec.deletion_policy = DeletionPolicy::Delete;
    create(&dbs, &db).await;
    wait_for_phase(env, &dbs, "postgresql-sample", Phase::Running).await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    eventually(env, "the data claim", WAIT, || async {
        claims.get("data-postgresql-sample-0").await.ok()
    })
    .await;
    // The policy takes a moment to reach the apiserver's admission chain.
    eventually(env, "the policy to deny claim deletion", WAIT, || async {
        let dry = DeleteParams {
            dry_run: true,
            ..Default::default()
        };
        claims
            .delete("data-postgresql-sample-0", &dry)
            .await
            .is_err()
            .then_some(())
    })
    .await;

    dbs.delete("postgresql-sample", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_phase(env, &dbs, "postgresql-sample", Phase::Deleting).await;
    wait_for_absence(env, &dbs, "postgresql-sample").await;
    assert!(
        claims
            .get_opt("data-postgresql-sample-0")
            .await
            .unwrap()
            .is_some()
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let abandoned = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("CleanupAbandoned"))
        .expect("a CleanupAbandoned event");
    assert!(
        abandoned
            .message
            .as_ref()
            .unwrap()
            .contains("may be left behind")
    );
    for (kind, plural, name) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            "deny-claim-deletion",
        ),
        (
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            "deny-claim-deletion",
        ),
    ] {
        let api = Api::<kube::core::DynamicObject>::all_with(client.clone(), &ar(kind, plural));
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test]
async fn the_api_server_refuses_the_seeds_invalid_inputs_naming_the_field() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("invalid").await;
    let resource = kube::core::ApiResource::erase::<Database>(&());
    let dbs = Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), &ns, &resource);
    let cases = [
        (
            serde_json::json!({"engine": "oracle", "version": "13.8", "storage": {"size": "1Gi"}}),
            "spec.engine",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "latest", "storage": {"size": "1Gi"}}),
            "spec.version",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "replicas": 0, "storage": {"size": "1Gi"}}),
            "spec.replicas",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "replicas": 11, "storage": {"size": "1Gi"}}),
            "spec.replicas",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "storage": {"size": "10GB"}}),
            "spec.storage.size",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "storage": {"size": "1Gi"},
            "backup": {"enabled": true, "schedule": "every day at two"}}),
            "spec.backup.schedule",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "storage": {"size": "1Gi"},
            "backup": {"enabled": true, "schedule": "0 2 * * * *"}}),
            "spec.backup.schedule",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "storage": {"size": "1Gi"},
            "backup": {"enabled": true}}),
            "spec.backup.schedule",
        ),
        (
            serde_json::json!({"engine": "postgresql", "version": "13.8", "storage": {"size": "1K"}}),
            "spec.storage.size",
        ),
    ];
    refused_naming_the_field(&dbs, &ns, "bad", cases).await;
}

/// Invalid `spec.replication` settings: each is refused with the field
/// named. The Databases are named `<prefix>-<i>`, so a switchover target
/// for case `i` is `<prefix>-<i>-<ordinal>`.
#[tokio::test]
async fn invalid_replication_settings_are_refused_naming_the_field() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("invalid-replication").await;
    let resource = kube::core::ApiResource::erase::<Database>(&());
    let dbs = Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), &ns, &resource);
    let pg = |replicas: i32, replication: serde_json::Value| {
        serde_json::json!({"engine": "postgresql", "version": "16.4", "replicas": replicas,
                           "storage": {"size": "1Gi"}, "replication": replication})
    };
    let cases = [
        (
            pg(3, serde_json::json!({"failoverDelay": "1s"})),
            "failoverDelay",
        ),
        (
            pg(3, serde_json::json!({"failoverDelay": "2h"})),
            "failoverDelay",
        ),
        (
            pg(3, serde_json::json!({"failoverDelay": "1d"})),
            "failoverDelay",
        ),
        (
            pg(3, serde_json::json!({"maxFailoverLag": "16MB"})),
            "maxFailoverLag",
        ),
        (pg(3, serde_json::json!({"mode": "semi"})), "mode"),
        (
            pg(1, serde_json::json!({"mode": "sync"})),
            "spec.replication.mode",
        ),
        (
            pg(3, serde_json::json!({"primary": "elsewhere-1"})),
            "spec.replication.primary",
        ),
        (
            pg(3, serde_json::json!({"primary": "repl-7-3"})),
            "spec.replication.primary",
        ),
        (
            serde_json::json!({"engine": "mongodb", "version": "7.0", "replicas": 3,
                               "storage": {"size": "1Gi"}, "replication": {"failoverDelay": "30s"}}),
            "spec.replication",
        ),
        (
            serde_json::json!({"engine": "mysql", "flavor": "mariadb", "version": "11.4", "replicas": 1,
                               "storage": {"size": "1Gi"}, "replication": {"mode": "sync"}}),
            "spec.replication.mode",
        ),
    ];
    refused_naming_the_field(&dbs, &ns, "repl", cases).await;
    // The valid twin of case 7 is accepted: the rule is not refusing all.
    let valid: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "repl-ok", "namespace": ns},
        "spec": pg(3, serde_json::json!({"primary": "repl-ok-2", "mode": "sync", "failoverDelay": "1m30s"}))
    }))
    .unwrap();
    dbs.create(&PostParams::default(), &valid).await.unwrap();
    // MariaDB replicates, semi-synchronously in sync mode.
    let maria: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "repl-maria", "namespace": ns},
        "spec": {"engine": "mysql", "flavor": "mariadb", "version": "11.4", "replicas": 3,
                 "storage": {"size": "1Gi"},
                 "replication": {"primary": "repl-maria-1", "mode": "sync", "failoverDelay": "45s"}}
    }))
    .unwrap();
    dbs.create(&PostParams::default(), &maria).await.unwrap();
    // So does MySQL.
    let mysql: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "repl-mysql", "namespace": ns},
        "spec": {"engine": "mysql", "version": "8.4", "replicas": 3,
                 "storage": {"size": "1Gi"},
                 "replication": {"mode": "sync", "failoverDelay": "30s"}}
    }))
    .unwrap();
    dbs.create(&PostParams::default(), &mysql).await.unwrap();
}

/// Creates a Database named `<prefix>-<i>` for each case and asserts the API
/// server refuses it with a message naming the field.
async fn refused_naming_the_field(
    dbs: &Api<kube::core::DynamicObject>,
    ns: &str,
    prefix: &str,
    cases: impl IntoIterator<Item = (serde_json::Value, &str)>,
) {
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let db: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": format!("{prefix}-{i}"), "namespace": ns}, "spec": spec
        }))
        .unwrap();
        let error = dbs
            .create(&PostParams::default(), &db)
            .await
            .expect_err(&format!("case {i} ({field}) was accepted"));
        let kube::Error::Api(status) = error else {
            panic!("case {i}: {error}")
        };
        assert_eq!(status.code, 422, "case {i}: {}", status.message);
        assert!(
            status.message.contains(field),
            "case {i}: message {:?} does not name {field}",
            status.message
        );
    }
}

#[tokio::test]
async fn children_deleted_or_edited_by_hand_are_put_back() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("drift").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut db = sample_in("mysql-sample.yaml", &ns);
    db.spec.replicas = 2;
    create(&dbs, &db).await;
    wait_for_phase(env, &dbs, "mysql-sample", Phase::Running).await;
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);

    // Deleted by hand: recreated.
    let old_sts_uid = statefulsets.get("mysql-sample").await.unwrap().uid();
    statefulsets
        .delete("mysql-sample", &DeleteParams::default())
        .await
        .unwrap();
    services
        .delete("mysql-sample-primary", &DeleteParams::default())
        .await
        .unwrap();
    config_maps
        .delete("mysql-sample-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually(env, "a new StatefulSet", WAIT, || async {
        let sts = statefulsets.get_opt("mysql-sample").await.ok()??;
        (sts.uid() != old_sts_uid && sts.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    eventually(env, "the primary Service back", WAIT, || async {
        services.get("mysql-sample-primary").await.ok()
    })
    .await;
    let config = eventually(env, "the ConfigMap back", WAIT, || async {
        config_maps.get("mysql-sample-config").await.ok()
    })
    .await;
    assert!(config.data.unwrap()["my.cnf"].contains("innodb_buffer_pool_size"));

    // Edited by hand: put back.
    let hand = PatchParams::apply("someone-by-hand").force();
    config_maps
        .patch("mysql-sample-config", &hand, &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "data": {"my.cnf": "[mysqld]\nmax_connections = 1\n"}
        })))
        .await
        .unwrap();
    statefulsets
        .patch(
            "mysql-sample",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    services
        .patch("mysql-sample-primary", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"selector": {"app.kubernetes.io/instance": "someone-else"}}})))
        .await
        .unwrap();
    eventually(env, "the configuration restored", WAIT, || async {
        let data = config_maps.get("mysql-sample-config").await.ok()?.data?;
        data["my.cnf"]
            .contains("innodb_buffer_pool_size")
            .then_some(())
    })
    .await;
    eventually(env, "replicas restored to 2", WAIT, || async {
        (statefulsets.get("mysql-sample").await.ok()?.spec.replicas == Some(2)).then_some(())
    })
    .await;
    eventually(env, "the selector restored", WAIT, || async {
        let selector = services
            .get("mysql-sample-primary")
            .await
            .ok()?
            .spec?
            .selector?;
        (selector["app.kubernetes.io/instance"] == "mysql-sample").then_some(())
    })
    .await;
    wait_for_phase(env, &dbs, "mysql-sample", Phase::Running).await;
}

#[tokio::test]
async fn a_new_database_is_isolated_by_its_network_policy_which_is_kept_and_removed_on_request() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("network").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut db = sample_in("postgresql-sample.yaml", &ns);
    db.spec.network = Some(
        serde_json::from_value(serde_json::json!({
            "allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}},
                           "podSelector": {"matchLabels": {"app": "api"}}}]
        }))
        .unwrap(),
    );
    create(&dbs, &db).await;
    wait_for_phase(env, &dbs, "postgresql-sample", Phase::Running).await;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    // The API server accepted it as built: the Database's pods, ingress only.
    let policy = policies.get("postgresql-sample").await.unwrap();
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..])
    );
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
        "postgresql-sample"
    );
    let from = spec.ingress.unwrap()[0].from.clone().unwrap();
    assert_eq!(
        from.len(),
        3,
        "members and Jobs, the operator, the user's peer"
    );

    // Deleted by hand: recreated; edited by hand: put back.
    let uid = policies.get("postgresql-sample").await.unwrap().uid();
    policies
        .delete("postgresql-sample", &DeleteParams::default())
        .await
        .unwrap();
    eventually(env, "the NetworkPolicy recreated", WAIT, || async {
        let p = policies.get_opt("postgresql-sample").await.ok()??;
        (p.uid() != uid).then_some(())
    })
    .await;
    policies
        .patch(
            "postgresql-sample",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"ingress": [{}]}})),
        )
        .await
        .unwrap();
    eventually(env, "the NetworkPolicy restored", WAIT, || async {
        let p = policies.get("postgresql-sample").await.ok()?;
        let rules = p.spec?.ingress?;
        (rules[0].from.as_ref().is_some_and(|f| f.len() == 3)).then_some(())
    })
    .await;

    // isolate: false removes it.
    dbs.patch(
        "postgresql-sample",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"network": {"isolate": false}}})),
    )
    .await
    .unwrap();
    eventually(env, "the NetworkPolicy removed", WAIT, || async {
        policies
            .get_opt("postgresql-sample")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // A peer without any selector is refused at admission, naming the field.
    let refused = dbs
        .patch(
            "postgresql-sample",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"network": {"allowFrom": [{}]}}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("spec.network.allowFrom[0]"), "{refused}");
}

#[tokio::test]
async fn unsafe_changes_are_refused_at_admission_naming_the_field() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("immutable").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut db = sample_in("postgresql-sample.yaml", &ns);
    db.spec.storage.storage_class = Some("standard".into());
    create(&dbs, &db).await;
    let cases = [
        (
            serde_json::json!({"spec": {"engine": "mysql"}}),
            "spec.engine",
            "immutable",
        ),
        (
            serde_json::json!({"spec": {"storage": {"size": "1Gi"}}}),
            "spec.storage.size",
            "cannot shrink",
        ),
        (
            serde_json::json!({"spec": {"storage": {"storageClass": "other"}}}),
            "spec.storage.storageClass",
            "immutable",
        ),
        (
            serde_json::json!({"spec": {"version": "15.4"}}),
            "spec.version",
            "downgrade",
        ),
        (
            serde_json::json!({"spec": {"version": "17.0"}}),
            "spec.version",
            "pg_upgrade",
        ),
        (
            serde_json::json!({"spec": {"flavor": "mariadb"}}),
            "spec.flavor",
            "only the mysql engine",
        ),
    ];
    let mysql = sample_in("mysql-sample.yaml", &ns);
    create(&dbs, &mysql).await;
    let cases = cases.into_iter().map(|c| ("postgresql-sample", c)).chain([(
        "mysql-sample",
        (
            serde_json::json!({"spec": {"flavor": "mariadb"}}),
            "spec.flavor",
            "immutable",
        ),
    )]);
    for (name, (patch, field, words)) in cases {
        let error = dbs
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err(&format!("{patch} was accepted"));
        let kube::Error::Api(status) = error else {
            panic!("{error}")
        };
        assert_eq!(status.code, 422, "{}", status.message);
        assert!(
            status.message.contains(field) && status.message.contains(words),
            "{patch}: {}",
            status.message
        );
    }
    // Growing storage and a minor version change are allowed.
    dbs.patch(
        "postgresql-sample",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"storage": {"size": "10Gi"}, "version": "16.6"}}),
        ),
    )
    .await
    .unwrap();
    // Naming the default flavor changes nothing, so it is allowed.
    dbs.patch(
        "mysql-sample",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"flavor": "mysql"}})),
    )
    .await
    .unwrap();
}

/// A PostgreSQL Database from before the operator replicated: its
/// StatefulSet (as that operator applied it, without the streaming
/// template) is left exactly as it is and the Database says why, until
/// `spec.replication.reseedIndependentReplicas` converts it.
#[tokio::test]
async fn a_database_from_before_replication_is_left_alone_until_converted() {
    use operator::builders::meta::APPLIED_HASH;
    use operator::builders::topology::{TOPOLOGY_ANNOTATION, Topology};
    use operator::builders::{DEFAULT_AGENT_IMAGE, Desired, hash_of};

    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("db-legacy").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let mut db = sample_in("postgresql-sample.yaml", &ns);
    db.spec.replicas = 2;
    let db = create(&dbs, &db).await;
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let name = db.name_any();
    eventually(env, "the StatefulSet", WAIT, || async {
        statefulsets.get_opt(&name).await.ok()?
    })
    .await;

    // What the operator of the previous release applied.
    let mut old =
        Desired::build_with(&db, DEFAULT_AGENT_IMAGE, None, Topology::Independent).statefulset;
    let hash = hash_of(&old);
    old.annotations_mut().insert(APPLIED_HASH.to_owned(), hash);
    // A reconcile already under way (its cache still holding the new
    // operator's StatefulSet) may apply the streaming template over it: the
    // old release's StatefulSet is put back until the operator has seen it.
    // In a real upgrade it is there before the new operator starts.
    let condition = eventually(env, "the IndependentMembers condition", WAIT, || async {
        let live = statefulsets.get(&name).await.ok()?;
        let streams = live
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .is_some_and(|a| a.contains_key(TOPOLOGY_ANNOTATION));
        if streams {
            statefulsets
                .patch(
                    &name,
                    &PatchParams::apply("database-operator").force(),
                    &Patch::Apply(&old),
                )
                .await
                .ok()?;
            return None;
        }
        let status = dbs.get(&name).await.ok()?.status?;
        v1::condition::find(&status.conditions, "Replicating")
            .filter(|c| c.reason == "IndependentMembers")
            .cloned()
    })
    .await;
    assert_eq!(condition.status, ConditionStatus::False);
    assert!(condition.message.contains("reseedIndependentReplicas"));
    // Created before network isolation too: no NetworkPolicy cuts off the
    // clients it has (it is opened up again once the old StatefulSet is
    // back in place).
    let policies =
        Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(client.clone(), &ns);
    eventually(
        env,
        "no NetworkPolicy for the old Database",
        WAIT,
        || async { policies.get_opt(&name).await.ok()?.is_none().then_some(()) },
    )
    .await;
    let before = statefulsets.get(&name).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = statefulsets.get(&name).await.unwrap();
    // The StatefulSet controller writes its status; nobody writes its spec.
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "the old StatefulSet's spec was rewritten"
    );
    let template = after.spec.template;
    assert!(
        !template
            .metadata
            .unwrap()
            .annotations
            .unwrap()
            .contains_key(TOPOLOGY_ANNOTATION)
    );
    assert!(template.spec.unwrap().containers[0].command.is_none());
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let readonly = services.get(&format!("{name}-readonly")).await.unwrap();
    assert_eq!(
        readonly.spec.unwrap().selector.unwrap()["apps.kubernetes.io/pod-index"],
        "0",
        "reads still go to the first member"
    );

    // Opting in converts it: the streaming template, role-selecting Services.
    dbs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"replication": {"reseedIndependentReplicas": true}}}),
        ),
    )
    .await
    .unwrap();
    eventually(env, "the streaming template", WAIT, || async {
        let sts = statefulsets.get(&name).await.ok()?;
        let annotations = sts.spec.template.metadata?.annotations?;
        (annotations.get(TOPOLOGY_ANNOTATION).map(String::as_str) == Some("streaming"))
            .then_some(())
    })
    .await;
    let readonly = services.get(&format!("{name}-readonly")).await.unwrap();
    assert_eq!(
        readonly.spec.unwrap().selector.unwrap()["example.com/role"],
        "replica"
    );
}
