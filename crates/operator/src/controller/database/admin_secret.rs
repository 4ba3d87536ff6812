//! The admin Secret (and the replication Secret, through [`create_once`]):
//! generated once, never regenerated.
//!
//! A deleted admin Secret is not made again once the database has been
//! initialised: its data volumes hold the password the first Secret gave
//! it, and a new random one would lock the operator, users, monitoring and
//! backups out while the Database still looked healthy. Whether it was
//! initialised is judged from its volumes (PersistentVolumeClaims), which
//! outlive a lost status.

use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{GetParams, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use crate::builders::meta::{Names, selector_string};
use crate::builders::secret::{admin_secret, generate_password};
use crate::controller::shared::stores::lookup;
use crate::engine::driver_of;
use crate::error::Result;
use crate::error::is_conflict;

/// On an admin Secret the user made (the operator's own carry its
/// managed-by label and an owner reference): the Database it belongs to,
/// so that the Database controller's watch of such Secrets notices at once
/// when one is deleted.
pub(crate) const ADMIN_SECRET_LABEL: &str = "example.com/admin-secret-of";

/// What became of the admin Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AdminSecret {
    /// It exists (ours, or the user's).
    Present,
    /// It did not, and no volume existed: made with a generated password.
    Created,
    /// It does not, but these volumes of the Database do: the database has
    /// a password no new Secret would hold. Left for the user to restore.
    Missing { claims: Vec<String> },
}

