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
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}
