//! Per-object exponential backoff for the error policy: kube-rs's error
//! policy has no memory of earlier failures, so we keep one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::requeue::{BACKOFF_BASE as BASE, BACKOFF_MAX as MAX};

#[derive(Default)]
pub struct PerObjectBackoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl PerObjectBackoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock poisoned");
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        BASE.saturating_mul(2u32.saturating_pow(*count - 1))
            .min(MAX)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .expect("backoff lock poisoned")
            .remove(key);
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
        assert_eq!(backoff.next_delay("a"), Duration::from_secs(2));
    }
}
