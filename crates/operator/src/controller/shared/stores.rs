//! Caches of the children the operator manages, fed by label-selected
//! watches with managedFields stripped, so a reconcile reads memory, not the
//! API server; most hold metadata only ([`super::owned`]).

use database_operator_api::v1;
use std::fmt::Debug;

use database_operator_api::v1::Database;
use database_operator_api::v1::monitor::DatabaseMonitor;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{GetParams, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::owned::{Owned, Version, trim_metadata};
use crate::scope::Scope;
use serde::de::DeserializeOwned;

/// The objects in `store`, in `db`'s namespace, whose reference (`name_of`)
/// names `db`: what a change to a Database should wake.
pub(crate) fn referencing<K>(
    store: &Store<K>,
    db: &Database,
    name_of: impl Fn(&K) -> &str,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let namespace = db.namespace();
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace && name_of(o) == db.name_any())
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

/// Selects what this operator created.
pub fn managed_selector() -> String {
    format!("{}={}", v1::labels::MANAGED_BY, v1::labels::OPERATOR)
}

/// The caches of a Database's children. Most hold metadata only, with what
/// [`Owned`] needs to know a child is as wanted without reading it; the
/// StatefulSet's keeps its status and what the build step reads of it
/// ([`trim_statefulset`]).
#[derive(Clone)]
pub struct Stores {
    pub statefulsets: Owned<StatefulSet>,
    pub config_maps: Owned<PartialObjectMeta<ConfigMap>>,
    pub services: Owned<PartialObjectMeta<Service>>,
    pub pdbs: Owned<PartialObjectMeta<PodDisruptionBudget>>,
    pub cronjobs: Owned<PartialObjectMeta<CronJob>>,
    /// Metadata only: the operator never keeps secret values in memory,
    /// nor receives them from this watch.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Velero's Schedule CRD, when installed: whether method velero can work.
    pub velero_crd: Store<CustomResourceDefinition>,
    /// The DatabaseMonitors the operator created for Databases.
    pub monitors: Store<DatabaseMonitor>,
    /// The API access of replicated Databases' pods.
    pub service_accounts: Owned<PartialObjectMeta<ServiceAccount>>,
    pub roles: Owned<PartialObjectMeta<Role>>,
    pub role_bindings: Owned<PartialObjectMeta<RoleBinding>>,
    /// The NetworkPolicies of isolated Databases.
    pub network_policies: Owned<PartialObjectMeta<NetworkPolicy>>,
}

/// A boxed stream of changed children, for `Controller::owns_stream`.
pub type ChildStream<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// A boxed stream of watch events, after a reflector took them.
type EventStream<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

/// The streams that feed [`Stores`]; the controller must poll them.
pub struct Streams {
    pub statefulsets: ChildStream<StatefulSet>,
    pub config_maps: ChildStream<PartialObjectMeta<ConfigMap>>,
    pub services: ChildStream<PartialObjectMeta<Service>>,
    pub pdbs: ChildStream<PartialObjectMeta<PodDisruptionBudget>>,
    pub cronjobs: ChildStream<PartialObjectMeta<CronJob>>,
    pub secrets: ChildStream<PartialObjectMeta<Secret>>,
    pub velero_crd: ChildStream<CustomResourceDefinition>,
    pub monitors: ChildStream<DatabaseMonitor>,
    pub service_accounts: ChildStream<PartialObjectMeta<ServiceAccount>>,
    pub roles: ChildStream<PartialObjectMeta<Role>>,
    pub role_bindings: ChildStream<PartialObjectMeta<RoleBinding>>,
    pub network_policies: ChildStream<PartialObjectMeta<NetworkPolicy>>,
}

fn children_config() -> watcher::Config {
    watcher::Config::default()
        .labels(&managed_selector())
        .any_semantic()
}

/// A full cache of what this operator created of `K`, with `trim` taking
/// from each object what no controller reads before it enters the store.
fn cached<K>(client: &Client, scope: &Scope, trim: fn(&mut K)) -> (Store<K>, ChildStream<K>)
where
    K: crate::scope::Watched,
{
    let (reader, writer) = reflector::store();
    let stream = scope
        .watch::<K>(client, &children_config(), Some(reader.clone()))
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// A metadata-only cache of what this operator created of `K`, each
/// object's metadata trimmed by `trim`.
fn metadata<K>(
    client: &Client,
    scope: &Scope,
    trim: fn(&mut ObjectMeta),
) -> (
    Store<PartialObjectMeta<K>>,
    EventStream<PartialObjectMeta<K>>,
)
where
    K: crate::scope::Watched,
{
    let (reader, writer) = reflector::store();
    let stream = scope
        // `Api<PartialObjectMeta<K>>` asks the API server for metadata only.
        .watch::<PartialObjectMeta<K>>(client, &children_config(), Some(reader.clone()))
        .modify(move |o| trim(&mut o.metadata))
        .reflect(writer)
        .boxed();
    (reader, stream)
}

/// [`metadata`], with the children's checked versions ([`Owned`]).
fn owned<K>(
    client: &Client,
    scope: &Scope,
) -> (
    Owned<PartialObjectMeta<K>>,
    ChildStream<PartialObjectMeta<K>>,
)
where
    K: crate::scope::Watched,
{
    let (store, events) = metadata::<K>(client, scope, trim_metadata);
    followed(Owned::new(store, Version::Resource), events)
}

/// `owned`, kept in step with the watch `events` that fill its store
/// ([`Owned::follow`]), and the children those events touched.
fn followed<C>(owned: Owned<C>, events: EventStream<C>) -> (Owned<C>, ChildStream<C>)
where
    C: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let follower = owned.clone();
    let stream = events
        .inspect_ok(move |event| follower.follow(event))
        .touched_objects()
        .boxed();
    (owned, stream)
}

/// What the StatefulSet cache keeps of a pod template: its metadata (the
/// topology annotation) and the supervisor installer's image (kept across
/// operator upgrades, [`crate::builders::statefulset::keep_supervisor_image`]).
/// The rest (containers, volumes, probes) is read from the API server when
/// the StatefulSet must be compared or its template held back.
pub fn trim_statefulset(sts: &mut StatefulSet) {
    sts.managed_fields_mut().clear();
    if let Some(pod) = sts.spec.template.spec.as_mut() {
        let installer = crate::builders::statefulset::INSTALL_SUPERVISOR;
        let kept = pod
            .init_containers
            .take()
            .into_iter()
            .flatten()
            .filter(|c| c.name == installer)
            .map(|c| Container {
                name: c.name,
                image: c.image,
                ..Container::default()
            })
            .collect();
        *pod = PodSpec {
            init_containers: Some(kept),
            ..PodSpec::default()
        };
    }
}

/// Builds the caches, over the namespaces of `scope`, and the streams that
/// fill them.
pub fn start(client: &Client, scope: &Scope) -> (Stores, Streams) {
    let (sts_store, sts_events) = {
        let (reader, writer) = reflector::store();
        let events = scope
            .watch::<StatefulSet>(client, &children_config(), Some(reader.clone()))
            .modify(trim_statefulset)
            .reflect(writer)
            .boxed();
        (reader, events)
    };
    let (statefulsets, sts_stream) =
        followed(Owned::new(sts_store, Version::Generation), sts_events);
    let (config_maps, cm_stream) = owned(client, scope);
    let (services, svc_stream) = owned(client, scope);
    let (pdbs, pdb_stream) = owned(client, scope);
    let (cronjobs, cj_stream) = owned(client, scope);
    let (monitors, monitor_stream) = cached(client, scope, |_| {});
    let (service_accounts, sa_stream) = owned(client, scope);
    let (roles, role_stream) = owned(client, scope);
    let (role_bindings, binding_stream) = owned(client, scope);
    let (network_policies, np_stream) = owned(client, scope);
    // Their labels say whose they are (see `admin_secret`).
    let (secrets, secret_events) = metadata::<Secret>(client, scope, |meta| {
        meta.managed_fields = None;
    });
    let secret_stream = secret_events.touched_objects().boxed();
    let (velero_crd, velero_crd_stream) = velero_crd(client);
    (
        Stores {
            statefulsets,
            config_maps,
            services,
            pdbs,
            cronjobs,
            secrets,
            velero_crd,
            monitors,
            service_accounts,
            roles,
            role_bindings,
            network_policies,
        },
        Streams {
            statefulsets: sts_stream,
            config_maps: cm_stream,
            services: svc_stream,
            pdbs: pdb_stream,
            cronjobs: cj_stream,
            secrets: secret_stream,
            velero_crd: velero_crd_stream,
            monitors: monitor_stream,
            service_accounts: sa_stream,
            roles: role_stream,
            role_bindings: binding_stream,
            network_policies: np_stream,
        },
    )
}

/// Watches the one CRD `schedules.velero.io`, so Databases waiting for
/// Velero are reconciled as soon as it is installed. Its schema is dropped:
/// only the name and conditions matter.
fn velero_crd(
    client: &Client,
) -> (
    Store<CustomResourceDefinition>,
    ChildStream<CustomResourceDefinition>,
) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", crate::velero::SCHEDULE_CRD))
        .any_semantic();
    let stream = watcher(Api::<CustomResourceDefinition>::all(client.clone()), config)
        .default_backoff()
        .modify(|crd| {
            crd.managed_fields_mut().clear();
            crd.spec.versions.iter_mut().for_each(|v| v.schema = None);
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// Whether a CRD is served: its Established condition is True.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

impl Stores {
    /// Waits until every cache has listed once.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.statefulsets.store.wait_until_ready().await?;
        self.config_maps.store.wait_until_ready().await?;
        self.services.store.wait_until_ready().await?;
        self.pdbs.store.wait_until_ready().await?;
        self.cronjobs.store.wait_until_ready().await?;
        self.monitors.wait_until_ready().await?;
        self.service_accounts.store.wait_until_ready().await?;
        self.roles.store.wait_until_ready().await?;
        self.role_bindings.store.wait_until_ready().await?;
        self.network_policies.store.wait_until_ready().await?;
        self.secrets.wait_until_ready().await
    }
}

/// Looks a namespaced object up in a store.
pub fn lookup<K>(store: &Store<K>, name: &str, namespace: &str) -> Option<std::sync::Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// The cached object, or, when the cache does not have it, the API server's
/// answer ([`fetch`]). A cache still listing after a restart, or one that
/// has not yet seen an object created a moment ago, must not make the
/// operator apply (or report) as if the object did not exist.
pub async fn cached_or_fetch<K>(
    store: &Store<K>,
    api: &Api<K>,
    name: &str,
    namespace: &str,
) -> Result<Option<std::sync::Arc<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
{
    if let Some(cached) = lookup(store, name, namespace) {
        return Ok(Some(cached));
    }
    Ok(fetch(api, name).await?.map(std::sync::Arc::new))
}

/// `name` as the API server's own watch cache holds it (resourceVersion 0):
/// no read from etcd, which is most of what a read costs the API server.
/// That cache is at least as fresh as the operator's, and every write an
/// answer a moment old could lead to is harmless: server-side apply of the
/// same content changes nothing, and creating an object that exists fails
/// with a conflict the callers take as "it exists". Where a stale answer
/// would be reported to the user (the admin Secret's absence), read from
/// etcd instead.
pub async fn fetch<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.get_with(name, &GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(e) if crate::error::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
