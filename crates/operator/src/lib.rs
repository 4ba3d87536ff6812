//! database-operator: runs PostgreSQL, MySQL and MongoDB on Kubernetes.

pub mod apply;
pub mod builders;
pub mod client;
pub mod controller;
pub mod crd;
pub mod diff;
pub mod engine;
pub mod error;
pub mod health;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod resolver;
pub mod server;
pub mod telemetry;
pub mod users;
pub mod velero;
