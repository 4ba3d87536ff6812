//! Local Kubernetes control plane for the operator's tests.
//!
//! [`Cluster::start`] runs etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and KWOK (fake kubelets) from binaries built by
//! `hack/controlplane/build.sh`, on loopback ports, in a temporary folder.
//! Pods on the fake nodes become Running and Ready; PVCs of the default
//! StorageClass `standard` are bound by a small built-in provisioner (see
//! [`provisioner`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = database_operator_testkit::Cluster::start().await?;
//! let client = cluster.client().await?;
//! # let _ = client; Ok(()) }
//! ```

pub mod certs;
mod cluster;
pub mod components;
pub mod kubeconfig;
pub mod nodes;
pub mod paths;
pub mod processes;
pub mod provisioner;

pub use cluster::{Cluster, ClusterConfig};
