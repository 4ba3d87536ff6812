//! The Prometheus exporter sidecar of each engine, the Secret it logs in
//! with and the `<name>-metrics` Service in front of it.
//!
//! Versions are pinned in `hack/monitoring/install.sh`, which also builds the
//! same versions from their Go modules for the tests that prove which metrics
//! they emit; both read the one line, so they cannot drift apart.

use std::collections::BTreeMap;

use database_operator_api::v1::{Database, Engine};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ResourceRequirements, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::builders::meta::{Names, child_meta, selector_labels};
use crate::builders::security::restricted_container_with_seccomp;
use crate::engine::{PASSWORD_KEY, USERNAME_KEY, plain_env, secret_env};

/// The login the exporters use inside the engine (reserved: no DatabaseUser may take it).
pub const MONITORING_USERNAME: &str = "dbop_monitor";
/// Connections the monitoring login may hold at once.
pub const MONITORING_CONNECTION_LIMIT: i32 = 3;
/// Name of the metrics port on the sidecar and the Service.
pub const METRICS_PORT_NAME: &str = "metrics";
/// `app.kubernetes.io/component` of the metrics Service.
pub const COMPONENT: &str = "metrics";

const INSTALL_SCRIPT: &str = include_str!("../../../../../hack/monitoring/install.sh");

/// A pinned version from `hack/monitoring/install.sh` (`NAME="v1.2.3"`).
fn pinned(variable: &str) -> &'static str {
    let prefix = format!("{variable}=\"");
    INSTALL_SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str())?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{variable} is pinned in hack/monitoring/install.sh"))
}

/// One engine's exporter.
#[derive(Clone, Copy, Debug)]
pub struct Exporter {
    pub engine: Engine,
}

impl Exporter {
    pub fn of(engine: Engine) -> Self {
        Self { engine }
    }

    /// The exporter's binary name, as built by hack/monitoring/install.sh.
    pub fn binary(&self) -> &'static str {
        match self.engine {
            Engine::Postgresql => "postgres_exporter",
            Engine::Mysql => "mysqld_exporter",
            Engine::Mongodb => "mongodb_exporter",
        }
    }

    /// The pinned version, with its `v`.
    pub fn version(&self) -> &'static str {
        pinned(match self.engine {
            Engine::Postgresql => "POSTGRES_EXPORTER_VERSION",
            Engine::Mysql => "MYSQLD_EXPORTER_VERSION",
            Engine::Mongodb => "MONGODB_EXPORTER_VERSION",
        })
    }

    /// The official image at the pinned version.
    pub fn image(&self) -> String {
        let v = self.version();
        match self.engine {
            Engine::Postgresql => format!("quay.io/prometheuscommunity/postgres-exporter:{v}"),
            Engine::Mysql => format!("quay.io/prometheus/mysqld-exporter:{v}"),
            // Percona tags its images without the `v`.
            Engine::Mongodb => format!("percona/mongodb_exporter:{}", v.trim_start_matches('v')),
        }
    }

    /// The exporter's usual port.
    pub fn port(&self) -> i32 {
        match self.engine {
            Engine::Postgresql => 9187,
            Engine::Mysql => 9104,
            Engine::Mongodb => 9216,
        }
    }

    /// Command-line flags, given the engine's port on localhost.
    /// `$(MONITORING_USERNAME)` is expanded by the kubelet from the env.
    pub fn args(&self, engine_port: i32) -> Vec<String> {
        let listen = format!("--web.listen-address=:{}", self.port());
        match self.engine {
            Engine::Postgresql => vec![listen],
            Engine::Mysql => vec![
                listen,
                format!("--mysqld.address=127.0.0.1:{engine_port}"),
                "--mysqld.username=$(MONITORING_USERNAME)".into(),
            ],
            Engine::Mongodb => vec![
                listen,
                // The classic metric names (mongodb_up, mongodb_connections…) besides the raw ones.
                "--compatible-mode".into(),
                "--collector.diagnosticdata".into(),
                "--collector.replicasetstatus".into(),
                // A sidecar talks to its own mongod only.
                "--mongodb.direct-connect".into(),
            ],
        }
    }

    /// Environment: where the engine is and the monitoring login's credentials.
    pub fn env(&self, secret: &str, engine_port: i32) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
        let user = secret_env("MONITORING_USERNAME", secret, USERNAME_KEY);
        match self.engine {
            Engine::Postgresql => vec![
                plain_env(
                    "DATA_SOURCE_URI",
                    &format!("127.0.0.1:{engine_port}/postgres?sslmode=disable"),
                ),
                secret_env("DATA_SOURCE_USER", secret, USERNAME_KEY),
                secret_env("DATA_SOURCE_PASS", secret, PASSWORD_KEY),
            ],
            Engine::Mysql => vec![
                user,
                secret_env("MYSQLD_EXPORTER_PASSWORD", secret, PASSWORD_KEY),
            ],
            Engine::Mongodb => vec![
                plain_env(
                    "MONGODB_URI",
                    &format!("mongodb://127.0.0.1:{engine_port}/admin"),
                ),
                secret_env("MONGODB_USER", secret, USERNAME_KEY),
                secret_env("MONGODB_PASSWORD", secret, PASSWORD_KEY),
            ],
        }
    }
}

/// The exporter container for `db`'s pods.
pub fn sidecar(db: &Database, engine_port: i32) -> Container {
    let exporter = Exporter::of(db.spec.engine);
    let secret = Names(&db.name_any()).monitoring_secret();
    Container {
        name: "exporter".into(),
        image: Some(exporter.image()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(exporter.args(engine_port)),
        env: Some(exporter.env(&secret, engine_port)),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.into()),
            container_port: exporter.port(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // No readiness probe: a pod is Ready only when every container is,
        // and a failing exporter must never take the database out of its
        // Services. DatabaseExporterDown reports a broken exporter instead.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("10m".into())),
                ("memory".into(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("128Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(restricted_container_with_seccomp()),
        ..Default::default()
    }
}

/// Service `<name>-metrics`: every pod's exporter, behind the named port `metrics`.
pub fn metrics_service(db: &Database) -> Service {
    let exporter = Exporter::of(db.spec.engine);
    Service {
        metadata: child_meta(db, Names(&db.name_any()).metrics(), COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(db)),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.into()),
                port: exporter.port(),
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Secret `<name>-monitoring` with the monitoring login. Created once, never
/// regenerated: the login inside the engine carries this password.
pub fn monitoring_secret(db: &Database, password: String) -> Secret {
    let name = Names(&db.name_any()).monitoring_secret();
    crate::builders::secret::operator_login_secret(
        db,
        name,
        COMPONENT,
        MONITORING_USERNAME,
        password,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_pinned_and_images_official() {
        assert_eq!(
            Exporter::of(Engine::Postgresql).image(),
            format!(
                "quay.io/prometheuscommunity/postgres-exporter:{}",
                Exporter::of(Engine::Postgresql).version()
            )
        );
        for engine in [Engine::Postgresql, Engine::Mysql, Engine::Mongodb] {
            let v = Exporter::of(engine).version();
            assert!(v.starts_with('v') && v.split('.').count() == 3, "{v}");
            assert!(!Exporter::of(engine).image().ends_with(':'));
        }
        assert!(
            Exporter::of(Engine::Mongodb)
                .image()
                .starts_with("percona/mongodb_exporter:0.")
        );
    }
}
