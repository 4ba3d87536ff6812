//! Per-object exponential backoff for the error policy: kube-rs's error
//! policy has no memory of earlier failures, so we keep one.
//!
//! An entry goes when its object reconciles successfully; an object deleted
//! while failing never does, so entries untouched for [`FORGET_AFTER`]
//! (longer than the longest retry, so only objects nobody reconciles any
//! more) are dropped whenever a failure is recorded: the map holds the
//! objects failing now, not every object that ever failed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::requeue::{BACKOFF_BASE as BASE, BACKOFF_MAX as MAX};

/// How long an entry outlives its last failure: twice the longest retry.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(2 * MAX.as_secs());

#[derive(Default)]
pub struct PerObjectBackoff {
    /// Failures in a row, and when the last was recorded, per object key.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl PerObjectBackoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn next_delay(&self, key: &str) -> Duration {
        self.next_retry(key).0
    }

    /// Records a failure of `key`; returns how long to wait before retrying
    /// and how many failures in a row this is (1 for the first).
    pub fn next_retry(&self, key: &str) -> (Duration, u32) {
        self.next_retry_at(key, Instant::now())
    }

    #[cfg(test)]
    fn next_delay_at(&self, key: &str, now: Instant) -> Duration {
        self.next_retry_at(key, now).0
    }

    fn next_retry_at(&self, key: &str, now: Instant) -> (Duration, u32) {
        let mut failures = self.failures.lock().expect("backoff lock poisoned");
        failures.retain(|k, (_, last)| k == key || now.duration_since(*last) < FORGET_AFTER);
        let (count, last) = failures.entry(key.to_owned()).or_insert((0, now));
        *count = count.saturating_add(1);
        *last = now;
        let delay = BASE
            .saturating_mul(2u32.saturating_pow(*count - 1))
            .min(MAX);
        (delay, *count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .expect("backoff lock poisoned")
            .remove(key);
    }

    /// How many objects it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().expect("backoff lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_a_ceiling_and_reset_on_success() {
        let backoff = PerObjectBackoff::default();
        assert_eq!(backoff.next_delay("a"), Duration::from_secs(2));
        assert_eq!(backoff.next_delay("a"), Duration::from_secs(4));
        assert_eq!(backoff.next_delay("b"), Duration::from_secs(2));
        for _ in 0..20 {
            backoff.next_delay("a");
        }
        assert_eq!(backoff.next_delay("a"), MAX);
        backoff.reset("a");
        assert_eq!(backoff.next_retry("a"), (Duration::from_secs(2), 1));
        assert_eq!(backoff.next_retry("a"), (Duration::from_secs(4), 2));
    }

    #[test]
    fn objects_nobody_reconciles_any_more_are_forgotten() {
        let backoff = PerObjectBackoff::default();
        let start = Instant::now();
        // 1000 objects fail once, then are deleted (never reconciled again).
        for i in 0..1000 {
            backoff.next_delay_at(&format!("database/ns/db-{i}"), start);
        }
        assert_eq!(backoff.len(), 1000);
        // One still failing, retried at the longest delay, keeps its count.
        let later = start + MAX;
        backoff.next_delay_at("database/ns/db-0", later);
        assert_eq!(backoff.len(), 1000, "within the window nothing is dropped");
        let much_later = start + FORGET_AFTER + Duration::from_secs(1);
        let delay = backoff.next_delay_at("database/ns/db-0", much_later);
        assert_eq!(delay, Duration::from_secs(8), "its third failure in a row");
        assert_eq!(backoff.len(), 1, "the deleted objects are forgotten");
    }
}
