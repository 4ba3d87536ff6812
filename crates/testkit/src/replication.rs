//! Servers of a replicated Database on loopback: the instance script the
//! operator ships to every PostgreSQL or MariaDB pod, in a file the
//! servers' user can read, and the environment a pod gives it.

use std::path::PathBuf;

use anyhow::Result;

use crate::servers::Member;

/// `replication::postgresql::INSTANCE_SCRIPT` in a world-readable file.
pub struct InstanceScript {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl InstanceScript {
    pub fn postgresql() -> Result<InstanceScript> {
        InstanceScript::of(operator::replication::postgresql::INSTANCE_SCRIPT)
    }

    pub fn mariadb() -> Result<InstanceScript> {
        InstanceScript::of(operator::replication::mysql::instance_script(
            database_operator_api::v1::Flavor::Mariadb,
        ))
    }

    pub fn mysql() -> Result<InstanceScript> {
        InstanceScript::of(operator::replication::mysql::instance_script(
            database_operator_api::v1::Flavor::Mysql,
        ))
    }

    fn of(script: &str) -> Result<InstanceScript> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let path = dir.path().join("instance.sh");
        std::fs::write(&path, script)?;
        Ok(InstanceScript { _dir: dir, path })
    }

    /// Pod `pod` in `role`, following the primary Service at
    /// `primary` (host, port), replicating as the operator's login with
    /// `password`.
    pub fn member(&self, pod: &str, role: &str, primary: (&str, u16), password: &str) -> Member {
        Member {
            script: self.path.clone(),
            role: role.into(),
            env: vec![
                ("POD_NAME".into(), pod.into()),
                ("PRIMARY_HOST".into(), primary.0.into()),
                ("PRIMARY_PORT".into(), primary.1.to_string()),
                (
                    "REPLICATION_USER".into(),
                    operator::replication::LOGIN.into(),
                ),
                ("REPLICATION_PASSWORD".into(), password.into()),
                ("ROLE_WAIT_SECONDS".into(), "5".into()),
            ],
            supervisor: Vec::new(),
        }
    }
}

/// The operator's my.cnf for a replicated MariaDB Database
/// (`replication::mysql::settings`) as server options, with the product's
/// durability, which the test servers lower (a killed primary must keep
/// what it committed).
pub fn mariadb_options() -> Vec<String> {
    options_of(database_operator_api::v1::Flavor::Mariadb)
}

/// As [`mariadb_options`], for a replicated MySQL Database.
pub fn mysql_options() -> Vec<String> {
    options_of(database_operator_api::v1::Flavor::Mysql)
}

fn options_of(flavor: database_operator_api::v1::Flavor) -> Vec<String> {
    let mut options: Vec<String> = operator::replication::mysql::settings(flavor)
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| format!("--{key}={value}"))
        .collect();
    options.extend([
        "--innodb-flush-log-at-trx-commit=1".into(),
        "--sync-binlog=1".into(),
    ]);
    options
}
