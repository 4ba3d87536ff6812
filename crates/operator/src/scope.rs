//! Which namespaces the operator watches: `WATCH_NAMESPACES` (empty = the
//! whole cluster; one namespace; several, comma-separated, as OLM's
//! `olm.targetNamespaces` annotation gives them).
//!
//! Every watch, cache and list of a namespaced kind goes through a
//! [`Scope`], so that an operator scoped to some namespaces needs a Role in
//! each of them and no cluster-wide read of anything but CRDs (whether
//! Velero and prometheus-operator are installed).
//!
//! Several namespaces mean several watches feeding one cache. A reflector
//! store expects one list at a time (`Init`, `InitApply`…, `InitDone`
//! replaces the whole store), so [`Merge`] turns the per-namespace lists
//! into what one store can take: the first lists are held until every
//! namespace has listed (then the store fills at once and is ready), and a
//! later relist of one namespace becomes the deletes and applies that bring
//! that namespace's share of the store up to date, leaving the others'.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// What a watch across the scope can hold: a namespaced kind the operator
/// reads into memory and shares between tasks.
pub trait Watched:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + fmt::Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (needs a ClusterRole).
    #[default]
    Cluster,
    /// These namespaces only, sorted and never empty (needs a Role in each).
    Namespaces(Vec<String>),
}

/// Why a `WATCH_NAMESPACES` value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidScope(String);

impl fmt::Display for InvalidScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WATCH_NAMESPACES: {:?} is not a namespace name (lowercase letters, digits and '-', at most 63)",
            self.0
        )
    }
}

impl std::error::Error for InvalidScope {}

/// A DNS-1123 label: what a namespace name must be.
fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl FromStr for Scope {
    type Err = InvalidScope;

    /// `""` (or only commas and spaces) is the whole cluster; otherwise a
    /// comma-separated list of namespace names.
    fn from_str(value: &str) -> Result<Self, InvalidScope> {
        let mut namespaces = BTreeSet::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_namespace_name(name) {
                return Err(InvalidScope(name.to_owned()));
            }
            namespaces.insert(name.to_owned());
        }
        Ok(if namespaces.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(namespaces.into_iter().collect())
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cluster => f.write_str("all namespaces"),
            Scope::Namespaces(names) => write!(f, "namespaces {}", names.join(", ")),
        }
    }
}

impl Scope {
    /// Whether objects in `namespace` are the operator's to manage.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(names) => names.iter().any(|n| n == namespace),
        }
    }

    /// One API per watched namespace, or one for the whole cluster: what a
    /// list across the scope goes through.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Cluster => vec![Api::all(client.clone())],
            Scope::Namespaces(names) => names
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }

    /// The watch events of `K` across the scope, with backoff, for one
    /// consumer (a store through `reflect`, or a trigger). `store` is the
    /// store these events will fill, if any: with several namespaces, a
    /// relist of one finds there what it no longer holds, and deletes it.
    pub fn watch<K>(
        &self,
        client: &Client,
        config: &watcher::Config,
        store: Option<Store<K>>,
    ) -> BoxStream<'static, watcher::Result<Event<K>>>
    where
        K: Watched,
    {
        let mut streams: Vec<_> = self
            .apis::<K>(client)
            .into_iter()
            .map(|api| watch(api, config.clone()).default_backoff().boxed())
            .collect();
        match self {
            Scope::Namespaces(names) if names.len() > 1 => {
                merged(names.clone(), streams, store).boxed()
            }
            _ => streams.remove(0),
        }
    }
}

impl Scope {
    /// The objects of `K` across the scope as they change: what wakes a
    /// controller (`owns_stream`, `watches_stream`) without a cache.
    pub fn touched<K>(
        &self,
        client: &Client,
        config: &watcher::Config,
    ) -> BoxStream<'static, watcher::Result<K>>
    where
        K: Watched,
    {
        self.watch(client, config, None).touched_objects().boxed()
    }
}

