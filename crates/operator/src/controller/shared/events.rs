//! Kubernetes Events for what a user should see. Failing to record one is
//! logged, never fatal.
//!
//! [`Recorder`] is ours rather than kube's: kube's keeps every event it
//! published for six minutes, whole (a few KB each with its key), in a map
//! that never shrinks, and a burst of 1,000 Databases left megabytes there
//! (measured with heaptrack at N = 300). Ours remembers per event only what
//! a repeat needs: its name, its namespace, its count and when it was last
//! seen. A repeat of the same event (same object, type, reason, action and
//! note) within [`SERIES_WINDOW`] is counted on the first one's series, as
//! client-go does, instead of creating another object.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource};
use tracing::warn;

use crate::controller::Context;

/// The API server refuses event notes longer than this many bytes.
const MAX_EVENT_NOTE: usize = 1024;

/// How long a published event takes repeats onto its series (client-go and
/// kube use six minutes too).
pub(crate) const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The action every event of the operator's reports.
const ACTION: &str = "Reconcile";

fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Records Events (events.k8s.io/v1) as the operator's controller.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

/// What the recorder remembers of the events of the last
/// [`SERIES_WINDOW`], by a hash of what makes two events the same. Pure:
/// the clock is passed in.
#[derive(Default)]
pub(crate) struct Recent {
    events: HashMap<u64, Published>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Published {
    pub namespace: String,
    pub name: String,
    /// How many times it happened (1 until a repeat).
    pub count: i32,
    pub last: Timestamp,
}

impl Recent {
    /// Forgets what is older than the window, and gives back the memory of
    /// a map that emptied (a `HashMap` keeps its capacity otherwise).
    pub(crate) fn forget_before(&mut self, now: Timestamp) {
        let window = SignedDuration::try_from(SERIES_WINDOW).unwrap_or(SignedDuration::ZERO);
        self.events.retain(|_, p| p.last + window > now);
        if self.events.capacity() > 4 * self.events.len().max(16) {
            self.events.shrink_to_fit();
        }
    }

    /// The event `key` was published last in the window, if it was.
    pub(crate) fn get(&self, key: u64) -> Option<&Published> {
        self.events.get(&key)
    }

    pub(crate) fn remember(&mut self, key: u64, published: Published) {
        self.events.insert(key, published);
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

/// What makes two events the same one happening again.
fn key_of(type_: EventType, reason: &str, note: &str, regarding: &ObjectReference) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    matches!(type_, EventType::Warning).hash(&mut hasher);
    reason.hash(&mut hasher);
    note.hash(&mut hasher);
    regarding.uid.hash(&mut hasher);
    regarding.kind.hash(&mut hasher);
    regarding.namespace.hash(&mut hasher);
    regarding.name.hash(&mut hasher);
    hasher.finish()
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            recent: Mutex::default(),
        }
    }

    /// How many events the recorder remembers (for tests).
    pub fn remembered(&self) -> usize {
        self.recent.lock().map_or(0, |r| r.len())
    }

    /// Publishes an event about `regarding`: a new Event, or one more on
    /// the series of the same event published within the window.
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        note: String,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key_of(type_, reason, &note, regarding);
        let repeat = {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.forget_before(now);
            recent.get(key).cloned()
        };
        if let Some(mut published) = repeat {
            published.count += 1;
            published.last = now;
            let series = serde_json::json!({
                "series": {"count": published.count, "lastObservedTime": MicroTime(now)},
            });
            let events = Api::<K8sEvent>::namespaced(self.client.clone(), &published.namespace);
            match events
                .patch(
                    &published.name,
                    &PatchParams::default(),
                    &Patch::Merge(&series),
                )
                .await
            {
                Ok(_) => {
                    self.remember(key, published);
                    return Ok(());
                }
                // The API server dropped it (events live an hour): a new one.
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(ACTION.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.remember(
            key,
            Published {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn remember(&self, key: u64, published: Published) {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(key, published);
    }
}

/// Records an Event about `object`.
pub(crate) async fn publish<K>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let note = truncate(note, MAX_EVENT_NOTE);
    if let Err(error) = ctx
        .recorder
        .publish(type_, reason, note, &object.object_ref(&()))
        .await
    {
        warn!(%error, reason, "could not record event");
    }
}

#[cfg(test)]
mod tests {
    use super::{Published, Recent, SERIES_WINDOW, key_of, truncate};
    use jiff::{SignedDuration, Timestamp};
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::EventType;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(note, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
        assert_eq!(truncate("short".into(), 1024), "short");
    }

    fn db(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Database".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_same_event_on_the_same_object_is_one_key_and_any_difference_another() {
        let a = db("a", "1");
        let key = key_of(EventType::Normal, "Created", "note", &a);
        assert_eq!(key, key_of(EventType::Normal, "Created", "note", &a));
        for other in [
            key_of(EventType::Warning, "Created", "note", &a),
            key_of(EventType::Normal, "Deleted", "note", &a),
            key_of(EventType::Normal, "Created", "another note", &a),
            key_of(EventType::Normal, "Created", "note", &db("b", "1")),
            // The same name, recreated: another object.
            key_of(EventType::Normal, "Created", "note", &db("a", "2")),
        ] {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn events_are_forgotten_after_the_window_and_an_emptied_map_gives_its_memory_back() {
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1000);
        let window = SignedDuration::try_from(SERIES_WINDOW).unwrap();
        let mut recent = Recent::default();
        for key in 0..2000u64 {
            recent.remember(
                key,
                Published {
                    namespace: "ns".into(),
                    name: format!("db-{key}.17"),
                    count: 1,
                    last: t0 + SignedDuration::from_millis(key as i64),
                },
            );
        }
        let full = recent.events.capacity();
        recent.forget_before(t0 + window - SignedDuration::from_secs(1));
        assert_eq!(recent.len(), 2000, "none is older than the window yet");
        recent.forget_before(t0 + window + SignedDuration::from_millis(1000));
        assert_eq!(
            recent.len(),
            999,
            "those last seen before now - window are gone"
        );
        assert!(recent.get(1000).is_none() && recent.get(1001).is_some());
        recent.forget_before(t0 + window * 2);
        assert_eq!(recent.len(), 0);
        assert!(
            recent.events.capacity() < full / 10,
            "an emptied map keeps {} of {full} slots",
            recent.events.capacity()
        );
    }
}
