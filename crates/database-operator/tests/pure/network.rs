//! The NetworkPolicy a Database gets, judged by what it lets through: a
//! table, written by hand, of which source pod may reach which port of
//! which pod, evaluated by a small NetworkPolicy evaluator written here
//! from the Kubernetes semantics (not by the builder's own logic).
//!
//! Scenario: the Database `orders` (PostgreSQL, monitoring on) in the
//! namespace `shop`, its operator in `database-operator`; the user admits
//! the `api` pods of namespaces labelled `team: web`, and lets the
//! namespace `monitoring` scrape.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator::builders::Desired;
use operator::builders::network_policy::{created_isolated, isolated, network_policy};

/// A pod somewhere in the cluster.
struct Pod {
    namespace: &'static str,
    namespace_labels: &'static [(&'static str, &'static str)],
    labels: &'static [(&'static str, &'static str)],
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Whether `selector` selects `labels` (matchLabels and matchExpressions).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => panic!("unknown operator {other}"),
        }
    });
    by_labels && by_expressions
}

/// Whether `peer` of a policy in `policy_namespace` matches `source`.
fn peer_matches(peer: &NetworkPolicyPeer, policy_namespace: &str, source: &Pod) -> bool {
    assert!(peer.ip_block.is_none());
    let namespace_ok = match &peer.namespace_selector {
        Some(selector) => {
            let mut ns = labels(source.namespace_labels);
            ns.insert(
                "kubernetes.io/metadata.name".into(),
                source.namespace.into(),
            );
            selects(selector, &ns)
        }
        None => source.namespace == policy_namespace,
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|s| selects(s, &labels(source.labels)));
    namespace_ok && pod_ok
}

/// Whether `source` may open a TCP connection to `port` of `target`
/// under `policies` (every NetworkPolicy of the target's namespace).
fn allowed(policies: &[NetworkPolicy], source: &Pod, target: &Pod, port: i32) -> bool {
    let selecting: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(target.namespace))
        .filter(|p| {
            let spec = p.spec.as_ref().unwrap();
            let ingress = spec
                .policy_types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == "Ingress"));
            ingress && selects(spec.pod_selector.as_ref().unwrap(), &labels(target.labels))
        })
        .collect();
    if selecting.is_empty() {
        return true; // not isolated
    }
    selecting.iter().any(|p| {
        let namespace = p.metadata.namespace.as_deref().unwrap();
        p.spec
            .as_ref()
            .unwrap()
            .ingress
            .iter()
            .flatten()
            .any(|rule| {
                let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                    ports.iter().any(|p| {
                        p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                            && p.port.as_ref().is_none_or(|x| *x == IntOrString::Int(port))
                    })
                });
                let from_ok = rule.from.as_ref().is_none_or(|from| {
                    from.iter()
                        .any(|peer| peer_matches(peer, namespace, source))
                });
                port_ok && from_ok
            })
    })
}

fn orders() -> Database {
    let mut db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Database",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u-1"},
        "spec": {
            "engine": "postgresql", "version": "16.4", "replicas": 3,
            "storage": {"size": "1Gi"},
            "monitoring": {"enabled": true},
            "network": {
                "allowFrom": [{
                    "namespaceSelector": {"matchLabels": {"team": "web"}},
                    "podSelector": {"matchLabels": {"app": "api"}}
                }],
                "metricsFrom": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
                }]
            }
        }
    }))
    .unwrap();
    db.metadata.uid = Some("u-1".into());
    db
}

const MEMBER: Pod = Pod {
    namespace: "shop",
    namespace_labels: &[],
    labels: &[
        ("app.kubernetes.io/name", "database"),
        ("app.kubernetes.io/instance", "orders"),
        ("app.kubernetes.io/component", "database"),
    ],
};
const BACKUP_JOB: Pod = Pod {
    namespace: "shop",
    namespace_labels: &[],
    labels: &[
        ("app.kubernetes.io/name", "database"),
        ("app.kubernetes.io/instance", "orders"),
        ("app.kubernetes.io/component", "backup"),
    ],
};
const OPERATOR: Pod = Pod {
    namespace: "database-operator",
    namespace_labels: &[],
    labels: &[("app.kubernetes.io/name", "database-operator")],
};
const WEB_API: Pod = Pod {
    namespace: "storefront",
    namespace_labels: &[("team", "web")],
    labels: &[("app", "api")],
};
const WEB_OTHER: Pod = Pod {
    namespace: "storefront",
    namespace_labels: &[("team", "web")],
    labels: &[("app", "frontend")],
};
const API_ELSEWHERE: Pod = Pod {
    namespace: "batch",
    namespace_labels: &[("team", "data")],
    labels: &[("app", "api")],
};
const SAME_NAMESPACE_STRANGER: Pod = Pod {
    namespace: "shop",
    namespace_labels: &[],
    labels: &[("app", "cart")],
};
const OTHER_DATABASE: Pod = Pod {
    namespace: "shop",
    namespace_labels: &[],
    labels: &[
        ("app.kubernetes.io/name", "database"),
        ("app.kubernetes.io/instance", "payments"),
        ("app.kubernetes.io/component", "database"),
    ],
};
const OPERATOR_LOOKALIKE: Pod = Pod {
    namespace: "shop",
    namespace_labels: &[],
    labels: &[("app.kubernetes.io/name", "database-operator")],
};
const PROMETHEUS: Pod = Pod {
    namespace: "monitoring",
    namespace_labels: &[],
    labels: &[("app.kubernetes.io/name", "prometheus")],
};
const PROMETHEUS_ELSEWHERE: Pod = Pod {
    namespace: "team-prometheus",
    namespace_labels: &[],
    labels: &[("app.kubernetes.io/name", "prometheus")],
};

