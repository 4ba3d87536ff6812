//! One cluster shared by every test of a binary: each `#[tokio::test]` has
//! its own runtime, and the cluster must outlive the one that started it.

use std::time::Duration;

use anyhow::Result;
use database_operator_testkit::Cluster;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

async fn cluster() -> Result<&'static Cluster> {
    CLUSTER.get_or_try_init(Cluster::start).await
}

async fn create_namespace(name: &str) -> Result<()> {
    let cluster = cluster().await?;
    // Clients belong to the runtime that built them: make one per test.
    let namespaces = Api::<Namespace>::all(cluster.client().await?);
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    // Outlive the other test's runtime before using the cluster again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    namespaces.get(name).await?;
    Ok(())
}

#[tokio::test]
async fn first_test_uses_shared_cluster() -> Result<()> {
    create_namespace("first").await
}

#[tokio::test]
async fn second_test_uses_shared_cluster() -> Result<()> {
    create_namespace("second").await
}
