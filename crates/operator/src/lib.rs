//! database-operator: runs PostgreSQL, MySQL and MongoDB on Kubernetes.

// What is `pub` is used by the binary, testkit or the integration tests;
// everything else says `pub(crate)`.
#![warn(unreachable_pub)]

pub(crate) mod apply;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod daemon;
pub(crate) mod diff;
pub mod engine;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod instance;
pub mod metrics;
pub mod olm;
pub mod rbac;
pub mod replication;
pub mod resolver;
pub mod scope;
pub mod users;
pub(crate) mod velero;
