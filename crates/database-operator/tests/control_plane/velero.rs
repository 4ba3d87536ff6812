//! `spec.backup.method: velero` against the local control plane, with
//! Velero's real Schedule CRD (fetched by `hack/crds/fetch.sh` from Velero's
//! Go module). No Velero server runs here: what is proven is the Schedule the
//! operator keeps (and removes) and how it behaves before Velero exists; what
//! Velero then does with a Schedule is Velero's.
//!
//! Installing the CRD changes the whole control plane of this test binary,
//! so the lifecycle runs as one test, in order.

use testkit::harness;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{ConditionStatus, find, types};
use database_operator_api::v1::database::Phase;
use harness::{create, env, eventually};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(90);
const WRITES: &str = "database_operator_api_writes_total";
const RECONCILES: &str = "database_operator_reconciliations_total";

fn schedules_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "Schedule"),
        "schedules",
    )
}

fn velero_database(name: &str, namespace: &str) -> Database {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"engine": "postgresql", "version": "16.4", "replicas": 2, "storage": {"size": "1Gi"},
            "backup": {"enabled": true, "schedule": "30 1 * * *", "retention": "7d", "method": "velero",
                "velero": {"storageLocation": "default", "defaultVolumesToFsBackup": true}}}
    }))
    .unwrap()
}

/// The BackupConfigured condition as (status, reason, message).
fn backup_configured(db: &Database) -> Option<(ConditionStatus, String, String)> {
    let c = find(&db.status.as_ref()?.conditions, types::BACKUP_CONFIGURED)?;
    Some((c.status, c.reason.clone(), c.message.clone()))
}

/// Failed reconciles of the Database controller, from /metrics.
async fn database_reconcile_errors(env: &harness::Env) -> f64 {
    let (_, body) = env.http_get("/metrics").await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("database_operator_reconciliations_total{"))
        .filter(|l| l.contains("controller=\"database\"") && !l.contains("result=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the operator has made no write for two seconds.
async fn settle(env: &harness::Env) -> f64 {
    let mut last = env.metric(WRITES).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = env.metric(WRITES).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Changes an annotation, which makes the operator reconcile the Database.
async fn poke(dbs: &Api<Database>, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {"test/poke": value}}});
    dbs.patch("orders", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn method_velero_waits_for_velero_then_keeps_a_schedule_and_removes_it_when_no_longer_wanted()
{
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("velero-shop").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), &ns);
    let schedules =
        Api::<DynamicObject>::namespaced_with(client.clone(), "velero", &schedules_resource());

    // (a) Velero is not installed: the condition says so, the database runs anyway.
    create(&dbs, &velero_database("orders", &ns)).await;
    let db = eventually(
        env,
        "orders Running with BackupConfigured=False VeleroNotInstalled",
        WAIT,
        || async {
            let db = dbs.get("orders").await.ok()?;
            let (status, reason, _) = backup_configured(&db)?;
            (db.status.as_ref()?.phase == Some(Phase::Running)
                && status == ConditionStatus::False
                && reason == "VeleroNotInstalled")
                .then_some(db)
        },
    )
    .await;
    let (_, _, message) = backup_configured(&db).unwrap();
    assert!(message.contains("schedules.velero.io"), "{message}");
    assert!(
        cronjobs.get_opt("orders-backup").await.unwrap().is_none(),
        "no agent CronJob with method velero"
    );
    // No error loop: the state is reported, not retried as a failure.
    let errors = database_reconcile_errors(env).await;
    let (code, _) = env.http_get("/healthz").await.unwrap();
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(database_reconcile_errors(env).await, errors);

    // (b) Velero's CRD and namespace appear: the Schedule follows without a restart.
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "velero"}})).unwrap(),
        )
        .await
        .unwrap();
    harness::install_velero_schedule_crd(&client, "integration-tests")
        .await
        .expect("installing Velero's Schedule CRD");
    let name = format!("{ns}-orders");
    let schedule = eventually(env, "the Velero Schedule", WAIT, || async {
        schedules.get_opt(&name).await.ok()?
    })
    .await;
    let spec = &schedule.data["spec"];
    assert_eq!(spec["schedule"], "30 1 * * *");
    assert_eq!(spec["useOwnerReferencesInBackup"], false);
    let template = &spec["template"];
    assert_eq!(template["includedNamespaces"], serde_json::json!([ns]));
    assert_eq!(template["ttl"], "168h0m0s");
    assert_eq!(template["storageLocation"], "default");
    assert_eq!(template["defaultVolumesToFsBackup"], true);
    assert_eq!(
        schedule.labels().get("example.com/database-namespace"),
        Some(&ns)
    );
    // The selector picks the database's real pods and volume claims.
    let selector: String = template["labelSelector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2, "pods selected by {selector}");
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 2, "claims selected by {selector}");
    eventually(env, "BackupConfigured=True", WAIT, || async {
        let db = dbs.get("orders").await.ok()?;
        let (status, reason, message) = backup_configured(&db)?;
        (status == ConditionStatus::True && reason == "VeleroScheduleApplied").then_some(message)
    })
    .await;
    assert!(cronjobs.get_opt("orders-backup").await.unwrap().is_none());

    // Steady state: a reconcile that finds the Schedule in place writes nothing.
    let writes = settle(env).await;
    let reconciles = env.metric(RECONCILES).await;
    poke(&dbs, "steady").await;
    eventually(env, "a reconcile after the poke", WAIT, || async {
        (env.metric(RECONCILES).await > reconciles).then_some(())
    })
    .await;
    assert_eq!(env.metric(WRITES).await, writes, "writes at steady state");

    // A Schedule deleted by hand comes back on the next reconcile.
    schedules
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    poke(&dbs, "deleted").await;
    eventually(env, "the Schedule put back", WAIT, || async {
        schedules.get_opt(&name).await.ok()?
    })
    .await;

    // (c) Back to the agent: the Schedule goes, the CronJob comes.
    dbs.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"backup": {"method": "agent", "velero": null,
            "destination": {"s3": {"bucket": "backups", "endpoint": "http://s3.storage.svc:7070",
                "forcePathStyle": true, "credentialsSecret": {"name": "s3-credentials"}}}}}}),
        ),
    )
    .await
    .unwrap();
    eventually(env, "the Schedule removed", WAIT, || async {
        schedules.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    eventually(env, "the agent CronJob", WAIT, || async {
        cronjobs.get_opt("orders-backup").await.ok()?
    })
    .await;
    eventually(env, "BackupConfigured dropped", WAIT, || async {
        backup_configured(&dbs.get("orders").await.ok()?)
            .is_none()
            .then_some(())
    })
    .await;

    // (d) Velero again, then the Database is deleted: its Schedule goes with it.
    dbs.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"backup": {"method": "velero"}}})),
    )
    .await
    .unwrap();
    eventually(
        env,
        "the Schedule back with method velero",
        WAIT,
        || async { schedules.get_opt(&name).await.ok()? },
    )
    .await;
    // Velero moves to another namespace: the Schedule moves with it.
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "velero-2"}})).unwrap(),
        )
        .await
        .unwrap();
    let moved =
        Api::<DynamicObject>::namespaced_with(client.clone(), "velero-2", &schedules_resource());
    dbs.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"backup": {"velero": {"namespace": "velero-2"}}}}),
        ),
    )
    .await
    .unwrap();
    eventually(env, "the Schedule moved to velero-2", WAIT, || async {
        let there = moved.get_opt(&name).await.ok()?.is_some();
        let gone = schedules.get_opt(&name).await.ok()?.is_none();
        (there && gone).then_some(())
    })
    .await;
    eventually(env, "the CronJob gone with method velero", WAIT, || async {
        cronjobs
            .get_opt("orders-backup")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    dbs.delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    eventually(env, "the Database gone", WAIT, || async {
        dbs.get_opt("orders").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        moved.get_opt(&name).await.unwrap().is_none(),
        "the Schedule outlived its Database"
    );

    // A Schedule of the same name that is not ours is reported, never taken over.
    let foreign: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": format!("{ns}-invoices"), "namespace": "velero"},
        "spec": {"schedule": "@weekly", "template": {"includedNamespaces": ["elsewhere"]}}
    }))
    .unwrap();
    create(&schedules, &foreign).await;
    create(&dbs, &velero_database("invoices", &ns)).await;
    let (_, _, message) = eventually(
        env,
        "BackupConfigured=False ScheduleNameTaken",
        WAIT,
        || async {
            let found = backup_configured(&dbs.get("invoices").await.ok()?)?;
            (found.0 == ConditionStatus::False && found.1 == "ScheduleNameTaken").then_some(found)
        },
    )
    .await;
    assert!(
        message.contains(&format!("velero/{ns}-invoices")),
        "{message}"
    );
    let live = schedules.get(&format!("{ns}-invoices")).await.unwrap();
    assert_eq!(live.data["spec"]["schedule"], "@weekly", "taken over");
    dbs.delete("invoices", &DeleteParams::default())
        .await
        .unwrap();
    eventually(env, "invoices gone", WAIT, || async {
        dbs.get_opt("invoices").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        schedules
            .get_opt(&format!("{ns}-invoices"))
            .await
            .unwrap()
            .is_some(),
        "deleting the Database deleted a Schedule that was not its own"
    );
}

