//! The credentials Secret of a DatabaseUser: what an application needs to
//! connect, in its own namespace and in the namespaces the Database allows.

use std::collections::BTreeMap;

use database_operator_api::v1::user::DatabaseUser;
use database_operator_api::v1::{Database, labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::meta::Names;
use crate::engine::driver_of;
use crate::users::{Password, login_admin};

/// Label on every credentials Secret naming its DatabaseUser by UID (a
/// label value holds 63 characters, too few for `<namespace>.<name>`);
/// copies in other namespaces have no owner reference, so this is how they
/// are found and removed.
pub const USER_LABEL: &str = "example.com/databaseuser";

/// The value of [`USER_LABEL`] on `user`'s credentials Secrets.
pub fn user_label_value(user: &DatabaseUser) -> String {
    user.uid()
        .expect("a DatabaseUser from the API server has a uid")
}

/// Name of a DatabaseUser's credentials Secret.
pub fn secret_name(user: &DatabaseUser) -> String {
    format!(
        "{}-{}-credentials",
        user.spec.database_ref.name,
        user.name_any()
    )
}

/// The database an application connects to by default: the first one the
/// user has privileges on, else the Database's own.
pub fn default_database(user: &DatabaseUser, db: &Database) -> String {
    user.spec
        .privileges
        .first()
        .map(|p| p.database.clone())
        .or_else(|| user.spec.native_grants.first().map(|g| g.database.clone()))
        .unwrap_or_else(|| db.name_any())
}

/// The credentials Secret for `user` in `namespace`. Only the copy in the
/// user's own namespace is owned by it (owner references cannot cross
/// namespaces).
pub fn credentials_secret(
    user: &DatabaseUser,
    db: &Database,
    namespace: &str,
    password: &Password,
) -> Secret {
    let engine = driver_of(&db.spec);
    let host = format!(
        "{}.{}.svc",
        Names(&db.name_any()).primary(),
        db.namespace().unwrap_or_default()
    );
    let port = u16::try_from(engine.port()).expect("engine ports fit in u16");
    let database = default_database(user, db);
    let username = user.spec.username.as_str();
    let uri =
        login_admin(db.spec.engine).connection_uri(username, password, &host, port, &database);
    let data = BTreeMap::from([
        ("username".to_owned(), username.to_owned()),
        ("password".to_owned(), password.expose().to_owned()),
        ("host".to_owned(), host),
        ("port".to_owned(), port.to_string()),
        ("database".to_owned(), database),
        ("uri".to_owned(), uri),
    ]);
    let own_namespace = user.namespace().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(user)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (labels::NAME.to_owned(), labels::APP_NAME.to_owned()),
                (labels::INSTANCE.to_owned(), db.name_any()),
                (labels::COMPONENT.to_owned(), "credentials".to_owned()),
                (labels::MANAGED_BY.to_owned(), labels::OPERATOR.to_owned()),
                (USER_LABEL.to_owned(), user_label_value(user)),
            ])),
            owner_references: (namespace == own_namespace).then(|| {
                vec![
                    user.controller_owner_ref(&())
                        .expect("a DatabaseUser from the API server has a name and uid"),
                ]
            }),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}
