//! Namespace scoping (`WATCH_NAMESPACES`) on the real control plane. The
//! chart, installed with `watchNamespaces`, renders a Role in each watched
//! namespace and only CRD reads cluster-wide; the real binary then runs
//! with exactly the rendered container, as the chart's ServiceAccount
//! (impersonation). It manages the Databases of the two namespaces it
//! watches (so the cache that merges several namespaces' watches is
//! exercised), ignores a third, and never needs a right it lacks: its
//! caches sync under Roles alone (`/readyz`), and it logs no refusal.

use std::time::Duration;

use database_operator_api::v1::database::Phase;
use database_operator_api::v1::user::{DatabaseUser, UserPhase};
use database_operator_api::v1::{Database, condition};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use testkit::Cluster;
use testkit::harness::http_get;
use testkit::helm::{chart, run};

use super::helm::{
    NS, RELEASE, WAIT, as_service_account, crds_established, rendered, run_as_rendered,
};

const WATCHED: [&str; 2] = ["team-a", "team-b"];
const UNWATCHED: &str = "team-c";

fn database(namespace: &str, engine: &str, version: &str) -> Database {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "db", "namespace": namespace},
        "spec": {"engine": engine, "version": version, "replicas": 1,
                 "storage": {"size": "1Gi"},
                 "userSecretNamespaces": [UNWATCHED]}
    }))
    .unwrap()
}

/// Whether the API server refused `result` as forbidden (403).
fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

#[tokio::test]
async fn an_operator_scoped_to_two_namespaces_runs_their_databases_under_roles_and_ignores_the_rest()
 {
    let cluster = Cluster::start().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let namespaces = Api::<Namespace>::all(client.clone());
    for ns in WATCHED.iter().chain([&UNWATCHED]) {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let port = testkit::processes::free_port().unwrap().to_string();
    let port_value = format!("service.port={port}");
    let watch_value = format!("watchNamespaces={{{}}}", WATCHED.join(","));
    run(&[
        "install",
        RELEASE,
        &chart().display().to_string(),
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        NS,
        "--create-namespace",
        "--set",
        &port_value,
        "--set",
        &watch_value,
        "--wait",
        "--timeout",
        "2m",
    ]);
    crds_established(&cluster).await;
    let manifest = run(&[
        "get",
        "manifest",
        RELEASE,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        NS,
    ]);
    let deployment = rendered(&manifest, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let identity = as_service_account(&cluster, pod["serviceAccountName"].as_str().unwrap());

    // The chart's identity reads Secrets only where it works.
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&identity).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let scoped = Client::try_from(config).unwrap();
    let list = ListParams::default();
    assert!(
        forbidden(Api::<Secret>::all(scoped.clone()).list(&list).await),
        "a cluster-wide read of Secrets"
    );
    assert!(forbidden(
        Api::<Secret>::namespaced(scoped.clone(), UNWATCHED)
            .list(&list)
            .await
    ));
    for ns in WATCHED {
        Api::<Secret>::namespaced(scoped.clone(), ns)
            .list(&list)
            .await
            .unwrap();
    }

    let log = cluster.dir().join("scoped-operator.log");
    let pid = run_as_rendered(container, &identity, &log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    for (ns, engine, version) in [
        (WATCHED[0], "postgresql", "16.4"),
        (WATCHED[1], "mysql", "8.4"),
        (UNWATCHED, "postgresql", "16.4"),
    ] {
        Api::<Database>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &database(ns, engine, version))
            .await
            .unwrap();
    }
    for ns in WATCHED {
        let dbs = Api::<Database>::namespaced(client.clone(), ns);
        cluster
            .eventually(&format!("{ns}/db Running"), WAIT, async |_| {
                let db = dbs.get("db").await?;
                Ok((db.status.and_then(|s| s.phase) == Some(Phase::Running)).then_some(()))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logged()));
    }
    let ready = http_get(&format!("127.0.0.1:{port}"), "/readyz").await;
    assert!(matches!(ready, Ok((200, _))), "{ready:?}\n{}", logged());

    // A user whose credentials would go to the unwatched namespace is
    // refused, naming the field, before anything is written there.
    let users = Api::<DatabaseUser>::namespaced(client.clone(), WATCHED[0]);
    let user: DatabaseUser = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "DatabaseUser",
        "metadata": {"name": "app", "namespace": WATCHED[0]},
        "spec": {"databaseRef": {"name": "db"}, "username": "app",
                 "secretNamespaces": [UNWATCHED]}
    }))
    .unwrap();
    users.create(&PostParams::default(), &user).await.unwrap();
    let message = cluster
        .eventually("the user refused", WAIT, async |_| {
            let status = users.get("app").await?.status.unwrap_or_default();
            if status.phase != Some(UserPhase::Failed) {
                return Ok(None);
            }
            let ready = condition::find(&status.conditions, condition::types::READY).cloned();
            Ok(ready.map(|c| (c.reason, c.message)))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logged()));
    assert_eq!(message.0, "NamespaceNotWatched");
    assert!(
        message.1.contains("spec.secretNamespaces") && message.1.contains(UNWATCHED),
        "{}",
        message.1
    );

    // The unwatched namespace's Database was never touched: no finalizer,
    // no status, no children.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ignored = Api::<Database>::namespaced(client.clone(), UNWATCHED)
        .get("db")
        .await
        .unwrap();
    assert!(
        ignored.metadata.finalizers.is_none(),
        "{:?}",
        ignored.metadata
    );
    assert!(ignored.status.is_none(), "{:?}", ignored.status);
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), UNWATCHED)
        .list(&list)
        .await
        .unwrap();
    assert!(statefulsets.items.is_empty());
    let secrets = Api::<Secret>::namespaced(client.clone(), UNWATCHED)
        .list(&list)
        .await
        .unwrap();
    assert!(secrets.items.is_empty(), "{:?}", secrets.items);

    let text = logged();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "the scoped operator asked for a right it lacks:\n{text}"
    );
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}
