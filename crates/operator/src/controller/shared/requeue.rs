//! When controllers look at an object again: every interval in one place.
//!
//! Watches wake a controller whenever something it reads changes, so these
//! are fallbacks: a resync in case a watch event was missed, and faster
//! looks where progress is not watched (a restore Job) or a refusal may
//! clear up by itself.

use std::time::Duration;

/// A healthy object, for a missed watch event: the default `Settings::resync`.
pub(crate) const RESYNC: Duration = Duration::from_secs(300);
/// After the API server refused a child for good (the spec must change) or
/// a Velero Schedule could not be applied.
pub(crate) const AFTER_REFUSAL: Duration = Duration::from_secs(60);
/// After a status write refused because the Database changed since it was
/// read: the newer copy is in the cache by then. Often the newer copy is
/// the operator's own last status write, which does not wake the Database
/// controller (it is woken by what the user changes), so it must look again
/// by itself.
pub(crate) const AFTER_CONFLICT: Duration = Duration::from_secs(1);
/// While a restore Job runs (restore Jobs are not watched).
pub(crate) const WHILE_RESTORING: Duration = Duration::from_secs(5);
/// While a backup's Job has not started or finished.
pub(crate) const WHILE_BACKING_UP: Duration = Duration::from_secs(30);
/// After the engine refused a user for good: the spec must change, and a
/// change is watched.
pub(crate) const AFTER_ENGINE_REFUSAL: Duration = Duration::from_secs(300);
/// First retry after an error; doubles per consecutive failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The longest wait between retries after errors.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long deletion cleanup is retried before a finalizer lets go: the
/// default `Settings::cleanup_deadline`.
pub(crate) const CLEANUP_DEADLINE: Duration = Duration::from_secs(120);
