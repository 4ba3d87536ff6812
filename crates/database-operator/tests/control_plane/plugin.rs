//! `kubectl database` (the `kubectl-database` binary) against the local
//! control plane and the real operator: `list` and `status` show a running
//! Database as tables and as JSON or YAML for scripts, with the usual
//! kubectl flags, and exit codes scripts can rely on; `credentials` prints
//! the admin login's URI; `backup` follows an on-demand backup to its end.

use std::process::{Command, Output};
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::DatabaseBackup;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use testkit::harness::{Env, create, env, eventually};

const WAIT: Duration = Duration::from_secs(120);

fn plugin(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-database"))
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig_path())
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn list_and_status_show_a_running_database() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("plugin").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"engine": "mysql", "flavor": "mariadb", "version": "11.4", "replicas": 1,
                 "storage": {"size": "1Gi"},
                 "backup": {"enabled": true, "schedule": "0 2 * * *",
                            "destination": {"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}},
                            "verify": {"schedule": "30 4 * * 0"}}}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(
            &Default::default(),
            &testkit::fixtures::s3_credentials("s3", &ns),
        )
        .await
        .unwrap();
    create(&dbs, &db).await;
    eventually(env, "orders Running", WAIT, || async {
        let phase = dbs.get("orders").await.ok()?.status?.phase?;
        (format!("{phase:?}") == "Running").then_some(())
    })
    .await;

    // A table for people (not a terminal here, so no colours).
    let table = stdout(&plugin(env, &["list", "-n", &ns]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in [
        "NAMESPACE",
        "NAME",
        "ENGINE",
        "READY",
        "PHASE",
        "PRIMARY",
        "LAST BACKUP",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    for cell in [
        "orders",
        "mysql (mariadb)",
        "11.4",
        "1/1",
        "Running",
        "orders-primary",
    ] {
        assert!(lines[1].contains(cell), "{cell} missing: {table}");
    }
    assert!(!table.contains('\u{1b}'), "no colours off a terminal");

    // JSON for scripts, across namespaces.
    let all: serde_json::Value =
        serde_json::from_str(&stdout(&plugin(env, &["list", "-A", "-o", "json"]))).unwrap();
    let orders = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["namespace"] == ns.as_str() && d["name"] == "orders")
        .unwrap();
    assert_eq!(orders["phase"], "Running");
    assert_eq!(orders["ready"], 1);
    assert_eq!(orders["desired"], 1);
    assert_eq!(orders["lastBackup"], serde_json::Value::Null);

    // One Database in detail.
    let status = stdout(&plugin(env, &["status", "orders", "-n", &ns]));
    for part in [
        &format!("Database   {ns}/orders"),
        "Engine     mysql 11.4 (mariadb)",
        "Members    1/1 ready",
        "Conditions",
        "Ready",
        "StatefulSet orders (1/1 ready)",
        "Service orders-primary",
        "CronJob orders-backup (0 2 * * *, never run)",
        "CronJob orders-verify (30 4 * * 0, never run)",
        "Backups\n  none",
        "Restore drills\n  Schedule   30 4 * * 0\n  Last drill none yet",
    ] {
        assert!(status.contains(part), "{part:?} missing:\n{status}");
    }
    let yaml: serde_json::Value = serde_saphyr::from_str(&stdout(&plugin(
        env,
        &["status", "orders", "-n", &ns, "-o", "yaml"],
    )))
    .unwrap();
    assert_eq!(yaml["database"]["metadata"]["name"], "orders");
    assert_eq!(yaml["children"]["statefulSets"][0], "orders");

    // Exit codes: 3 when the Database does not exist, 1 when the API
    // cannot be reached as asked, 2 for bad usage.
    let missing = plugin(env, &["status", "nothing", "-n", &ns]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    let no_context = plugin(env, &["list", "--context", "no-such-context"]);
    assert_eq!(no_context.status.code(), Some(1), "{no_context:?}");
    let usage = plugin(env, &["list", "-o", "xml"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    // The admin login's URI, asked for, from the Database's own Secret.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("orders-secret")
        .await
        .unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let uri = stdout(&plugin(env, &["credentials", "orders", "-n", &ns]));
    assert_eq!(
        uri.trim(),
        format!("mysql://root:{password}@orders-primary.{ns}.svc:3306/mysql")
    );
    // The shell in the primary pod, as kubectl would be asked to open it
    // (KWOK runs no containers: the shell itself is not run here).
    let command = stdout(&plugin(env, &["connect", "orders", "-n", &ns, "--print"]));
    assert!(
        command.starts_with("kubectl exec -it --kubeconfig ")
            && command.contains(&format!(" -n {ns} orders-0 -c mariadb -- sh -c "))
            && command.contains("MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" exec mariadb -u root"),
        "{command}"
    );
    assert!(
        !command.contains(&password),
        "the password stays in the pod"
    );
    let no_user = plugin(env, &["credentials", "orders", "-n", &ns, "--user", "app"]);
    assert_eq!(no_user.status.code(), Some(3), "{no_user:?}");
}

/// `backup NAME` creates a DatabaseBackup and follows it: to Completed
/// (KWOK completes the agent's pod without running it), or to Failed with
/// the reason and exit code 4.
#[tokio::test]
async fn backup_follows_an_on_demand_backup_to_its_end() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("plugin-backup").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    for (name, backup) in [
        (
            "orders",
            serde_json::json!({"enabled": true, "schedule": "0 3 * * *", "retention": "7d",
                "destination": {"s3": {"bucket": "backups", "region": "eu-west-1",
                    "endpoint": "http://s3.storage.svc:7070", "forcePathStyle": true,
                    "credentialsSecret": {"name": "s3-credentials"}}}}),
        ),
        ("nowhere", serde_json::json!({"enabled": false})),
    ] {
        let db: Database = serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"engine": "postgresql", "version": "16.4", "storage": {"size": "1Gi"},
                     "backup": backup}
        }))
        .unwrap();
        create(&dbs, &db).await;
    }
    let done = stdout(&plugin(
        env,
        &["backup", "orders", "-n", &ns, "--timeout-seconds", "120"],
    ));
    assert!(done.contains("created"), "{done}");
    assert!(done.contains("Completed"), "{done}");
    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        backups
            .items
            .iter()
            .any(|b| b.name_any().starts_with("orders-manual-")),
        "{:?}",
        backups
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    );
    // A new Database like orders, restored from that backup.
    let taken = backups
        .items
        .iter()
        .find(|b| b.name_any().starts_with("orders-manual-"))
        .unwrap()
        .name_any();
    let restored = stdout(&plugin(
        env,
        &["restore", "copy", "--from", &taken, "-n", &ns],
    ));
    assert!(
        restored.contains("kubectl database status copy"),
        "{restored}"
    );
    let copy = dbs.get("copy").await.unwrap();
    assert_eq!(copy.spec.engine.as_str(), "postgresql");
    assert_eq!(copy.spec.version, "16.4");
    assert_eq!(copy.spec.restore.unwrap().backup_ref.unwrap().name, taken);
    assert!(
        copy.spec.backup.is_none_or(|b| !b.enabled),
        "backups are the copy's own to choose"
    );
    let missing = plugin(env, &["restore", "other", "--from", "nothing", "-n", &ns]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");

    let failed = plugin(
        env,
        &["backup", "nowhere", "-n", &ns, "--timeout-seconds", "120"],
    );
    assert_eq!(failed.status.code(), Some(4), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("spec.backup.destination.s3"),
        "{failed:?}"
    );
}
