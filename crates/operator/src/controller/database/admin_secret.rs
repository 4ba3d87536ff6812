//! The admin Secret: generated once, never regenerated.

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{PartialObjectMeta, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use crate::builders::meta::Names;
use crate::builders::secret::{admin_secret, generate_password};
use crate::controller::shared::stores::lookup;
use crate::engine::driver;
use crate::error::Result;
use crate::error::is_conflict;

/// Creates the admin Secret if, and only if, it does not exist. An existing
/// Secret, ours or one the user made beforehand, is never overwritten: its
/// password is the one the database was initialised with.
pub async fn ensure_admin_secret(
    client: &Client,
    cache: &Store<PartialObjectMeta<Secret>>,
    db: &Database,
    namespace: &str,
) -> Result<()> {
    let name = Names(&db.name_any()).secret();
    if lookup(cache, &name, namespace).is_some() {
        return Ok(());
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    // The cache may lag behind a Secret we just created, or the Secret may be
    // the user's own (unlabelled, so not cached): ask the API server.
    if secrets.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    let secret = admin_secret(db, driver(db.spec.engine), generate_password());
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        // Someone created it between our read and our write: theirs stands.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