/// The events of one watch per namespace (`namespaces[i]` feeds
/// `streams[i]`), as one store can take them: see [`Merge`].
fn merged<K>(
    namespaces: Vec<String>,
    streams: Vec<BoxStream<'static, watcher::Result<Event<K>>>>,
    store: Option<Store<K>>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let tagged = stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |event| (i, event)).boxed()),
    );
    let mut merge = Merge::new(namespaces, store);
    tagged.flat_map(move |(i, event)| {
        let out: Vec<watcher::Result<Event<K>>> = match event {
            Ok(event) => merge.step(i, event).into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        stream::iter(out)
    })
}

/// Turns the events of several per-namespace watches into events for one
/// store. Pure apart from reading that store, so it is tested by feeding
/// it events.
pub(crate) struct Merge<K: Resource<DynamicType = ()> + Clone + 'static> {
    namespaces: Vec<String>,
    /// A list in progress, per namespace.
    listing: Vec<Option<Vec<K>>>,
    /// Until every namespace has listed once: each one's objects by name.
    held: Option<Vec<Option<BTreeMap<String, K>>>>,
    store: Option<Store<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Merge<K> {
    pub(crate) fn new(namespaces: Vec<String>, store: Option<Store<K>>) -> Self {
        let n = namespaces.len();
        Self {
            namespaces,
            listing: vec![None; n],
            held: Some(vec![None; n]),
            store,
        }
    }

    /// What the store should see for `event` from namespace `i`.
    pub(crate) fn step(&mut self, i: usize, event: Event<K>) -> Vec<Event<K>> {
        match event {
            Event::Init => {
                self.listing[i] = Some(Vec::new());
                Vec::new()
            }
            Event::InitApply(object) => match &mut self.listing[i] {
                Some(list) => {
                    list.push(object);
                    Vec::new()
                }
                None => self.step(i, Event::Apply(object)),
            },
            Event::InitDone => {
                let listed = self.listing[i].take().unwrap_or_default();
                match &mut self.held {
                    Some(held) => {
                        held[i] = Some(listed.into_iter().map(|o| (o.name_any(), o)).collect());
                        if held.iter().all(Option::is_some) {
                            self.release()
                        } else {
                            Vec::new()
                        }
                    }
                    None => self.relisted(i, listed),
                }
            }
            Event::Apply(object) => match self.held_of(i) {
                Some(objects) => {
                    objects.insert(object.name_any(), object);
                    Vec::new()
                }
                None => vec![Event::Apply(object)],
            },
            Event::Delete(object) => match self.held_of(i) {
                Some(objects) => {
                    objects.remove(&object.name_any());
                    Vec::new()
                }
                None => vec![Event::Delete(object)],
            },
        }
    }

    /// Namespace `i`'s held objects, while the first lists are held.
    fn held_of(&mut self, i: usize) -> Option<&mut BTreeMap<String, K>> {
        self.held.as_mut().and_then(|held| held[i].as_mut())
    }

    /// Every namespace has listed: the store fills at once and is ready.
    fn release(&mut self) -> Vec<Event<K>> {
        let held = self.held.take().unwrap_or_default();
        let mut out = vec![Event::Init];
        out.extend(
            held.into_iter()
                .flatten()
                .flat_map(BTreeMap::into_values)
                .map(Event::InitApply),
        );
        out.push(Event::InitDone);
        out
    }

    /// Namespace `i` listed again (its watch restarted): what the store
    /// holds there and the list lacks is deleted; the list is applied.
    fn relisted(&mut self, i: usize, listed: Vec<K>) -> Vec<Event<K>> {
        let namespace = &self.namespaces[i];
        let names: HashSet<String> = listed.iter().map(ResourceExt::name_any).collect();
        let mut out: Vec<Event<K>> = self
            .store
            .iter()
            .flat_map(Store::state)
            .filter(|o| {
                o.namespace().as_deref() == Some(namespace) && !names.contains(&o.name_any())
            })
            .map(|o| Event::Delete((*o).clone()))
            .collect();
        out.extend(listed.into_iter().map(Event::Apply));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Merge, Scope};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use kube::{Resource, ResourceExt};

    fn cm(namespace: &str, name: &str, value: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.meta_mut().name = Some(name.into());
        cm.meta_mut().namespace = Some(namespace.into());
        cm.data = Some([("v".to_owned(), value.to_owned())].into());
        cm
    }

    fn key(o: &ConfigMap) -> String {
        format!("{}/{}", o.namespace().unwrap(), o.name_any())
    }

    /// The store's content, as `namespace/name=value`, sorted.
    fn content(store: &reflector::Store<ConfigMap>) -> Vec<String> {
        let mut all: Vec<String> = store
            .state()
            .iter()
            .map(|o| format!("{}={}", key(o), o.data.as_ref().unwrap()["v"]))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn watch_namespaces_parse_to_a_sorted_set_or_the_whole_cluster() {
        assert_eq!("".parse::<Scope>().unwrap(), Scope::Cluster);
        assert_eq!(" , ".parse::<Scope>().unwrap(), Scope::Cluster);
        assert_eq!(
            "team-b, team-a,team-b".parse::<Scope>().unwrap(),
            Scope::Namespaces(vec!["team-a".into(), "team-b".into()])
        );
        for bad in ["Team", "a_b", "-a", "a-", &"a".repeat(64), "a b"] {
            let error = bad.parse::<Scope>().unwrap_err().to_string();
            assert!(error.contains("WATCH_NAMESPACES"), "{bad}: {error}");
        }
        let scoped: Scope = "a,b".parse().unwrap();
        assert!(scoped.contains("a") && scoped.contains("b") && !scoped.contains("c"));
        assert!(Scope::Cluster.contains("anything"));
        assert_eq!(scoped.to_string(), "namespaces a, b");
    }

    #[tokio::test]
    async fn the_store_is_ready_only_when_every_namespace_has_listed_and_misses_nothing_meanwhile()
    {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(vec!["a".into(), "b".into()], Some(store.clone()));
        let mut feed = |i: usize, event: Event<ConfigMap>| {
            let out = merge.step(i, event);
            for e in &out {
                writer.apply_watcher_event(e);
            }
            out.len()
        };
        assert_eq!(feed(0, Event::Init), 0);
        feed(0, Event::InitApply(cm("a", "one", "1")));
        feed(0, Event::InitApply(cm("a", "gone", "1")));
        assert_eq!(feed(0, Event::InitDone), 0, "b has not listed yet");
        // Changes in a while b still lists are held, not lost.
        feed(0, Event::Apply(cm("a", "one", "2")));
        feed(0, Event::Delete(cm("a", "gone", "1")));
        feed(1, Event::Init);
        feed(1, Event::InitApply(cm("b", "two", "1")));
        assert!(content(&store).is_empty());
        feed(1, Event::InitDone);
        assert_eq!(content(&store), ["a/one=2", "b/two=1"]);
        // Ready: a store that waited would now be released.
        let ready =
            tokio::time::timeout(std::time::Duration::from_secs(1), store.wait_until_ready()).await;
        assert!(matches!(ready, Ok(Ok(()))));
        // Then events pass through.
        assert_eq!(feed(1, Event::Apply(cm("b", "three", "1"))), 1);
        assert_eq!(content(&store), ["a/one=2", "b/three=1", "b/two=1"]);
    }

    #[test]
    fn a_relist_of_one_namespace_deletes_what_it_lost_and_keeps_the_others() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(vec!["a".into(), "b".into()], Some(store.clone()));
        let mut deleted = Vec::new();
        let mut feed = |i: usize, event: Event<ConfigMap>| {
            for e in merge.step(i, event) {
                if let Event::Delete(o) = &e {
                    deleted.push(key(o));
                }
                writer.apply_watcher_event(&e);
            }
        };
        for (i, ns) in ["a", "b"].into_iter().enumerate() {
            feed(i, Event::Init);
            feed(i, Event::InitApply(cm(ns, "x", "1")));
            feed(i, Event::InitApply(cm(ns, "y", "1")));
            feed(i, Event::InitDone);
        }
        // a's watch restarts: y went away and x changed while it was down.
        feed(0, Event::Init);
        feed(0, Event::InitApply(cm("a", "x", "2")));
        assert_eq!(content(&store).len(), 4, "nothing changes mid-list");
        feed(0, Event::InitDone);
        assert_eq!(content(&store), ["a/x=2", "b/x=1", "b/y=1"]);
        assert_eq!(deleted, ["a/y"], "a delete, so the owner is woken");
    }
}
