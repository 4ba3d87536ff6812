//! Semantic comparison of a desired object with a live one.

use database_operator_api::v1;
use serde_json::Value;

/// `next` as a JSON merge patch over `previous` (a status): a field that
/// `previous` has and `next` does not is written as null, at any depth. A
/// merge patch that only leaves a field out keeps it: after a scale to one
/// member, a Database's status kept its `replication` and its read-only
/// endpoint for good, and every reconcile wrote it again (found by the
/// chaos test).
pub(crate) fn merge_patch<T: serde::Serialize>(
    previous: Option<&T>,
    next: &T,
) -> Result<Value, kube::Error> {
    let previous = previous
        .map(serde_json::to_value)
        .transpose()
        .map_err(kube::Error::SerdeError)?;
    let next = serde_json::to_value(next).map_err(kube::Error::SerdeError)?;
    Ok(with_removals(previous.as_ref(), next))
}

fn with_removals(previous: Option<&Value>, mut next: Value) -> Value {
    if let (Some(Value::Object(old)), Value::Object(new)) = (previous, &mut next) {
        for (key, was) in old {
            let now = match new.remove(key) {
                None => Value::Null,
                Some(now) => with_removals(Some(was), now),
            };
            new.insert(key.clone(), now);
        }
    }
    next
}

/// Whether every field set in `desired` has the same value in `live`.
/// Lists must have the same length; maps may hold more keys in `live` (the
/// API server's defaults). Quantities compare by value, since the API server
/// rewrites them in canonical form ("1024Mi" becomes "1Gi"). An empty value
/// (null, "", [], {}) matches an absent field: the API server omits empty
/// optional fields (an env var `{"name": "X", "value": ""}` comes back as
/// `{"name": "X"}`), so such a field never counts as drift.
pub(crate) fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::String(d), Value::String(l)) => {
            d == l
                || matches!((v1::quantity::parse(d), v1::quantity::parse(l)), (Some(a), Some(b)) if a == b)
        }
        (d, l) => d == l,
    }
}

/// A value the API server leaves out when it stores an object.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_status_patch_removes_what_the_new_status_lacks_at_any_depth() {
        use serde_json::json;
        let previous = json!({
            "phase": "Running",
            "endpoints": {"primary": "db-primary.ns.svc:5432", "readonly": "db-readonly.ns.svc:5432"},
            "replication": {"primary": "db-0"},
            "conditions": [{"type": "Ready"}],
        });
        let next = json!({
            "phase": "Running",
            "endpoints": {"primary": "db-primary.ns.svc:5432"},
            "conditions": [],
        });
        assert_eq!(
            merge_patch(Some(&previous), &next).unwrap(),
            json!({
                "phase": "Running",
                "endpoints": {"primary": "db-primary.ns.svc:5432", "readonly": null},
                "replication": null,
                "conditions": [],
            })
        );
        // A first status, or one that only adds, is written as it is.
        assert_eq!(merge_patch(None, &next).unwrap(), next);
        assert_eq!(
            merge_patch(Some(&json!({"phase": "Creating"})), &next).unwrap(),
            next
        );
    }

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
    fn empty_values_the_server_omits_are_not_drift() {
        let desired = json!({"env": [{"name": "S3_ENDPOINT", "value": ""}], "args": [], "labels": {}, "x": null});
        let live = json!({"env": [{"name": "S3_ENDPOINT"}]});
        assert!(is_subset(&desired, &live));
        // A value that is set still has to match.
        assert!(!is_subset(
            &json!({"env": [{"name": "A", "value": "1"}]}),
            &json!({"env": [{"name": "A"}]})
        ));
        assert!(!is_subset(&json!({"n": 0}), &json!({})));
        assert!(!is_subset(&json!({"b": false}), &json!({})));
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