/// Creates the admin Secret if, and only if, it does not exist and the
/// database was never initialised. An existing Secret, ours or one the user
/// made beforehand, is never overwritten: its password is the one the
/// database was initialised with.
pub(crate) async fn ensure_admin_secret(
    client: &Client,
    cache: &Store<PartialObjectMeta<Secret>>,
    db: &Database,
    namespace: &str,
) -> Result<AdminSecret> {
    let name = Names(&db.name_any()).secret();
    if lookup(cache, &name, namespace).is_some() {
        return Ok(AdminSecret::Present);
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    if let Some(found) = secrets.get_metadata_opt(&name).await? {
        // Ours (the managed-by label: the children's watch has it, and the
        // cache had not caught up, as right after a restart), or the
        // user's, already labelled: nothing to write.
        let ours = found
            .labels()
            .get(database_operator_api::v1::labels::MANAGED_BY)
            .is_some_and(|by| by == database_operator_api::v1::labels::OPERATOR);
        if ours || found.labels().contains_key(ADMIN_SECRET_LABEL) {
            return Ok(AdminSecret::Present);
        }
        let label =
            serde_json::json!({"metadata": {"labels": {ADMIN_SECRET_LABEL: db.name_any()}}});
        if crate::apply::patch_metadata(&secrets, &name, &label).await? {
            return Ok(AdminSecret::Present);
        }
        // Deleted between the read and the label: it is missing.
    }
    let mut claims: Vec<String> =
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
            .list_metadata(&ListParams::default().labels(&selector_string(db)))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
    if !claims.is_empty() {
        claims.sort();
        return Ok(AdminSecret::Missing { claims });
    }
    create(
        client,
        namespace,
        admin_secret(db, driver_of(&db.spec), generate_password()),
    )
    .await?;
    Ok(AdminSecret::Created)
}

/// Whether the Secret `name` exists: in the cache, or (the cache may lag
/// behind a Secret just created, or the Secret may be the user's own,
/// unlabelled, so not cached) on the API server.
async fn exists(
    client: &Client,
    cache: &Store<PartialObjectMeta<Secret>>,
    namespace: &str,
    name: &str,
) -> Result<bool> {
    if lookup(cache, name, namespace).is_some() {
        return Ok(true);
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    // From the API server's cache: a Secret it has not seen yet makes the
    // create below fail with a conflict, which keeps the existing one.
    Ok(secrets
        .get_metadata_opt_with(name, &GetParams::any())
        .await?
        .is_some())
}

/// Creates the Secret `name` that `build` makes if, and only if, no Secret
/// of that name exists: generated credentials are never regenerated.
/// Returns whether it created it.
pub(crate) async fn create_once(
    client: &Client,
    cache: &Store<PartialObjectMeta<Secret>>,
    namespace: &str,
    name: &str,
    build: impl FnOnce() -> Secret,
) -> Result<bool> {
    if exists(client, cache, namespace, name).await? {
        return Ok(false);
    }
    create(client, namespace, build()).await
}

/// Creates `secret`; if someone created it meanwhile, theirs stands.
/// Returns whether it created it.
async fn create(client: &Client, namespace: &str, secret: Secret) -> Result<bool> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        // Someone created it between our read and our write: theirs stands.
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A mock API server stands in for Kubernetes here to see exactly which
/// requests are sent; the integration suite proves the same against a real
/// API server.
#[cfg(test)]
mod tests {
    use super::{AdminSecret, ensure_admin_secret};
    use database_operator_api::v1::Engine;
    use http::{Request, Response, StatusCode};
    use k8s_openapi::api::core::v1::Secret;
    use kube::Client;
    use kube::api::PartialObjectMeta;
    use kube::client::Body;
    use kube::runtime::reflector::{self, Store, store::Writer};
    use kube::runtime::watcher;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn mock_client() -> (Client, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    /// True when the code under test sends nothing more.
    async fn no_more_requests(handle: &mut Handle) -> bool {
        let next =
            tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request())
                .await;
        matches!(next, Err(_) | Ok(None))
    }

    fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn not_found() -> Response<Body> {
        json(
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                "message": "secrets \"db-secret\" not found"
            }),
        )
    }

    fn existing_metadata() -> serde_json::Value {
        serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "db-secret", "namespace": "default"}})
    }

    /// Runs `ensure_admin_secret` for Database `db` of `engine` with
    /// `cache`, while `api` answers the requests it sends and hands the
    /// handle back; after that nothing more may be sent (`why` says why).
    async fn ensure<F>(
        engine: Engine,
        cache: &Store<PartialObjectMeta<Secret>>,
        api: impl FnOnce(Handle) -> F,
        why: &str,
    ) -> AdminSecret
    where
        F: Future<Output = Handle> + Send + 'static,
    {
        let (client, handle) = mock_client();
        let version = match engine {
            Engine::Postgresql => "13.8",
            Engine::Mysql => "8.4",
            Engine::Mongodb => "7.0",
        };
        let db = crate::fixtures::database("db", engine, version, 1);
        let server = tokio::spawn(api(handle));
        let outcome = ensure_admin_secret(&client, cache, &db, "default")
            .await
            .unwrap();
        let mut handle = server.await.unwrap();
        assert!(no_more_requests(&mut handle).await, "{why}");
        outcome
    }

    /// Answers the list of the Database's volume claims with `names`.
    async fn claims(handle: &mut Handle, names: &[&str]) {
        let (request, respond) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), "GET");
        assert_eq!(
            request.uri().path(),
            "/api/v1/namespaces/default/persistentvolumeclaims"
        );
        let query = request.uri().query().unwrap_or_default();
        assert!(query.contains("labelSelector"), "{query}");
        let items: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": n, "namespace": "default"}}))
            .collect();
        respond.send_response(json(
            StatusCode::OK,
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
        ));
    }

    #[tokio::test]
    async fn a_cached_secret_means_no_request_at_all() {
        let (cache, mut writer): (_, Writer<PartialObjectMeta<Secret>>) = reflector::store();
        let mut meta: PartialObjectMeta<Secret> =
            serde_json::from_value(existing_metadata()).unwrap();
        meta.metadata.namespace = Some("default".into());
        writer.apply_watcher_event(&watcher::Event::Apply(meta));
        let api = |handle| async { handle };
        let outcome = ensure(Engine::Postgresql, &cache, api, "no request may be sent").await;
        assert_eq!(outcome, AdminSecret::Present);
    }

    #[tokio::test]
    async fn a_users_own_secret_is_labelled_for_the_watch_and_otherwise_left_alone() {
        let api = |mut handle: Handle| async move {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/default/secrets/db-secret"
            );
            respond.send_response(json(StatusCode::OK, existing_metadata()));
            // Only the watch label: no data, no other field.
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "PATCH");
            let body = request.into_body().collect_bytes().await.unwrap();
            let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                patch,
                serde_json::json!({"metadata": {"labels": {super::ADMIN_SECRET_LABEL: "db"}}})
            );
            respond.send_response(json(StatusCode::OK, existing_metadata()));
            // Any further request (a create, an update) is a regeneration.
            handle
        };
        let why = "the existing Secret must not be written";
        ensure(Engine::Postgresql, &reflector::store().0, api, why).await;

        // Labelled once, then only read.
        let api = |mut handle: Handle| async move {
            let (_, respond) = handle.next_request().await.unwrap();
            let mut labelled = existing_metadata();
            labelled["metadata"]["labels"] = serde_json::json!({super::ADMIN_SECRET_LABEL: "db"});
            respond.send_response(json(StatusCode::OK, labelled));
            handle
        };
        ensure(Engine::Postgresql, &reflector::store().0, api, why).await;
    }

    /// Right after a restart the cache may not hold the operator's own
    /// Secret yet: it is read, and not labelled (its managed-by label puts
    /// it in the children's watch already), so a restart writes nothing.
    #[tokio::test]
    async fn the_operators_own_secret_missed_by_the_cache_is_only_read() {
        let api = |mut handle: Handle| async move {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            let mut ours = existing_metadata();
            ours["metadata"]["labels"] = serde_json::json!({
                database_operator_api::v1::labels::MANAGED_BY: database_operator_api::v1::labels::OPERATOR
            });
            respond.send_response(json(StatusCode::OK, ours));
            handle
        };
        let why = "the operator's own Secret must not be written";
        let outcome = ensure(Engine::Mysql, &reflector::store().0, api, why).await;
        assert_eq!(outcome, AdminSecret::Present);
    }

    #[tokio::test]
    async fn a_missing_secret_is_created_with_a_generated_password_once() {
        let api = |mut handle: Handle| async move {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            respond.send_response(not_found());
            // No volume yet: a new database.
            claims(&mut handle, &[]).await;
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "POST");
            let body = request.into_body().collect_bytes().await.unwrap();
            let secret: Secret = serde_json::from_slice(&body).unwrap();
            let data = secret.string_data.clone().unwrap();
            assert_eq!(data["username"], "root");
            assert!(data["password"].len() >= 24);
            respond.send_response(json(
                StatusCode::CREATED,
                serde_json::to_value(&secret).unwrap(),
            ));
            handle
        };
        let why = "created once, nothing else";
        let outcome = ensure(Engine::Mysql, &reflector::store().0, api, why).await;
        assert_eq!(outcome, AdminSecret::Created);
    }

    #[tokio::test]
    async fn a_deleted_secret_of_an_initialised_database_is_not_made_again() {
        let api = |mut handle: Handle| async move {
            let (_, respond) = handle.next_request().await.unwrap();
            respond.send_response(not_found());
            claims(&mut handle, &["data-db-1", "data-db-0"]).await;
            // Any further request (a create) would give the database a
            // password it does not have.
            handle
        };
        let why = "no Secret may be created over an initialised database";
        let outcome = ensure(Engine::Postgresql, &reflector::store().0, api, why).await;
        assert_eq!(
            outcome,
            AdminSecret::Missing {
                claims: vec!["data-db-0".into(), "data-db-1".into()]
            }
        );
    }

    #[tokio::test]
    async fn losing_a_create_race_keeps_the_other_secret() {
        let api = |mut handle: Handle| async move {
            let (_, respond) = handle.next_request().await.unwrap();
            respond.send_response(not_found());
            claims(&mut handle, &[]).await;
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "POST");
            respond.send_response(json(StatusCode::CONFLICT, serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409,
                "message": "secrets \"db-secret\" already exists"
            })));
            handle
        };
        let why = "no retry may overwrite the winner";
        ensure(Engine::Mongodb, &reflector::store().0, api, why).await;
    }
}
