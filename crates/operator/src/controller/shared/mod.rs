//! What every controller shares, in one place: the caches of children and
//! their watch streams, the reconcile bookkeeping (metrics, per-object
//! backoff, error policy), when to look again, progress coalescing, events,
//! the clock, and reading the agent's Jobs. Nothing here belongs to one
//! controller.

pub(crate) mod backoff;
pub(crate) mod clock;
pub(crate) mod coalesce;
pub mod events;
pub mod jobs;
pub mod owned;
pub(crate) mod reconcile;
pub(crate) mod requeue;
pub mod stores;
