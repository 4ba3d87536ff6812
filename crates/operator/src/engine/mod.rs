//! One module per database engine behind one trait: everything the builders
//! need to know about an engine, and nothing about Kubernetes I/O.
//! Adding an engine is adding a module and a match arm in [`driver`].

mod mongodb;
mod mysql;
mod postgresql;
pub mod sizing;

use database_operator_api::v1;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Probe, SecretKeySelector};

pub use sizing::Sizing;

/// Key in the admin Secret holding the admin login name.
pub const USERNAME_KEY: &str = "username";
/// Key in the admin Secret holding the admin password.
pub const PASSWORD_KEY: &str = "password";

/// What the operator must know to run one engine.
pub trait Driver: Send + Sync {
    /// Which engine this is.
    fn engine(&self) -> v1::Engine;
    /// The official image for a version.
    fn image(&self, version: &str) -> String;
    /// Name of the database container and of its port.
    fn container_name(&self) -> &'static str;
    /// The port clients connect to.
    fn port(&self) -> i32;
    /// The admin login the image creates on first start.
    fn admin_username(&self) -> &'static str;
    /// The database that always exists, for the admin's own connections.
    fn maintenance_database(&self) -> &'static str;
    /// The numeric user and group the official image runs the server as.
    fn run_as_user(&self) -> i64 {
        999
    }
    /// Where the data volume is mounted.
    fn data_mount_path(&self) -> &'static str;
    /// Name of the configuration file inside the ConfigMap.
    fn config_file_name(&self) -> &'static str;
    /// Directory the ConfigMap is mounted at; the engine reads the file from there.
    fn config_mount_path(&self) -> &'static str;
    /// The configuration file, sized for the container's resources.
    fn render_config(&self, sizing: &Sizing) -> String;
    /// Arguments to the image's entrypoint that make the server read our configuration.
    fn args(&self) -> Vec<String>;
    /// Environment for the container; credentials come from the admin Secret.
    fn env(&self, database_name: &str, secret_name: &str) -> Vec<EnvVar>;
    /// Passes when the server accepts connections on its TCP port.
    fn readiness_probe(&self) -> Probe;
    /// Fails only when the server is wedged, never during a long recovery.
    fn liveness_probe(&self) -> Probe;
    /// Shell command that writes a logical dump of every database to stdout.
    fn dump_command(&self, host: &str) -> String;
    /// Environment the dump command reads its credentials from.
    fn dump_env(&self, secret_name: &str) -> Vec<EnvVar>;
    /// The client tools image for dumps; the server image carries them.
    fn tools_image(&self, version: &str) -> String {
        self.image(version)
    }
    /// How the engine replicates, when the operator runs its replication
    /// (`None`: every member is a server of its own, as before).
    fn streaming(&self) -> Option<&dyn Streaming> {
        None
    }
}

