//! What every controller does around one reconcile: time it, count its
//! outcome by error kind, and retry failures with a per-object backoff.

use std::future::Future;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::warn;

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

/// The error policy of every controller: retry `object` after a delay that
/// doubles with each consecutive failure.
pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = key(&*object);
    let delay = ctx.backoff.next_delay(&key);
    warn!(object = %key, kind = error.kind(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
