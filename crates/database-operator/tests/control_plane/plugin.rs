//! `kubectl database` (the `kubectl-database` binary) against the local
//! control plane and the real operator: `list` and `status` show a running
//! Database as tables and as JSON or YAML for scripts, with the usual
//! kubectl flags, and exit codes scripts can rely on.

use std::process::{Command, Output};
use std::time::Duration;

use database_operator_api::v1::Database;
use kube::Api;
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
                 "storage": {"size": "1Gi"}}
    }))
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
        "Backups\n  none",
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
}
