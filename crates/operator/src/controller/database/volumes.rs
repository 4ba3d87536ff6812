//! Growing the data volumes when `spec.storage.size` grows.
//!
//! A StatefulSet's volumeClaimTemplates are immutable, so the template keeps
//! the size the Database was created with and the operator expands each
//! existing PersistentVolumeClaim instead. The storage class must allow
//! volume expansion; if it does not, the API server refuses and the
//! Database reports Failed with the server's message.

use database_operator_api::v1;
use database_operator_api::v1::Database;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{ListParams, Patch};
use kube::{Api, Client, ResourceExt};

use crate::apply::patch_params;
use crate::builders::meta::selector_string;
use crate::error::Result;

/// Requested bytes of a claim, if it states a parseable size.
fn requested(claim: &PersistentVolumeClaim) -> Option<f64> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    v1::quantity::parse(&requests.get("storage")?.0)
}

/// Patches every claim of `db` that requests less than `spec.storage.size`.
/// Returns how many claims were patched.
pub(crate) async fn grow_claims(client: &Client, db: &Database, namespace: &str) -> Result<u32> {
    let Some(wanted) = v1::quantity::parse(&db.spec.storage.size) else {
        return Ok(0);
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    let owned = claims
        .list(&ListParams::default().labels(&selector_string(db)))
        .await?;
    let mut grown = 0;
    for claim in owned
        .items
        .iter()
        .filter(|c| requested(c).is_some_and(|have| have < wanted))
    {
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": db.spec.storage.size}}}});
        let params = patch_params();
        claims
            .patch(&claim.name_any(), &params, &Patch::Merge(&patch))
            .await?;
        grown += 1;
    }
    Ok(grown)
}

/// The size the StatefulSet's claim template asks for, in bytes.
pub(crate) fn template_size(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> Option<f64> {
    let template = sts.spec.volume_claim_templates.as_ref()?.first()?;
    requested(template)
}
