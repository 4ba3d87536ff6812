//! The caches of the children the operator owns, kept small, and the one
//! way a child is made to match what the operator wants ([`converge`]).
//!
//! At a thousand Databases the children's full content was most of the
//! operator's memory (a StatefulSet takes 39 KB once deserialised, a
//! CronJob 25 KB, a Service 4 KB: measured by `make bench`, which prints
//! what each cache holds). A reconcile needs that content only to compare
//! it with what it wants, and that comparison gives the same answer until
//! the object changes. So the caches hold metadata (a metadata-only watch:
//! the API server sends nothing else), trimmed to what this module reads
//! ([`trim_metadata`]), and [`Owned`] remembers, per child, the version at
//! which the operator last found or wrote its whole content:
//!
//! - the child carries the hash of what the operator wants
//!   (`example.com/applied-hash`), its metadata holds what the operator
//!   sets there, and its version is the one remembered: it is as wanted,
//!   and nothing is read;
//! - otherwise (someone edited it, the operator wants something else, or
//!   the operator has not looked at it since it started) the child is read
//!   in full, compared, and written only when it differs.
//!
//! The version is the resourceVersion ([`Version::Resource`]): any write
//! moves it. The StatefulSet, whose status moves with every pod, is known
//! by its uid and generation instead, which only its spec moves, and its
//! labels and annotations are compared in its cache ([`Version::Generation`]).
//! The memory is one entry per child, dropped when the watch sees the
//! child deleted and, after a relist, for every child the cache no longer
//! holds.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::stores::{fetch, lookup};
use crate::apply::{apply_returning, stamp};
use crate::error::{Result, StepContext};

/// A cache of one kind of child (`C` is what it holds: the metadata, or a
/// trimmed object) and which of those children the operator has checked.
#[derive(Clone)]
pub struct Owned<C: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<C>,
    version: Version,
    checked: Arc<Mutex<HashMap<String, u64>>>,
}

/// What tells the operator that a child changed since it checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Its resourceVersion: any write. For caches of metadata trimmed to
    /// what [`converge`] reads ([`trim_metadata`]).
    Resource,
    /// Its uid and generation (a write to its spec), with its labels,
    /// annotations and owner references compared in the cache: for a kind
    /// whose status changes often and whose cache keeps that metadata.
    Generation,
}

impl<C: Resource<DynamicType = ()> + Clone + 'static> Owned<C> {
    pub fn new(store: Store<C>, version: Version) -> Self {
        Self {
            store,
            version,
            checked: Arc::default(),
        }
    }

    /// The cached child `name` in `namespace`.
    pub fn get(&self, name: &str, namespace: &str) -> Option<Arc<C>> {
        lookup(&self.store, name, namespace)
    }

    /// Whether `cached` is known to hold `desired` (stamped with its hash,
    /// see [`crate::apply::stamp`]) without reading it: see the module
    /// documentation.
    pub fn is_current(&self, cached: &ObjectMeta, desired: &ObjectMeta) -> bool {
        let stamped = |m: &ObjectMeta| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(crate::builders::meta::APPLIED_HASH))
                .cloned()
        };
        stamped(desired).is_some()
            && stamped(cached) == stamped(desired)
            && self.remembered(cached) == Some(self.fingerprint(cached))
            && (self.version == Version::Resource || metadata_holds(desired, cached))
    }

    /// Remembers that `object` (as the API server returned it) holds what
    /// the operator wants.
    pub fn record(&self, object: &ObjectMeta) {
        if let Some(key) = key(object) {
            let fingerprint = self.fingerprint(object);
            self.entries().insert(key, fingerprint);
        }
    }

    /// Keeps the remembered versions in step with the watch that fills the
    /// cache: a deleted child is forgotten, and after a relist so is every
    /// child the cache no longer holds. Call it on each event after the
    /// store has taken it.
    pub fn follow(&self, event: &Event<C>) {
        match event {
            Event::Delete(object) => {
                if let Some(key) = key(object.meta()) {
                    self.entries().remove(&key);
                }
            }
            Event::InitDone => {
                let store = &self.store;
                self.entries().retain(|key, _| {
                    key.split_once('/').is_some_and(|(namespace, name)| {
                        store.get(&ObjectRef::new(name).within(namespace)).is_some()
                    })
                });
            }
            Event::Apply(_) | Event::Init | Event::InitApply(_) => {}
        }
    }

    /// How many children are remembered.
    #[cfg(test)]
    fn remembered_count(&self) -> usize {
        self.entries().len()
    }

    fn remembered(&self, object: &ObjectMeta) -> Option<u64> {
        key(object).and_then(|key| self.entries().get(&key).copied())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.checked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `namespace/name`.
fn key(meta: &ObjectMeta) -> Option<String> {
    Some(format!(
        "{}/{}",
        meta.namespace.as_deref()?,
        meta.name.as_deref()?
    ))
}

impl<C: Resource<DynamicType = ()> + Clone + 'static> Owned<C> {
    /// The object's version, as [`Version`] says: a child deleted and made
    /// again has another resourceVersion, and another uid.
    fn fingerprint(&self, meta: &ObjectMeta) -> u64 {
        let mut hasher = DefaultHasher::new();
        match self.version {
            Version::Resource => meta.resource_version.hash(&mut hasher),
            Version::Generation => {
                meta.uid.hash(&mut hasher);
                meta.generation.hash(&mut hasher);
            }
        }
        hasher.finish()
    }
}

