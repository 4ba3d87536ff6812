//! Storage for a cluster without kubelets: a default StorageClass and a tiny
//! external provisioner.
//!
//! StatefulSets' volumeClaimTemplates create PVCs, and the scheduler will not
//! place a pod whose PVC is unbound. For every Pending PVC of class
//! [`STORAGE_CLASS`] the provisioner creates a hostPath PersistentVolume of
//! the requested size, pre-bound to the claim (`claimRef`); the real PV
//! controller in kube-controller-manager then binds the pair, exactly as with
//! a CSI provisioner. No directory is created: KWOK runs no containers.
//! Released volumes of this provisioner (reclaim policy Delete) are deleted,
//! so PVC deletion behaves as on a real cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

/// Name of the default StorageClass the harness creates.
pub const STORAGE_CLASS: &str = "standard";
/// `provisioner` field of that class.
pub const PROVISIONER: &str = "testkit.local/hostpath";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Creates the default StorageClass (binding mode Immediate).
pub async fn create_storage_class(client: &Client) -> Result<()> {
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".into(),
                "true".into(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        allow_volume_expansion: Some(true),
        ..Default::default()
    };
    ignore_conflict(
        Api::<StorageClass>::all(client.clone())
            .create(&PostParams::default(), &class)
            .await,
    )
}

/// Watches claims and volumes until the task is cancelled.
pub async fn run(client: Client, volume_root: PathBuf) {
    let claims = Api::<PersistentVolumeClaim>::all(client.clone());
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let claim_events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map_ok(|pvc| Event::Claim(Box::new(pvc)))
        .boxed();
    let volume_events = watcher(volumes.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map_ok(|pv| Event::Volume(Box::new(pv)))
        .boxed();
    let mut events = futures::stream::select(claim_events, volume_events);
    while let Some(event) = events.next().await {
        let result = match event {
            Ok(Event::Claim(pvc)) => provision(&volumes, &pvc, &volume_root).await,
            Ok(Event::Volume(pv)) => reclaim(&volumes, &pv).await,
            // The watcher retries by itself; keep going.
            Err(_) => Ok(()),
        };
        if let Err(error) = result {
            eprintln!("testkit provisioner: {error:#}");
        }
    }
}

enum Event {
    Claim(Box<PersistentVolumeClaim>),
    Volume(Box<PersistentVolume>),
}

/// The PV that would satisfy `pvc`, or None if the provisioner should not act.
pub fn volume_for(
    pvc: &PersistentVolumeClaim,
    volume_root: &std::path::Path,
) -> Option<PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    let pending = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|phase| phase == "Pending");
    if !pending
        || pvc.metadata.deletion_timestamp.is_some()
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || spec.storage_class_name.as_deref() != Some(STORAGE_CLASS)
    {
        return None;
    }
    let uid = pvc.uid()?;
    let namespace = pvc.namespace()?;
    let name = pvc.name_any();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.into(),
                PROVISIONER.into(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".into(), size)])),
            access_modes: Some(access_modes),
            host_path: Some(HostPathVolumeSource {
                path: volume_root
                    .join(format!("{namespace}-{name}-{uid}"))
                    .to_string_lossy()
                    .into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(name),
                uid: Some(uid),
                ..Default::default()
            }),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            volume_mode: spec.volume_mode.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn provision(
    volumes: &Api<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
    volume_root: &std::path::Path,
) -> Result<()> {
    match volume_for(pvc, volume_root) {
        Some(pv) => ignore_conflict(volumes.create(&PostParams::default(), &pv).await),
        None => Ok(()),
    }
}

async fn reclaim(volumes: &Api<PersistentVolume>, pv: &PersistentVolume) -> Result<()> {
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY)
        .is_some_and(|p| p == PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if ours && released && delete && pv.metadata.deletion_timestamp.is_none() {
        match volumes
            .delete(&pv.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn ignore_conflict<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(class: &str, phase: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-db-0", "namespace": "ns", "uid": "u1"},
            "spec": {
                "storageClassName": class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "7Gi"}},
                "volumeName": volume,
            },
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn pending_claim_gets_prebound_volume_of_requested_size() {
        let pv = volume_for(&claim(STORAGE_CLASS, Some("Pending"), None), "/v".as_ref()).unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u1"));
        let spec = pv.spec.unwrap();
        assert_eq!(spec.capacity.unwrap()["storage"].0, "7Gi");
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(claim_ref.namespace.as_deref(), Some("ns"));
        assert_eq!(claim_ref.name.as_deref(), Some("data-db-0"));
        assert_eq!(claim_ref.uid.as_deref(), Some("u1"));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some(STORAGE_CLASS));
    }

    #[test]
    fn other_classes_and_bound_claims_are_left_alone() {
        let root: &std::path::Path = "/v".as_ref();
        assert!(volume_for(&claim("fast", Some("Pending"), None), root).is_none());
        assert!(volume_for(&claim(STORAGE_CLASS, Some("Bound"), Some("pv")), root).is_none());
        assert!(volume_for(&claim(STORAGE_CLASS, Some("Pending"), Some("pv")), root).is_none());
        assert!(volume_for(&claim(STORAGE_CLASS, None, None), root).is_some());
    }
}
