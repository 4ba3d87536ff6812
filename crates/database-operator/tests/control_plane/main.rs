//! The real `database-operator` binary against the local control plane
//! (etcd, kube-apiserver, controller-manager, scheduler and KWOK, from
//! `testkit`). Each module shares one cluster and operator among its tests
//! (`testkit::harness::env(module_path!())`), apart from the other modules';
//! each test works in its own namespace.

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

mod api_faults;
mod backups;
mod chaos;
mod concurrency;
mod databases;
mod docs_examples;
mod helm;
mod leader_election;
mod monitoring;
mod plugin;
mod rbac;
mod replication;
mod replication_fencing;
mod replication_gtid;
mod restore;
mod scoping;
mod steady_state;
mod telemetry;
mod upgrades;
mod users;
mod velero;
