//! PodDisruptionBudget `<name>`: voluntary disruptions (drains) take one pod at a time.

use database_operator_api::v1::Database;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta::{Names, child_meta, selector_labels};

/// `maxUnavailable: 1` rather than `minAvailable`: a single-replica database
/// must not block node drains forever.
pub fn pod_disruption_budget(db: &Database) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(db, Names(&db.name_any()).pdb(), "database"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(db)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
