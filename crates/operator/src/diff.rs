//! Semantic comparison of a desired object with a live one.

use database_operator_api::v1;
use serde_json::Value;

/// Whether every field set in `desired` has the same value in `live`.
/// Lists must have the same length; maps may hold more keys in `live` (the
/// API server's defaults). Quantities compare by value, since the API server
/// rewrites them in canonical form ("1024Mi" becomes "1Gi").
pub(crate) fn is_subset(desired: &Value, live: &Value) -> bool {
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
                || matches!((v1::quantity::parse(d), v1::quantity::parse(l)), (Some(a), Some(b)) if a == b)
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