const POSTGRES: i32 = 5432;
const EXPORTER: i32 = 9187;

#[test]
fn only_the_named_peers_reach_the_database_and_its_exporter() {
    let db = orders();
    let policy = network_policy(&db, "database-operator");
    let policies = [policy];
    // (who, source, port on a member, allowed?)
    let table: &[(&str, &Pod, i32, bool)] = &[
        ("another member (replication)", &MEMBER, POSTGRES, true),
        ("its backup Job", &BACKUP_JOB, POSTGRES, true),
        ("the operator", &OPERATOR, POSTGRES, true),
        (
            "an api pod of a team: web namespace",
            &WEB_API,
            POSTGRES,
            true,
        ),
        ("another pod of that namespace", &WEB_OTHER, POSTGRES, false),
        (
            "an api pod of another team",
            &API_ELSEWHERE,
            POSTGRES,
            false,
        ),
        (
            "a stranger in the Database's namespace",
            &SAME_NAMESPACE_STRANGER,
            POSTGRES,
            false,
        ),
        ("another Database's pod", &OTHER_DATABASE, POSTGRES, false),
        (
            "a pod labelled like the operator, elsewhere",
            &OPERATOR_LOOKALIKE,
            POSTGRES,
            false,
        ),
        (
            "Prometheus in the allowed namespace",
            &PROMETHEUS,
            POSTGRES,
            false,
        ),
        (
            "Prometheus in the allowed namespace",
            &PROMETHEUS,
            EXPORTER,
            true,
        ),
        (
            "Prometheus in another namespace",
            &PROMETHEUS_ELSEWHERE,
            EXPORTER,
            false,
        ),
        ("the api pod, on the exporter", &WEB_API, EXPORTER, false),
        ("the operator, on another port", &OPERATOR, 8080, false),
    ];
    let mut wrong = Vec::new();
    for (who, source, port, want) in table {
        let got = allowed(&policies, source, &MEMBER, *port);
        if got != *want {
            wrong.push(format!("{who} -> {port}: {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A pod the policy does not select is untouched.
    assert!(allowed(&policies, &WEB_OTHER, &OTHER_DATABASE, POSTGRES));
}

#[test]
fn without_metrics_from_prometheus_pods_of_any_namespace_scrape() {
    let mut db = orders();
    db.spec.network.as_mut().unwrap().metrics_from.clear();
    let policies = [network_policy(&db, "database-operator")];
    assert!(allowed(&policies, &PROMETHEUS_ELSEWHERE, &MEMBER, EXPORTER));
    assert!(!allowed(&policies, &WEB_API, &MEMBER, EXPORTER));
    // Monitoring off: no port for the exporter at all.
    db.spec.monitoring = None;
    let policies = [network_policy(&db, "database-operator")];
    assert!(!allowed(&policies, &PROMETHEUS, &MEMBER, EXPORTER));
    assert!(allowed(&policies, &OPERATOR, &MEMBER, POSTGRES));
}

#[test]
fn new_databases_are_isolated_and_those_created_before_only_on_request() {
    let mut db = orders();
    db.spec.network.as_mut().unwrap().isolate = None;
    // New: isolated, and the StatefulSet remembers it was created so.
    let desired = Desired::build(&db);
    assert!(desired.network_policy.is_some());
    let created = desired.statefulset.clone();
    assert!(created_isolated(Some(&created)));
    assert!(isolated(&db, created_isolated(Some(&created))));
    // Created before (no annotation): left open until isolate: true.
    let mut before = created;
    before.metadata.annotations = None;
    assert!(!isolated(&db, created_isolated(Some(&before))));
    db.spec.network.as_mut().unwrap().isolate = Some(true);
    assert!(isolated(&db, created_isolated(Some(&before))));
    // And a new Database may opt out.
    db.spec.network.as_mut().unwrap().isolate = Some(false);
    assert!(Desired::build(&db).network_policy.is_none());
}
