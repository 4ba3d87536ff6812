//! What a run creates: N Databases, three engines round robin, one replica,
//! spread over ten namespaces; a third with scheduled backups, a third with
//! monitoring. The same list for the operator's run and the baseline's.

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

/// Namespaces the Databases are spread over.
pub const NAMESPACES: usize = 10;

/// The Secret that the backups' destination names, one per namespace.
pub const S3_CREDENTIALS: &str = "bench-s3";

/// The namespace of the `i`th Database of a run named `prefix`.
pub fn namespace(prefix: &str, i: usize) -> String {
    format!("{prefix}-{}", i % NAMESPACES)
}

/// The `i`th Database (0-based) of a run named `prefix`.
pub fn database(prefix: &str, i: usize) -> Database {
    let (engine, version) = match i % 3 {
        0 => ("postgresql", "16.4"),
        1 => ("mysql", "8.4"),
        _ => ("mongodb", "7.0"),
    };
    // Backups and monitoring each on a third, shifted so that the two
    // thirds overlap on every engine rather than on one.
    let backup = (i / 3).is_multiple_of(3);
    let monitoring = (i / 3) % 3 == 1;
    let mut spec = json!({
        "engine": engine,
        "version": version,
        "replicas": 1,
        "storage": {"size": "1Gi"},
    });
    if backup {
        spec["backup"] = json!({
            "enabled": true,
            "schedule": "0 2 * * *",
            "retention": "7d",
            "destination": {"s3": {"bucket": "backups", "credentialsSecret": {"name": S3_CREDENTIALS}}},
        });
    }
    if monitoring {
        spec["monitoring"] = json!({"enabled": true});
    }
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1",
        "kind": "Database",
        "metadata": {"name": format!("db-{i}"), "namespace": namespace(prefix, i)},
        "spec": spec,
    }))
    .expect("the bench's Database is well formed")
}

/// The index of a Database from its key (`namespace/db-I`).
pub fn index_of(key: &str) -> Option<usize> {
    key.rsplit_once("/db-")?.1.parse().ok()
}

/// The S3 credentials Secret of `namespace` (dummy keys: no backup runs
/// during the bench).
pub fn s3_credentials(namespace: &str) -> Secret {
    testkit::fixtures::s3_credentials(S3_CREDENTIALS, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    #[test]
    fn engines_backups_and_monitoring_each_take_a_third_over_ten_namespaces() {
        let dbs: Vec<Database> = (0..900).map(|i| database("b", i)).collect();
        let count = |f: &dyn Fn(&Database) -> bool| dbs.iter().filter(|d| f(d)).count();
        for engine in ["postgresql", "mysql", "mongodb"] {
            assert_eq!(
                count(&|d| serde_json::to_value(d.spec.engine).unwrap() == engine),
                300
            );
        }
        assert_eq!(count(&|d| d.spec.backup.is_some()), 300);
        assert_eq!(count(&|d| d.spec.monitoring.is_some()), 300);
        // Every engine has some with backups and some with monitoring.
        for engine in 0..3 {
            assert!(
                dbs.iter()
                    .skip(engine)
                    .step_by(3)
                    .any(|d| d.spec.backup.is_some())
            );
            assert!(
                dbs.iter()
                    .skip(engine)
                    .step_by(3)
                    .any(|d| d.spec.monitoring.is_some())
            );
        }
        assert_eq!(index_of("b-7/db-17"), Some(17));
        assert_eq!(index_of("db-17"), None);
        let namespaces: std::collections::BTreeSet<String> =
            dbs.iter().map(|d| d.namespace().unwrap()).collect();
        assert_eq!(namespaces.len(), NAMESPACES);
    }
}