/// What the members of a replicated Database need besides a plain server:
/// the instance script that starts each one as the primary or as a replica
/// of it, and what that script reads.
pub trait Streaming: Send + Sync {
    /// Settings added to the configuration file. `volume_bytes` is the data
    /// volume's size, which bounds the WAL a lost replica may pin.
    fn config(&self, volume_bytes: u64) -> String;
    /// The instance script's file name in `<name>-config`. It is not part of
    /// the configuration hash: a new operator's script takes effect when a
    /// pod restarts, and never restarts one by itself.
    fn script_file(&self) -> &'static str;
    /// Files in `<name>-config` besides the configuration: the instance
    /// script and what the server reads.
    fn files(&self) -> Vec<(&'static str, String)>;
    /// The container's command: the instance script, then the image's own
    /// start command, which the script runs once the member is prepared.
    fn command(&self) -> Vec<String>;
    /// The member's environment: which pod it is, where the primary is, the
    /// replication login (from `replication_secret`).
    fn env(&self, database_name: &str, replication_secret: &str) -> Vec<EnvVar>;
    /// A file in `<name>-config` of settings for the replication mode
    /// (`sync`) that the operator also applies to the running servers: it
    /// is not part of the configuration hash, so changing the mode
    /// restarts nothing, and a member that restarts reads it.
    fn mode_settings(&self, _sync: bool) -> Option<(&'static str, String)> {
        None
    }
    /// The signal that stops the server cleanly, for a member whose
    /// instance script runs under the in-pod supervisor (`crate::instance`),
    /// which starts a primary only with the API's confirmation and stops one
    /// cut off from the API. `None`: no supervisor (MongoDB elects its own
    /// primary, and a primary cut off from its set steps down by itself).
    fn stop_signal(&self) -> Option<crate::instance::StopSignal> {
        None
    }
}

/// The instance script's file name in `<name>-config`, for every engine.
pub const INSTANCE_SCRIPT_FILE: &str = "instance.sh";

/// The container command of a member that starts through the instance
/// script in `config_dir`: the script, then the image's entrypoint and
/// `server`, which the script runs once the member is prepared.
pub(crate) fn instance_command(config_dir: &str, server: &str) -> Vec<String> {
    vec![
        "sh".to_owned(),
        format!("{config_dir}/{INSTANCE_SCRIPT_FILE}"),
        "docker-entrypoint.sh".to_owned(),
        server.to_owned(),
    ]
}

/// What every instance script reads: which pod it is, its labels (the
/// role), where the primary Service is (`port`), and the replication login
/// from `replication_secret`.
pub(crate) fn instance_env(
    database_name: &str,
    replication_secret: &str,
    port: i32,
) -> Vec<EnvVar> {
    vec![
        field_env("POD_NAME", "metadata.name"),
        plain_env("ROLE_FILE", LABELS_FILE),
        plain_env(
            "PRIMARY_HOST",
            &crate::builders::meta::Names(database_name).primary(),
        ),
        plain_env("PRIMARY_PORT", &port.to_string()),
        secret_env("REPLICATION_USER", replication_secret, USERNAME_KEY),
        secret_env("REPLICATION_PASSWORD", replication_secret, PASSWORD_KEY),
    ]
}

/// The driver for an engine, in its default flavor. Code that has a
/// Database uses [`driver_of`], which honours `spec.flavor`.
pub fn driver(engine: v1::Engine) -> &'static dyn Driver {
    match engine {
        v1::Engine::Postgresql => &postgresql::Postgresql,
        v1::Engine::Mysql => &mysql::MYSQL,
        v1::Engine::Mongodb => &mongodb::Mongodb,
    }
}

/// The driver that runs `spec`: its engine, in its flavor.
pub fn driver_of(spec: &v1::DatabaseSpec) -> &'static dyn Driver {
    match spec.mysql_flavor() {
        Some(v1::Flavor::Mariadb) => &mysql::MARIADB,
        _ => driver(spec.engine),
    }
}

/// An env var read from a key of the admin Secret.
pub(crate) fn secret_env(name: &str, secret_name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An env var holding a field of the pod (`metadata.name`, ...).
pub(crate) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the downward API volume with the pod's labels is mounted, and the
/// file in it: the instance scripts read the pod's role there.
pub const PODINFO_DIR: &str = "/etc/podinfo";
/// See [`PODINFO_DIR`].
pub const LABELS_FILE: &str = "/etc/podinfo/labels";

/// A plain env var.
pub(crate) fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

/// An exec probe running `script` under `sh -c`, so it can read the container's env.
pub(crate) fn shell_probe(
    script: &str,
    initial_delay: i32,
    period: i32,
    timeout: i32,
    failures: i32,
) -> Probe {
    Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), script.to_owned()]),
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Default::default()
    }
}

/// Asserts that `script` parses as the images' `/bin/sh` reads it (`sh -n`).
#[cfg(test)]
pub(crate) fn assert_parses_as_sh(script: &str) {
    use std::io::Write as _;
    let mut check = std::process::Command::new("sh")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    check
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .expect("sh reads the script");
    assert!(
        check.wait().expect("sh ends").success(),
        "sh -n refused the script"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_has_a_driver_that_names_itself() {
        for engine in [
            v1::Engine::Postgresql,
            v1::Engine::Mysql,
            v1::Engine::Mongodb,
        ] {
            assert_eq!(driver(engine).engine(), engine);
        }
    }

    #[test]
    fn images_are_the_official_ones() {
        assert_eq!(
            driver(v1::Engine::Postgresql).image("13.8"),
            "postgres:13.8"
        );
        assert_eq!(driver(v1::Engine::Mysql).image("8.0"), "mysql:8.0");
        assert_eq!(driver(v1::Engine::Mongodb).image("7.0"), "mongo:7.0");
    }
}