#[tokio::test]
async fn a_count_retention_is_refused_with_method_velero_naming_the_field() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("velero-admission").await;
    // Untyped, so the test can send what the Rust types would refuse to hold.
    let resource = ApiResource::erase::<Database>(&());
    let dbs = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let with = |method: &str, retention: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {"engine": "mysql", "version": "8.4", "storage": {"size": "1Gi"},
                "backup": {"enabled": true, "schedule": "@daily", "retention": retention, "method": method}}
        }))
        .unwrap()
    };
    for retention in ["10", "0h"] {
        let error = dbs
            .create(&dry_run, &with("velero", retention))
            .await
            .expect_err(&format!(
                "retention {retention} with method velero was accepted"
            ));
        let kube::Error::Api(status) = error else {
            panic!("{error}")
        };
        assert_eq!(status.code, 422, "{}", status.message);
        assert!(
            status.message.contains("spec.backup.retention") && status.message.contains("TTL"),
            "{}",
            status.message
        );
    }
    for (method, retention) in [("velero", "12h"), ("velero", "4w"), ("agent", "10")] {
        dbs.create(&dry_run, &with(method, retention))
            .await
            .unwrap_or_else(|e| panic!("{method} with {retention} refused: {e}"));
    }
    // Restore drills verify the agent's backups; Velero takes none.
    let mut drills = with("velero", "7d");
    drills.data["spec"]["backup"]["destination"] = serde_json::json!({"s3": {"bucket": "backups"}});
    drills.data["spec"]["backup"]["verify"] = serde_json::json!({"schedule": "30 4 * * 0"});
    let error = dbs
        .create(&dry_run, &drills)
        .await
        .expect_err("restore drills with method velero were accepted");
    let message = error.to_string();
    assert!(
        message.contains("spec.backup.verify") && message.contains("method velero"),
        "{message}"
    );
    let error = dbs
        .create(&dry_run, &with("restic", "7d"))
        .await
        .expect_err("an unknown method was accepted");
    assert!(error.to_string().contains("spec.backup.method"), "{error}");
}
