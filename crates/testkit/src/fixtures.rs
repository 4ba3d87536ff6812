//! Test fixtures: Databases as the API server would return them (from the
//! operator's `fixtures`, shared with its unit tests), and the samples
//! under deploy/samples.

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::Container;
pub use operator::fixtures::{database, mariadb, with_backup, with_storage_class};

/// Reads a sample from deploy/samples into `namespace`.
pub fn sample_in(file: &str, namespace: &str) -> Database {
    let mut db = sample(file);
    db.metadata.namespace = Some(namespace.to_owned());
    db
}

/// Reads a sample from deploy/samples.
pub fn sample(file: &str) -> Database {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/samples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The literal value of environment variable `name` in `container`.
pub fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// A Secret `name` in `namespace` with S3 credentials under the keys a
/// backup destination's `credentialsSecret` names. The keys are dummies:
/// for Databases whose backups never run against a server.
pub fn s3_credentials(name: &str, namespace: &str) -> k8s_openapi::api::core::v1::Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"AWS_ACCESS_KEY_ID": "not-used", "AWS_SECRET_ACCESS_KEY": "not-used"},
    }))
    .expect("a Secret")
}
