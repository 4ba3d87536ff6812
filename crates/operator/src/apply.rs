//! Server-side apply under one field manager, skipped when the live object
//! already holds what we would send: a steady-state reconcile writes nothing.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::builders::hash_of;
use crate::builders::meta::APPLIED_HASH;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = api::labels::MANAGER;

/// Applies `desired` unless `live` already matches it. Returns whether it wrote.
///
/// Two checks, because each misses something: the hash annotation notices a
/// field we stopped setting, and the subset comparison notices a field someone
/// else changed by hand.
pub async fn apply_if_changed<K>(
    api: &Api<K>,
    mut desired: K,
    live: Option<&K>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let hash = hash_of(&desired);
    desired
        .annotations_mut()
        .insert(APPLIED_HASH.to_owned(), hash.clone());
    if let Some(live) = live
        && live.annotations().get(APPLIED_HASH) == Some(&hash)
        && is_subset(&to_value(&desired), &to_value(live))
    {
        return Ok(false);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&desired.name_any(), &params, &Patch::Apply(&desired))
        .await?;
    Ok(true)
}

fn to_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialise to JSON")
}

/// Whether every field set in `desired` has the same value in `live`.
/// Lists must have the same length; maps may hold more keys in `live` (the
/// API server's defaults). Quantities compare by value, since the API server
/// rewrites them in canonical form ("1024Mi" becomes "1Gi").
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| {
            l.get(k).is_some_and(|lv| is_subset(dv, lv)) || (dv.is_null() && !l.contains_key(k))
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::String(d), Value::String(l)) => {
            d == l
                || matches!((api::quantity::parse(d), api::quantity::parse(l)), (Some(a), Some(b)) if a == b)
        }
        (d, l) => d == l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"containers": [{"name": "a"}]}}});
        let live = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10,
            "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev/termination-log"}]}}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_value_is_drift() {
        let desired = json!({"spec": {"replicas": 3}});
        let live = json!({"spec": {"replicas": 1}});
        assert!(!is_subset(&desired, &live));
    }

    #[test]
    fn a_removed_list_item_is_drift() {
        let desired = json!({"ports": [{"port": 1}, {"port": 2}]});
        let live = json!({"ports": [{"port": 1}]});
        assert!(!is_subset(&desired, &live));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert!(is_subset(
            &json!({"memory": "1024Mi"}),
            &json!({"memory": "1Gi"})
        ));
        assert!(!is_subset(
            &json!({"memory": "1Gi"}),
            &json!({"memory": "2Gi"})
        ));
    }
}
