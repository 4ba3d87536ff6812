//! Progress reported at most once per window. A Database on its way to
//! Running changes its pod counts several times a second under load (pods
//! created, then ready, one StatefulSet status update each); writing each
//! count costs the API server a status write per step. A status whose phase
//! and conditions are unchanged, and whose only news is a count or a
//! message, waits until the window since the object's last status write has
//! passed; a phase change is written at once.
//!
//! The map holds only the objects written within the last window: each
//! write forgets the older ones, so it cannot grow with objects deleted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long progress-only status changes of one object are held back after
/// its last status write.
pub(crate) const PROGRESS_WINDOW: Duration = Duration::from_secs(5);

/// When each object's status was last written, for the last window.
#[derive(Debug)]
pub struct RecentWrites {
    window: Duration,
    at: Mutex<HashMap<String, Instant>>,
}

impl Default for RecentWrites {
    fn default() -> Self {
        Self::new(PROGRESS_WINDOW)
    }
}

impl RecentWrites {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            at: Mutex::new(HashMap::new()),
        }
    }

    /// How long until progress of `key` may be written: `None` when it may
    /// be now.
    pub(crate) fn wait(&self, key: &str) -> Option<Duration> {
        let at = self.at.lock().expect("the lock is never poisoned");
        let since = at.get(key)?.elapsed();
        (since < self.window).then(|| self.window - since)
    }

    /// Records a status write of `key` now, and forgets writes older than
    /// the window.
    pub(crate) fn wrote(&self, key: &str) {
        let mut at = self.at.lock().expect("the lock is never poisoned");
        let window = self.window;
        at.retain(|_, written| written.elapsed() < window);
        at.insert(key.to_owned(), Instant::now());
    }

    /// How many objects it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.at.lock().expect("the lock is never poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn progress_waits_for_the_window_since_the_last_write() {
        let recent = RecentWrites::new(Duration::from_secs(5));
        assert_eq!(recent.wait("ns/a"), None, "never written: at once");
        recent.wrote("ns/a");
        assert_eq!(recent.wait("ns/a"), Some(Duration::from_secs(5)));
        assert_eq!(recent.wait("ns/b"), None, "per object");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(recent.wait("ns/a"), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(recent.wait("ns/a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn objects_written_before_the_window_are_forgotten() {
        let recent = RecentWrites::new(Duration::from_secs(5));
        for i in 0..1000 {
            recent.wrote(&format!("ns/db-{i}"));
        }
        assert_eq!(recent.len(), 1000);
        tokio::time::advance(Duration::from_secs(6)).await;
        recent.wrote("ns/last");
        assert_eq!(recent.len(), 1, "deleted or settled objects leave the map");
    }
}
