//! The Helm chart on the real control plane. `helm install` is accepted by
//! the API server and the CRDs become Established. KWOK marks any pod Ready
//! whatever its image, so the test then runs the real binary with exactly
//! the rendered Deployment's container (its args and env, the metrics port
//! its probes use) as the chart's ServiceAccount (impersonation, as
//! `rbac.rs` does), until a Database is Running and the probes answer.
//!
//! The install starts from a previous chart version whose Database CRD
//! lacks a field (`spec.replication.reseedIndependentReplicas`): Helm never
//! upgrades a chart's `crds/`, so the documented upgrade applies the new
//! CRDs server-side first, and the field then survives. `helm uninstall`
//! keeps the CRDs and every Database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use testkit::Cluster;
use testkit::harness::http_get;
use testkit::helm::{chart, run};

pub(super) const NS: &str = "database-operator";
pub(super) const RELEASE: &str = "dbop";
pub(super) const WAIT: Duration = Duration::from_secs(120);
const FIELD: &str = "reseedIndependentReplicas";

/// Copies `from` into `to`, folders included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// This chart as version 0.0.9, whose Database CRD does not know
/// `spec.replication.reseedIndependentReplicas` yet.
fn previous_chart(dir: &Path) -> PathBuf {
    let previous = dir.join("database-operator");
    copy_tree(&chart(), &previous);
    let meta = previous.join("Chart.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("\nversion: 0.1.0\n", "\nversion: 0.0.9\n"),
    )
    .unwrap();
    let crd_file = previous.join("crds/databases.example.com.yaml");
    let mut crd: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&crd_file).unwrap()).unwrap();
    let replication = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["replication"]["properties"];
    assert!(
        replication.as_object_mut().unwrap().remove(FIELD).is_some(),
        "the CRD has {FIELD}"
    );
    std::fs::write(&crd_file, serde_json::to_string(&crd).unwrap()).unwrap();
    previous
}

/// The object of `kind` in a rendered manifest.
pub(super) fn rendered(manifest: &str, kind: &str) -> Value {
    serde_saphyr::from_str_multiple::<Value, Vec<_>>(manifest)
        .unwrap()
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Waits until the chart's four CRDs are Established.
pub(super) async fn crds_established(cluster: &Cluster) {
    let crds = Api::<CustomResourceDefinition>::all(cluster.client().await.unwrap());
    for name in [
        "databases.example.com",
        "databaseusers.example.com",
        "databasebackups.example.com",
        "databasemonitors.example.com",
    ] {
        cluster
            .eventually(&format!("{name} Established"), WAIT, async |_| {
                let crd = crds.get(name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established.then_some(()))
            })
            .await
            .unwrap();
    }
}

/// A kubeconfig that acts as the ServiceAccount `account` in `NS`.
pub(super) fn as_service_account(cluster: &Cluster, account: &str) -> PathBuf {
    let mut kubeconfig = Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    for user in &mut kubeconfig.auth_infos {
        let auth = user.auth_info.get_or_insert_with(Default::default);
        auth.impersonate = Some(format!("system:serviceaccount:{NS}:{account}"));
        auth.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{NS}"),
            "system:authenticated".into(),
        ]);
    }
    let path = cluster.dir().join("chart-sa.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

/// Runs the operator binary with the container's args and env (its
/// `fieldRef`s given the values the kubelet would), as `kubeconfig`'s
/// identity; returns its pid.
pub(super) fn run_as_rendered(container: &Value, kubeconfig: &Path, log: &Path) -> u32 {
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let mut command =
        testkit::processes::command(&testkit::paths::operator_binary(), &args, log).unwrap();
    // Beside the kubeconfig, what stands in for the cluster's network: no
    // Service name is looked up (a closed port on loopback instead).
    command
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .env("RESOLVE_DEFAULT", testkit::UNREACHABLE);
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "dbop-database-operator-0".to_owned(),
            Some("metadata.namespace") => NS.to_owned(),
            Some(other) => panic!("{name}: a fieldRef to {other} the test cannot give"),
            None => var["value"].as_str().unwrap().to_owned(),
        };
        command.env(name, value);
    }
    // Dies with the thread that forked it (PR_SET_PDEATHSIG): a thread that
    // lives as long as the operator.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = command.spawn().unwrap();
        tx.send(child.id()).unwrap();
        let _ = child.wait();
    });
    rx.recv().unwrap()
}

