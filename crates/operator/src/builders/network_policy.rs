//! NetworkPolicy `<name>`: who may connect to a Database's pods
//! (`spec.network`, see the API type's docs).
//!
//! It selects the Database's pods (its members and its Jobs' pods carry the
//! Database's selector labels) and admits, on the database port, the
//! Database's own pods (replication, backups, restores, drills), the
//! operator's pods in its namespace, and `spec.network.allowFrom`; on the
//! exporters' port, with monitoring on, `spec.network.metricsFrom` or
//! Prometheus' pods. Nothing else reaches them.
//!
//! The default is decided once per Database: a StatefulSet this operator
//! version created carries [`NETWORK_ANNOTATION`], and its Database is
//! isolated unless `isolate: false`; one created before is not, unless
//! `isolate: true` (a policy could cut off clients it already has).

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use database_operator_api::v1::network::NetworkPeer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta::{Names, child_meta, selector_labels};
use super::monitoring::exporter::Exporter;
use super::statefulset::COMPONENT;
use crate::engine::driver_of;

/// StatefulSet annotation: created by an operator that isolates new
/// Databases by default.
pub const NETWORK_ANNOTATION: &str = "example.com/network-isolation";
/// The value of [`NETWORK_ANNOTATION`].
pub const BY_DEFAULT: &str = "default";

/// The label of the operator's pods (every install path sets it).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "database-operator");
/// The label of the default scrapers: prometheus-operator's Prometheus pods.
pub const PROMETHEUS_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "prometheus");

/// Whether a StatefulSet created now isolates by default, judged from the
/// live one (`None`: not created yet).
pub fn created_isolated(live: Option<&StatefulSet>) -> bool {
    live.is_none_or(|sts| {
        sts.annotations()
            .get(NETWORK_ANNOTATION)
            .map(String::as_str)
            == Some(BY_DEFAULT)
    })
}

/// Whether `db` gets a NetworkPolicy, when its StatefulSet was
/// `created_isolated` (see [`created_isolated`]).
pub fn isolated(db: &Database, created_isolated: bool) -> bool {
    db.spec
        .network
        .as_ref()
        .and_then(|n| n.isolate)
        .unwrap_or(created_isolated)
}

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

fn label(pair: (&str, &str)) -> BTreeMap<String, String> {
    BTreeMap::from([(pair.0.to_owned(), pair.1.to_owned())])
}

fn peer(user: &NetworkPeer) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: user.namespace_selector.clone(),
        pod_selector: user.pod_selector.clone(),
        ..NetworkPolicyPeer::default()
    }
}

fn tcp(port: i32) -> Vec<NetworkPolicyPort> {
    vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }]
}

/// The NetworkPolicy of `db`, whose operator runs in `operator_namespace`.
pub fn network_policy(db: &Database, operator_namespace: &str) -> NetworkPolicy {
    let network = db.spec.network.clone().unwrap_or_default();
    let mut database_from = vec![
        // Its members (replication) and its Jobs' pods (backups, restores,
        // drills), in its namespace.
        NetworkPolicyPeer {
            pod_selector: Some(selector(selector_labels(db))),
            ..NetworkPolicyPeer::default()
        },
        // The operator (users, monitoring login, replication decisions).
        NetworkPolicyPeer {
            namespace_selector: Some(selector(label((
                "kubernetes.io/metadata.name",
                operator_namespace,
            )))),
            pod_selector: Some(selector(label(OPERATOR_POD_LABEL))),
            ..NetworkPolicyPeer::default()
        },
    ];
    database_from.extend(network.allow_from.iter().map(peer));
    let mut ingress = vec![NetworkPolicyIngressRule {
        ports: Some(tcp(driver_of(&db.spec).port())),
        from: Some(database_from),
    }];
    if db.enabled_monitoring().is_some() {
        let scrapers = if network.metrics_from.is_empty() {
            vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(selector(label(PROMETHEUS_POD_LABEL))),
                ..NetworkPolicyPeer::default()
            }]
        } else {
            network.metrics_from.iter().map(peer).collect()
        };
        ingress.push(NetworkPolicyIngressRule {
            ports: Some(tcp(Exporter::of(db.spec.engine).port())),
            from: Some(scrapers),
        });
    }
    NetworkPolicy {
        metadata: child_meta(db, Names(&db.name_any()).network_policy(), COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(selector_labels(db))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}
