//! Fake nodes, kept alive by KWOK.

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Annotation KWOK is told to manage (`--manage-nodes-with-annotation-selector`).
pub const KWOK_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Resources of every fake node: room for ~1000 small pods.
const ALLOCATABLE: [(&str, &str); 4] = [
    ("cpu", "64"),
    ("memory", "256Gi"),
    ("pods", "1100"),
    ("ephemeral-storage", "1Ti"),
];

pub fn node_name(index: usize) -> String {
    format!("kwok-node-{index}")
}

/// The Node object for `name`; KWOK fills in conditions, addresses and
/// nodeInfo and keeps the allocatable resources given here.
pub fn fake_node(name: &str, zone: &str) -> Node {
    let resources: BTreeMap<String, Quantity> = ALLOCATABLE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: Some(BTreeMap::from([(
                KWOK_ANNOTATION.0.to_owned(),
                KWOK_ANNOTATION.1.to_owned(),
            )])),
            labels: Some(BTreeMap::from([
                ("type".to_owned(), "kwok".to_owned()),
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                ("node-role.kubernetes.io/agent".to_owned(), String::new()),
                ("topology.kubernetes.io/zone".to_owned(), zone.to_owned()),
            ])),
            ..Default::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn create(client: &Client, count: usize) -> Result<Vec<String>> {
    let api = Api::<Node>::all(client.clone());
    let mut names = Vec::with_capacity(count);
    for index in 0..count {
        let name = node_name(index);
        // Spread nodes over three zones so topology spread constraints work.
        let zone = format!("zone-{}", ["a", "b", "c"][index % 3]);
        api.create(&PostParams::default(), &fake_node(&name, &zone))
            .await?;
        names.push(name);
    }
    Ok(names)
}

/// Ready=True and none of the node lifecycle controller's NoSchedule taints.
pub fn is_schedulable(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key == "node.kubernetes.io/not-ready" || t.key == "node.kubernetes.io/unreachable"
            })
        });
    ready && !tainted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, taint: Option<&str>) -> Node {
        let taints: Vec<_> = taint
            .into_iter()
            .map(|key| serde_json::json!({"key": key, "effect": "NoSchedule"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap()
    }

    #[test]
    fn schedulable_needs_ready_and_no_lifecycle_taint() {
        assert!(is_schedulable(&node("True", None)));
        assert!(!is_schedulable(&node("False", None)));
        assert!(!is_schedulable(&node(
            "True",
            Some("node.kubernetes.io/not-ready")
        )));
        assert!(is_schedulable(&node("True", Some("example.com/other"))));
    }

    #[test]
    fn fake_node_is_managed_by_kwok_and_large() {
        let node = fake_node("kwok-node-0", "zone-a");
        let annotations = node.metadata.annotations.unwrap();
        assert_eq!(annotations[KWOK_ANNOTATION.0], KWOK_ANNOTATION.1);
        let allocatable = node.status.unwrap().allocatable.unwrap();
        assert_eq!(allocatable["pods"].0, "1100");
    }
}