#[tokio::test]
async fn the_chart_installs_an_operator_that_runs_a_database_and_upgrades_and_uninstalls_keeping_data()
 {
    let cluster = Cluster::start().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let helm = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", &kubeconfig, "--namespace", NS]);
        run(&all)
    };
    let dir = tempfile::tempdir().unwrap();
    let previous = previous_chart(dir.path());
    // The metrics port is free on this machine; the probes use it.
    let port = testkit::processes::free_port().unwrap().to_string();
    let port_value = format!("service.port={port}");

    // --- The previous version, installed ------------------------------
    helm(&[
        "install",
        RELEASE,
        &previous.display().to_string(),
        "--create-namespace",
        "--set",
        &port_value,
        "--wait",
        "--timeout",
        "2m",
    ]);
    crds_established(&cluster).await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let dbs = Api::<Database>::namespaced(client.clone(), "default");
    let db: Database = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "kept", "namespace": "default"},
        "spec": {"engine": "postgresql", "version": "16.4", "replicas": 1,
                 "storage": {"size": "1Gi"},
                 "replication": {FIELD: true}}
    }))
    .unwrap();
    dbs.create(&PostParams::default(), &db).await.unwrap();
    let pruned = dbs.get("kept").await.unwrap();
    assert!(
        !pruned
            .spec
            .replication
            .is_some_and(|r| r.reseed_independent_replicas),
        "the previous schema drops the field it does not know"
    );

    // --- The upgrade: the new CRDs server-side, then the chart ---------
    let applied = cluster
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(chart().join("crds"))
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    helm(&[
        "upgrade",
        RELEASE,
        &chart().display().to_string(),
        "--set",
        &port_value,
        "--wait",
        "--timeout",
        "2m",
    ]);
    let releases: Value = serde_json::from_str(&helm(&["list", "-o", "json"])).unwrap();
    assert_eq!(releases[0]["revision"], "2");
    assert_eq!(releases[0]["chart"], "database-operator-0.1.0");
    assert_eq!(releases[0]["status"], "deployed");
    cluster
        .eventually("the new Database schema", WAIT, async |_| {
            let patch = json!({"spec": {"replication": {FIELD: true}}});
            let db = dbs
                .patch("kept", &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(db
                .spec
                .replication
                .is_some_and(|r| r.reseed_independent_replicas)
                .then_some(()))
        })
        .await
        .unwrap();

    // --- The rendered operator runs a Database ------------------------
    let manifest = helm(&["get", "manifest", RELEASE]);
    let deployment = rendered(&manifest, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let account = pod["serviceAccountName"].as_str().unwrap();
    assert_eq!(account, "dbop-database-operator");
    let identity = as_service_account(&cluster, account);
    let log = cluster.dir().join("chart-operator.log");
    let pid = run_as_rendered(container, &identity, &log);
    let running = cluster
        .eventually("the Database Running", WAIT, async |_| {
            let db = dbs.get("kept").await?;
            Ok((db.status.and_then(|s| s.phase) == Some(Phase::Running)).then_some(()))
        })
        .await;
    let container_port = container["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(container_port.to_string(), port);
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(container[probe]["httpGet"]["port"], "metrics");
        let answer = http_get(&format!("127.0.0.1:{port}"), path).await;
        assert!(
            matches!(answer, Ok((200, _))),
            "{probe} {path}: {answer:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    running
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();

    // --- Uninstall: the chart's objects go, CRDs and Databases stay ----
    helm(&["uninstall", RELEASE, "--wait"]);
    let roles = Api::<ClusterRole>::all(client.clone());
    assert!(
        roles
            .get_opt("dbop-database-operator")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        crds.get_opt("databases.example.com")
            .await
            .unwrap()
            .is_some()
    );
    let kept = dbs.get("kept").await.unwrap();
    assert_eq!(kept.name_any(), "kept");
}
