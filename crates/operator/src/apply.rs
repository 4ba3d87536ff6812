//! Server-side apply under one field manager, skipped when the live object
//! already holds what we would send: a steady-state reconcile writes nothing.

use database_operator_api::v1;
use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::builders::hash_of;
use crate::builders::meta::APPLIED_HASH;
use crate::diff::is_subset;
use crate::error::is_not_found;

/// The field manager of every write the operator makes.
pub(crate) const FIELD_MANAGER: &str = v1::labels::OPERATOR;

/// Parameters of every merge patch the operator sends: its field manager.
pub(crate) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Applies `desired` unless `live` already matches it. Returns whether it wrote.
///
/// Two checks, because each misses something: the hash annotation notices a
/// field we stopped setting, and the subset comparison notices a field someone
/// else changed by hand.
pub(crate) async fn apply_if_changed<K>(
    api: &Api<K>,
    desired: K,
    live: Option<&K>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    Ok(apply_returning(api, desired, live).await?.is_some())
}

/// [`apply_if_changed`], returning the object as the API server stored it
/// when it wrote: what the caller would otherwise read back.
pub(crate) async fn apply_returning<K>(
    api: &Api<K>,
    mut desired: K,
    live: Option<&K>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let hash = stamp(&mut desired);
    if let Some(live) = live
        && live.annotations().get(APPLIED_HASH) == Some(&hash)
        && is_subset(&comparable(&desired), &comparable(live))
    {
        return Ok(None);
    }
    tracing::debug!(
        kind = K::kind(&Default::default()).as_ref(),
        name = %desired.name_any(),
        reason = match live {
            None => "missing",
            Some(live) if live.annotations().get(APPLIED_HASH) != Some(&hash) => "spec changed",
            Some(_) => "drifted",
        },
        "applying"
    );
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(Some(
        api.patch(&desired.name_any(), &params, &Patch::Apply(&desired))
            .await?,
    ))
}

/// Puts on `desired` the hash of what it holds (`example.com/applied-hash`)
/// and returns it. Stamping twice gives the same hash: the stamp is not
/// part of what it hashes.
pub(crate) fn stamp<K: Resource + Serialize>(desired: &mut K) -> String {
    if desired.annotations().contains_key(APPLIED_HASH) {
        let annotations = desired.annotations_mut();
        annotations.remove(APPLIED_HASH);
        if annotations.is_empty() {
            desired.meta_mut().annotations = None;
        }
    }
    let hash = hash_of(&*desired);
    desired
        .annotations_mut()
        .insert(APPLIED_HASH.to_owned(), hash.clone());
    hash
}

/// Merge-patches the metadata of `name` with `patch` under the operator's
/// field manager; returns whether it existed (a 404 is no error).
pub(crate) async fn patch_metadata<K>(
    api: &Api<K>,
    name: &str,
    patch: &Value,
) -> crate::error::Result<bool>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api
        .patch_metadata(name, &patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name` in the background; returns 1 if it deleted it, 0 if it
/// was already gone.
pub(crate) async fn delete<K>(api: &Api<K>, name: &str) -> crate::error::Result<u32>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(1),
        Err(e) if is_not_found(&e) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn comparable(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialise to JSON")
}
