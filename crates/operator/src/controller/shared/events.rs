//! Kubernetes Events for what a user should see. Failing to record one is
//! logged, never fatal.

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use crate::controller::Context;

/// The API server refuses event notes longer than this many bytes.
const MAX_EVENT_NOTE: usize = 1024;

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
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, MAX_EVENT_NOTE)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(%error, reason, "could not record event");
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(note, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
        assert_eq!(truncate("short".into(), 1024), "short");
    }
}
