//! Tests of the harness itself: each test starts its own cluster, so they also
//! show that clusters run side by side without clashing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use database_operator_testkit::{Cluster, ClusterConfig, paths};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn reports_pinned_version_and_ready_node() -> Result<()> {
    let cluster = Cluster::start().await?;
    eprintln!("startup took {:?}", cluster.startup_time());

    let version = cluster.client().await?.apiserver_version().await?;
    assert_eq!(version.git_version, paths::kubernetes_version());
    assert_eq!(version.git_tree_state, "clean");

    let output = cluster
        .kubectl()
        .args(["get", "nodes", "--no-headers"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kubectl failed: {output:?}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kwok-node-0 "))
        .with_context(|| format!("no kwok-node-0 in {stdout:?}"))?;
    assert_eq!(line.split_whitespace().nth(1), Some("Ready"), "{line}");

    let output = cluster.kubectl().args(["version"]).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl version failed: {output:?}"
    );
    assert!(stdout.contains(&format!("Client Version: {}", paths::kubernetes_version())));
    assert!(stdout.contains(&format!("Server Version: {}", paths::kubernetes_version())));
    Ok(())
}

#[tokio::test]
async fn statefulset_pods_get_ready_and_volumes_bound() -> Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let statefulset: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{
                    "name": "db",
                    "image": "postgres:17",
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "3Gi"}}
                }
            }]
        }
    }))?;
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), "default");
    statefulsets
        .create(&PostParams::default(), &statefulset)
        .await?;

    cluster
        .eventually("2 ready replicas", WAIT, async |client| {
            let sts = Api::<StatefulSet>::namespaced(client.clone(), "default")
                .get("db")
                .await?;
            let ready = sts.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Ok((ready == 2).then_some(()))
        })
        .await?;

    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=db"))
        .await?;
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let status = pod.status.as_ref().context("pod without status")?;
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "{}",
            pod.name_any()
        );
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "pod {} not Ready", pod.name_any());
    }

    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    for name in ["data-db-0", "data-db-1"] {
        let pvc = claims.get(name).await?;
        let status = pvc.status.context("pvc without status")?;
        assert_eq!(status.phase.as_deref(), Some("Bound"), "{name}");
        let capacity = status.capacity.context("no capacity")?;
        assert_eq!(capacity["storage"].0, "3Gi");
    }

    // Deleting a claim releases its volume; the provisioner deletes it.
    let volume = claims
        .get("data-db-1")
        .await?
        .spec
        .and_then(|s| s.volume_name)
        .context("claim without volume")?;
    statefulsets
        .patch(
            "db",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await?;
    claims.delete("data-db-1", &DeleteParams::default()).await?;
    cluster
        .eventually("released volume to be deleted", WAIT, async |client| {
            let pv = Api::<PersistentVolume>::all(client.clone())
                .get_opt(&volume)
                .await?;
            Ok(pv.is_none().then_some(()))
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn clusters_are_isolated() -> Result<()> {
    let (a, b) = tokio::join!(Cluster::start(), Cluster::start());
    let (a, b) = (a?, b?);
    ensure!(a.server_url() != b.server_url());
    ensure!(a.dir() != b.dir());

    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "only-in-a"}}))?;
    Api::<Namespace>::all(a.client().await?)
        .create(&PostParams::default(), &namespace)
        .await?;
    let in_b = Api::<Namespace>::all(b.client().await?)
        .get_opt("only-in-a")
        .await?;
    ensure!(in_b.is_none(), "namespace leaked into the other cluster");
    Ok(())
}

#[tokio::test]
async fn drop_stops_every_process_and_removes_the_folder() -> Result<()> {
    let cluster = Cluster::start_with(ClusterConfig {
        cleanup: true,
        ..ClusterConfig::default()
    })
    .await?;
    let pids = cluster.pids();
    let dir = cluster.dir().to_owned();
    assert_eq!(pids.len(), 5, "{pids:?}");
    for (name, pid) in &pids {
        assert!(proc_exists(*pid), "{name} ({pid}) not running");
    }
    drop(cluster);
    // Drop waits for (and reaps) every child, so nothing is left at all.
    for (name, pid) in &pids {
        assert!(!proc_exists(*pid), "{name} ({pid}) still exists");
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
    Ok(())
}

fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
