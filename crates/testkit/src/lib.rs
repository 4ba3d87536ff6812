//! Local Kubernetes control plane for the operator's tests.
//!
//! [`Cluster::start`] runs etcd, kube-apiserver, kube-controller-manager
//! (default controllers), kube-scheduler and KWOK (fake kubelets) from the
//! binaries that `hack/controlplane/build.sh` builds into
//! `~/.cache/database-operator/controlplane/<k8s-version>/bin`; if they are
//! missing, `start` runs that script first (many minutes, once). Each cluster
//! gets free loopback ports and its own temporary folder, so several test
//! binaries (or tests) can run clusters side by side.
//!
//! What a test gets once `start` returns:
//! - `/readyz` is ok, the `default` ServiceAccount exists, and the fake node
//!   `kwok-node-0` is Ready (64 CPUs, 256Gi, 1100 pods).
//! - Pods scheduled there become Running and Ready; pods owned by Jobs
//!   complete.
//! - The default StorageClass `standard` (binding mode Immediate): the
//!   built-in [`provisioner`] creates a PersistentVolume for each of its
//!   Pending claims, which the PV controller binds, and deletes released ones.
//!
//! Dropping the [`Cluster`] kills and reaps the components and removes the
//! folder (`TESTKIT_KEEP_DIR=1` keeps it, with `logs/<component>.log`). If the
//! test process dies first, the components die with it (`PR_SET_PDEATHSIG`)
//! and the next cluster started in the same parent folder removes the files.
//! A cluster shared by the tests of one binary can live in a `static`
//! `tokio::sync::OnceCell`: it belongs to its own thread, not to the runtime
//! of the test that started it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use database_operator_testkit::Cluster;
//! let cluster = Cluster::start().await?;
//! let client = cluster.client().await?;
//! let nodes = cluster.kubectl().args(["get", "nodes"]).output()?;
//! # let _ = (client, nodes); Ok(()) }
//! ```

/// Where an operator under test sends every Service no `--resolve` entry
/// names (`--resolve-default`): a closed port on loopback, so a Database
/// without a server is unreachable at once and no DNS query leaves the
/// machine.
pub const UNREACHABLE: &str = "127.0.0.1:9";

pub mod agent_cli;
pub mod certs;
mod cluster;
pub mod components;
pub mod crds;
pub mod docs;
pub mod exporters;
pub mod exposition;
pub mod faulty_api;
pub mod fixtures;
pub mod harness;
pub mod helm;
pub mod kubeconfig;
pub mod nodes;
pub mod paths;
pub mod processes;
pub mod provisioner;
pub mod proxy;
pub mod replication;
pub mod servers;

pub use cluster::{Cluster, ClusterConfig};
