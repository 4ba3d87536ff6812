//! What every controller shares: the caches of children and their watch
//! streams, the per-object error backoff, events, and reading the agent's
//! Jobs. Nothing here belongs to one controller.

pub mod backoff;
pub mod events;
pub mod jobs;
pub mod stores;
