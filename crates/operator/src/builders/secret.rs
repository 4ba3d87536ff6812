//! Secrets `<name>-secret` (the admin credentials) and `<name>-replication`
//! (the replication login), each generated once.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::meta::{Names, child_meta};
use crate::engine::{Driver, PASSWORD_KEY, USERNAME_KEY};
use kube::ResourceExt;

/// Length of generated passwords: 32 alphanumerics, about 190 bits.
pub const PASSWORD_LENGTH: usize = 32;

/// A password from the operating system's CSPRNG (via rand's ThreadRng, a
/// ChaCha generator seeded and reseeded from the OS). Alphanumeric only, so
/// it needs no quoting in any connection string or shell.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LENGTH)
        .map(char::from)
        .collect()
}

/// The admin Secret with the given password. The caller creates it only when
/// it does not exist yet: a password is never regenerated.
pub fn admin_secret(db: &Database, driver: &dyn Driver, password: String) -> Secret {
    Secret {
        metadata: child_meta(db, Names(&db.name_any()).secret(), "database"),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([
            (USERNAME_KEY.to_owned(), driver.admin_username().to_owned()),
            (PASSWORD_KEY.to_owned(), password),
        ])),
        ..Default::default()
    }
}

/// The replication login's Secret (`<name>-replication`) with the given
/// password: created once, like the admin Secret.
pub fn replication_secret(db: &Database, password: String) -> Secret {
    let name = Names(&db.name_any()).replication();
    let mut secret =
        operator_login_secret(db, name, "database", crate::replication::LOGIN, password);
    if db.spec.engine == database_operator_api::v1::Engine::Mongodb {
        // The replica set members' shared key (internal authentication).
        let random: Vec<u8> = (0..768).map(|_| rand::random::<u8>()).collect();
        if let Some(data) = secret.string_data.as_mut() {
            data.insert(
                crate::replication::mongodb::KEYFILE_KEY.to_owned(),
                crate::replication::mongodb::keyfile(&random),
            );
        }
    }
    secret
}

/// The Secret `name` of one of the operator's own logins (`username`,
/// `password`), for the child component `component`. Immutable: it is
/// created once and never changed, since the login inside the engine
/// carries this password.
pub fn operator_login_secret(
    db: &Database,
    name: String,
    component: &str,
    username: &str,
    password: String,
) -> Secret {
    Secret {
        metadata: child_meta(db, name, component),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([
            (USERNAME_KEY.to_owned(), username.to_owned()),
            (PASSWORD_KEY.to_owned(), password),
        ])),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The text under `key` of a Secret's data (none when absent, not UTF-8,
/// or empty).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_logins_that_never_change_are_immutable_the_admin_secret_is_not() {
        let db = crate::fixtures::database(
            "db",
            database_operator_api::v1::Engine::Postgresql,
            "16.4",
            3,
        );
        assert_eq!(replication_secret(&db, "p".into()).immutable, Some(true));
        let admin = admin_secret(&db, crate::engine::driver_of(&db.spec), "p".into());
        // Its documented recovery is to edit it.
        assert_eq!(admin.immutable, None);
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let passwords: HashSet<String> = (0..100).map(|_| generate_password()).collect();
        assert_eq!(passwords.len(), 100);
        for p in &passwords {
            assert!(p.len() >= 24);
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }
}