/// What a metadata cache keeps of a child: its name, namespace,
/// resourceVersion, owner references (which wake its Database) and the
/// hash of what the operator applied. Labels, other annotations, the uid
/// and managedFields are read when the child is compared in full.
pub fn trim_metadata(meta: &mut ObjectMeta) {
    let applied = meta
        .annotations
        .take()
        .and_then(|mut a| a.remove_entry(crate::builders::meta::APPLIED_HASH));
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        owner_references: meta.owner_references.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        annotations: applied.map(|entry| std::collections::BTreeMap::from([entry])),
        ..ObjectMeta::default()
    };
}

/// Whether the labels, annotations and owner references the operator sets
/// are on the cached object: an edit of these moves no generation.
fn metadata_holds(desired: &ObjectMeta, cached: &ObjectMeta) -> bool {
    let part = |m: &ObjectMeta| {
        serde_json::json!({
            "labels": m.labels,
            "annotations": m.annotations,
            "ownerReferences": m.owner_references,
        })
    };
    crate::diff::is_subset(&part(desired), &part(cached))
}

/// Makes the child `desired` match, reading it in full only when the cache
/// cannot say it does ([`Owned::is_current`]). Returns the writes it made:
/// 0 or 1.
pub(crate) async fn converge<K>(
    client: &Client,
    owned: &Owned<PartialObjectMeta<K>>,
    namespace: &str,
    mut desired: K,
    step: &'static str,
) -> Result<u32>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + 'static,
{
    let name = desired.name_any();
    stamp(&mut desired);
    if owned
        .get(&name, namespace)
        .is_some_and(|cached| owned.is_current(&cached.metadata, desired.meta()))
    {
        return Ok(0);
    }
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let live = fetch(&api, &name).await.step(step, &name)?;
    let written = apply_returning(&api, desired, live.as_ref())
        .await
        .step(step, &name)?;
    if let Some(now) = written.as_ref().or(live.as_ref()) {
        owned.record(now.meta());
    }
    Ok(u32::from(written.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::reflector;
    use kube::runtime::reflector::store::Writer;
    use std::collections::BTreeMap;

    fn meta(generation: Option<i64>, version: &str, hash: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("db-headless".into()),
            namespace: Some("ns".into()),
            uid: Some("u-1".into()),
            generation,
            resource_version: Some(version.into()),
            labels: Some(BTreeMap::from([("app".into(), "db".into())])),
            annotations: Some(BTreeMap::from([(
                crate::builders::meta::APPLIED_HASH.into(),
                hash.into(),
            )])),
            ..Default::default()
        }
    }

    fn desired(hash: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("db-headless".into()),
            namespace: Some("ns".into()),
            ..meta(None, "", hash)
        }
    }

    fn owned(
        version: Version,
    ) -> (
        Owned<PartialObjectMeta<Service>>,
        Writer<PartialObjectMeta<Service>>,
    ) {
        let (store, writer) = reflector::store();
        (Owned::new(store, version), writer)
    }

    fn trimmed(meta: &ObjectMeta) -> ObjectMeta {
        let mut meta = meta.clone();
        trim_metadata(&mut meta);
        meta
    }

    #[test]
    fn a_child_is_current_only_at_the_resource_version_the_operator_checked() {
        let (owned, _) = owned(Version::Resource);
        let checked = meta(None, "10", "h1");
        assert!(
            !owned.is_current(&trimmed(&checked), &desired("h1")),
            "never checked"
        );
        // Recorded from the whole object, compared with the trimmed cache.
        owned.record(&checked);
        assert!(owned.is_current(&trimmed(&checked), &desired("h1")));
        // Someone wrote it (a label, the spec, anything): another version.
        assert!(!owned.is_current(&trimmed(&meta(None, "11", "h1")), &desired("h1")));
        // The operator wants something else.
        assert!(!owned.is_current(&trimmed(&checked), &desired("h2")));
        // Its stamp removed by hand (at the same version, as in a cache
        // that has not seen the edit yet, which brings another anyway).
        let mut unstamped = trimmed(&checked);
        unstamped.annotations = None;
        assert!(!owned.is_current(&unstamped, &desired("h1")));
    }

    #[test]
    fn the_metadata_cache_keeps_only_what_converge_reads() {
        let kept = trimmed(&meta(Some(3), "10", "h1"));
        assert_eq!(kept.name.as_deref(), Some("db-headless"));
        assert_eq!(kept.resource_version.as_deref(), Some("10"));
        assert_eq!(kept.labels, None);
        assert_eq!(kept.uid, None);
        assert_eq!(
            kept.annotations,
            Some(BTreeMap::from([(
                crate::builders::meta::APPLIED_HASH.into(),
                "h1".into()
            )]))
        );
    }

    #[test]
    fn by_generation_a_status_write_keeps_it_current_but_a_label_edit_or_a_new_uid_does_not() {
        let (owned, _) = owned(Version::Generation);
        owned.record(&meta(Some(1), "10", "h1"));
        assert!(
            owned.is_current(&meta(Some(1), "12", "h1"), &desired("h1")),
            "a status write moves the resourceVersion, not the generation"
        );
        let mut relabelled = meta(Some(1), "13", "h1");
        relabelled.labels = Some(BTreeMap::from([("app".into(), "other".into())]));
        assert!(!owned.is_current(&relabelled, &desired("h1")));
        assert!(!owned.is_current(&meta(Some(2), "14", "h1"), &desired("h1")));
        let again = ObjectMeta {
            uid: Some("u-2".into()),
            ..meta(Some(1), "15", "h1")
        };
        assert!(
            !owned.is_current(&again, &desired("h1")),
            "deleted and made again"
        );
    }

    #[test]
    fn deleted_children_and_those_a_relist_no_longer_finds_are_forgotten() {
        let (owned, mut writer) = owned(Version::Resource);
        let kept = PartialObjectMeta::<Service> {
            metadata: meta(None, "10", "h"),
            ..Default::default()
        };
        let mut gone = kept.clone();
        gone.metadata.name = Some("db-readonly".into());
        owned.record(&kept.metadata);
        owned.record(&gone.metadata);
        assert_eq!(owned.remembered_count(), 2);
        owned.follow(&Event::Delete(gone.clone()));
        assert_eq!(owned.remembered_count(), 1);

        owned.record(&gone.metadata);
        for event in [Event::Init, Event::InitApply(kept.clone()), Event::InitDone] {
            writer.apply_watcher_event(&event);
            owned.follow(&event);
        }
        assert_eq!(owned.remembered_count(), 1, "only what the relist found");
        assert!(owned.is_current(&kept.metadata, &desired("h")));
    }
}
