//! `spec.network`: who may connect to a Database. The operator keeps a
//! NetworkPolicy `<name>` that lets in, on the database port, only the
//! Database's own pods (its members, for replication, and its backup,
//! restore and drill Jobs), the operator's pods, and the pods the user
//! names; and, on the exporters' port, only the scrapers the user names
//! (Prometheus' pods by default). Everything else is denied.
//!
//! Isolation is on by default for Databases whose StatefulSet this
//! operator version created; a Database created before keeps accepting
//! every client (a policy could cut off clients it already has) until
//! `isolate: true`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Who may connect to the Database's pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Whether a NetworkPolicy admits only the peers below (besides the
    /// Database's own pods and the operator). Default: true for a Database
    /// created by this operator version, false for one created before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<bool>,

    /// The pods that may connect to the database port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allow_from: Vec<NetworkPeer>,

    /// The pods that may scrape the exporters (with monitoring on).
    /// Default: pods labelled `app.kubernetes.io/name: prometheus` in any
    /// namespace (prometheus-operator's Prometheus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics_from: Vec<NetworkPeer>,
}

/// Pods by namespace and pod labels: both selectors must match; a
/// podSelector alone means pods of the Database's namespace; a
/// namespaceSelector alone means every pod of those namespaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaceSelector) || has(self.podSelector)").message("a peer of spec.network needs a namespaceSelector, a podSelector or both"))]
pub struct NetworkPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector")]
    pub pod_selector: Option<LabelSelector>,
}

/// A label value: at most 63 characters, alphanumerics at both ends.
const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters.
const LABEL_KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// Kubernetes' LabelSelector, with what the API server checks in a
/// NetworkPolicy checked at admission already: label keys and values,
/// the operators and their values (and bounds, so that the rules' cost is
/// one the API server accepts).
fn label_selector(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use serde_json::json;
    let mut schema = generator.subschema_for::<Option<LabelSelector>>();
    let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return schema;
    };
    if let Some(labels) = properties
        .get_mut("matchLabels")
        .and_then(|v| v.as_object_mut())
    {
        labels.insert("maxProperties".into(), 16.into());
        labels.insert(
            "additionalProperties".into(),
            json!({"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}),
        );
        labels.insert(
            "x-kubernetes-validations".into(),
            json!([{
                "rule": format!("self.all(k, k.size() <= 317 && k.matches('{}'))", LABEL_KEY.replace('\\', "\\\\")),
                "message": "matchLabels keys must be label keys: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.'",
            }]),
        );
    }
    if let Some(expressions) = properties
        .get_mut("matchExpressions")
        .and_then(|v| v.as_object_mut())
    {
        expressions.insert("maxItems".into(), 16.into());
        if let Some(item) = expressions.get_mut("items").and_then(|v| v.as_object_mut()) {
            item.insert(
                "x-kubernetes-validations".into(),
                json!([{
                    "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                    "message": "In and NotIn need values; Exists and DoesNotExist take none",
                }]),
            );
            if let Some(fields) = item.get_mut("properties").and_then(|v| v.as_object_mut()) {
                fields.insert(
                    "key".into(),
                    json!({"type": "string", "maxLength": 317, "pattern": LABEL_KEY}),
                );
                fields.insert(
                    "operator".into(),
                    json!({"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]}),
                );
                fields.insert(
                    "values".into(),
                    json!({"type": "array", "maxItems": 16,
                           "items": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}}),
                );
            }
        }
    }
    schema
}
