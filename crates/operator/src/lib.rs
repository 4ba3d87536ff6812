//! database-operator: runs PostgreSQL, MySQL and MongoDB on Kubernetes.

pub mod apply;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod daemon;
pub mod diff;
pub mod engine;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod metrics;
pub mod resolver;
pub mod users;
pub mod velero;
