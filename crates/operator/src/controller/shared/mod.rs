//! What every controller shares, in one place: the caches of children and
//! their watch streams, the reconcile bookkeeping (metrics, per-object
//! backoff, error policy), when to look again, events, the clock, and
//! reading the agent's Jobs. Nothing here belongs to one controller.

pub mod backoff;
pub mod clock;
pub mod events;
pub mod jobs;
pub mod reconcile;
pub mod requeue;
pub mod stores;
