//! database-operator: runs PostgreSQL, MySQL and MongoDB on Kubernetes.

pub mod agent;
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
pub mod status;
pub mod telemetry;
pub mod users;
pub mod velero;

/// Selects ring as rustls' process-wide crypto provider. Both ring (kube)
/// and aws-lc-rs (object_store) are linked in, and with two providers rustls
/// refuses to pick one itself. Call before building any client.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
