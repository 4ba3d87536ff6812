//! What every controller does around one reconcile: time it, count its
//! outcome by error kind, and retry failures with a per-object backoff.

use std::future::Future;
use std::sync::Arc;

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::{Predicate, WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::controller::Context;
use crate::error::{Error, Result};

/// The key of `object` in the backoff map and in logs: `kind/namespace/name`.
pub(crate) fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()).to_lowercase(),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Runs `reconcile` for `object` as `controller` (the metrics label): the
/// duration histogram, the outcome counter, and the backoff forgotten on
/// success.
pub(crate) async fn instrumented<K, F>(
    controller: &'static str,
    object: &K,
    ctx: &Context,
    reconcile: F,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action>>,
{
    let _timer = ctx.metrics.reconcile_timer(controller);
    let key = key(object);
    let result = reconcile.await;
    ctx.metrics
        .reconciled(controller, result.as_ref().err().map(Error::kind));
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Runs `reconcile` for `object` as `controller` under the finalizer
/// `finalizer_name`: the finalizer is added before the first apply, and a
/// deleted object gets its cleanup before the finalizer goes. `reconcile`
/// also receives the object's namespace.
pub(crate) async fn finalized<K, F, Fut>(
    controller: &'static str,
    object: Arc<K>,
    ctx: &Context,
    finalizer_name: &str,
    reconcile: F,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnOnce(Event<K>, String) -> Fut,
    Fut: Future<Output = Result<Action>>,
{
    let key_of = object.clone();
    instrumented(controller, &*key_of, ctx, async {
        let namespace = object
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let api = Api::<K>::namespaced(ctx.client.clone(), &namespace);
        // Boxed: a reconcile's future is large (in debug builds, large
        // enough that moving it through these layers overflows a worker's
        // stack); on the heap it is created once and never moved.
        Ok(finalizer(&api, finalizer_name, object, |event| {
            Box::pin(reconcile(event, namespace.clone()))
        })
        .await?)
    })
    .await
}

/// A controller of `K` over the namespaces the operator watches
/// (`ctx.settings.scope`), with its own cache of `K`, running at most
/// `ctx.settings.max_concurrent_reconciles` reconciles at once. Its cache
/// keeps no managedFields.
pub(crate) fn scoped_controller<K>(ctx: &Context) -> Controller<K>
where
    K: crate::scope::Watched,
{
    let (reader, objects) = watched::<K>(ctx);
    controller(ctx, objects, reader)
}

/// [`scoped_controller`], woken only by changes of `K` that `predicate`
/// sees (its cache still holds every change).
pub(crate) fn scoped_controller_woken_by<K, P>(ctx: &Context, predicate: P) -> Controller<K>
where
    K: crate::scope::Watched,
    P: Predicate<K> + Send + 'static,
{
    let (reader, objects) = watched::<K>(ctx);
    controller(
        ctx,
        objects.predicate_filter(predicate, Default::default()),
        reader,
    )
}

/// The objects of `K` in the scope as they change, through a cache
/// without managedFields (who wrote which field is of no use to a
/// reconcile, and is up to half of a small object's size).
fn watched<K>(
    ctx: &Context,
) -> (
    reflector::Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: crate::scope::Watched,
{
    let (reader, writer) = reflector::store();
    let objects = ctx
        .settings
        .scope
        .watch(
            &ctx.client,
            &watcher::Config::default().any_semantic(),
            Some(reader.clone()),
        )
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    (reader, objects)
}

fn controller<K>(
    ctx: &Context,
    objects: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    reader: reflector::Store<K>,
) -> Controller<K>
where
    K: crate::scope::Watched,
{
    Controller::for_stream(objects, reader).with_config(
        kube::runtime::controller::Config::default()
            .concurrency(ctx.settings.max_concurrent_reconciles),
    )
}

/// Drives a controller's stream of outcomes until shutdown. A failed
/// reconcile was logged once by [`error_policy`], with its object, step and
/// child, so it is not logged again here; what is logged is what no object
/// carries: a watch that failed (it retries with backoff).
pub(crate) async fn drive<T, Q: std::fmt::Display + 'static>(
    outcomes: impl Stream<Item = Result<T, kube::runtime::controller::Error<Error, Q>>>,
) {
    use kube::runtime::controller::Error as Outcome;
    outcomes
        .for_each(|outcome| async move {
            match outcome {
                Ok(_) | Err(Outcome::ReconcilerFailed(..)) => {}
                // Woken for an object deleted meanwhile: expected.
                Err(Outcome::ObjectNotFound(object)) => {
                    debug!(object = %object, "woken for an object that is gone");
                }
                Err(error) => warn!(%error, "a controller's watch failed; it retries"),
            }
        })
        .await;
}

/// The error policy of every controller: retry `object` after a delay that
/// doubles with each consecutive failure. The first failure of a run is a
/// warning, with the object, the error's kind, the step and the child (in
/// the error); the retries after it, until one succeeds, are logged at
/// debug level with their count: a slow API server under load does not
/// fill the log with the same line. The errors metric counts every one.
pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = key(&*object);
    let (delay, attempt) = ctx.backoff.next_retry(&key);
    if attempt == 1 {
        warn!(object = %key, kind = error.kind(), %error, retry_in = ?delay, "reconcile failed");
    } else {
        debug!(object = %key, kind = error.kind(), %error, attempt, retry_in = ?delay, "reconcile failed again");
    }
    Action::requeue(delay)
}
