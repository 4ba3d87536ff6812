//! What `/healthz` and `/readyz` report.
//!
//! Live: every controller loop is still running. A loop that ended (its
//! watch stream closed, or it panicked) leaves a process that serves HTTP
//! but reconciles nothing; failing liveness lets the kubelet restart it.
//!
//! Ready: live, and every cache the controllers read from has listed once,
//! so a reconcile never acts on a half-filled view of the cluster. With
//! leader election, a follower runs no controller and is ready while it
//! is alive and waiting for the lease.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::Store;
use tracing::{error, info};

#[derive(Default)]
pub struct Health {
    /// Cache name → synced.
    caches: Mutex<BTreeMap<String, bool>>,
    /// Controller loop name → why it stopped, once it has.
    loops: Mutex<BTreeMap<String, Option<String>>>,
    /// Set on SIGTERM: loops ending then are expected, not an error.
    stopping: AtomicBool,
    /// Waiting for the lease: no controller runs, no cache is needed.
    following: AtomicBool,
}

impl Health {
    /// Declares the caches readiness waits for, before anything starts, so
    /// `/readyz` cannot pass before a slow controller has registered.
    pub fn expect_caches(&self, names: &[&str]) {
        let mut caches = self.caches.lock().expect("health lock");
        for name in names {
            caches.entry((*name).to_owned()).or_insert(false);
        }
    }

    pub fn cache_synced(&self, name: &str) {
        let mut caches = self.caches.lock().expect("health lock");
        caches.insert(name.to_owned(), true);
        if caches.values().all(|synced| *synced) {
            info!("every cache has synced");
        }
    }

    /// Marks `name` synced once `store` has listed.
    pub fn track_store<K>(self: &Arc<Self>, name: &'static str, store: Store<K>)
    where
        K: Resource + Clone + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    {
        let health = self.clone();
        tokio::spawn(async move {
            // A Store wakes only the last task that polled `wait_until_ready`
            // (one oneshot receiver behind it), and the Controller's runner
            // waits on the same store: so poll again each second rather
            // than trust a wake-up that may go to the runner instead.
            loop {
                let wait = tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready());
                match wait.await {
                    Ok(Ok(())) => return health.cache_synced(name),
                    Ok(Err(_writer_dropped)) => return,
                    Err(_elapsed) => {}
                }
            }
        });
    }

    /// A follower is ready as long as it is alive: it stands by to lead.
    pub fn following(&self, yes: bool) {
        self.following.store(yes, Ordering::Relaxed);
    }

    /// The process is shutting down.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Runs a controller loop as its own task and records when it ends, so
    /// a panic in one controller stops that loop only and fails liveness.
    pub fn supervise<F>(self: &Arc<Self>, name: &'static str, run: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.loops
            .lock()
            .expect("health lock")
            .insert(name.to_owned(), None);
        let health = self.clone();
        let task = tokio::spawn(run);
        tokio::spawn(async move {
            let why = match task.await {
                Ok(()) => "its loop ended".to_owned(),
                Err(e) if e.is_panic() => "it panicked".to_owned(),
                Err(e) => e.to_string(),
            };
            // The controllers and our signal listener see SIGTERM at the
            // same moment, in no set order: give the listener a moment.
            if !health.stopping.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if health.stopping.load(Ordering::Relaxed) {
                info!(controller = name, "controller stopped");
            } else {
                error!(controller = name, reason = %why, "a controller stopped");
            }
            health
                .loops
                .lock()
                .expect("health lock")
                .insert(name.to_owned(), Some(why));
        })
    }

    /// `Err` names every controller that stopped.
    pub fn live(&self) -> Result<(), String> {
        let stopped: Vec<String> = self
            .loops
            .lock()
            .expect("health lock")
            .iter()
            .filter_map(|(name, why)| Some(format!("controller {name} stopped: {}", why.as_ref()?)))
            .collect();
        if stopped.is_empty() {
            Ok(())
        } else {
            Err(stopped.join("; "))
        }
    }

    /// `Err` says what is not ready.
    pub fn ready(&self) -> Result<(), String> {
        self.live()?;
        if self.following.load(Ordering::Relaxed) {
            return Ok(());
        }
        let waiting: Vec<String> = self
            .caches
            .lock()
            .expect("health lock")
            .iter()
            .filter(|(_, synced)| !**synced)
            .map(|(name, _)| name.clone())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("caches not synced: {}", waiting.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_waits_for_every_declared_cache() {
        let health = Health::default();
        health.expect_caches(&["children", "database"]);
        assert!(health.ready().unwrap_err().contains("children, database"));
        health.cache_synced("children");
        assert!(health.ready().unwrap_err().contains("database"));
        health.cache_synced("database");
        assert_eq!(health.ready(), Ok(()));
    }

    #[test]
    fn a_follower_is_ready_without_caches() {
        let health = Health::default();
        health.expect_caches(&["children"]);
        health.following(true);
        assert_eq!(health.ready(), Ok(()));
        health.following(false);
        assert!(health.ready().is_err());
    }

    #[tokio::test]
    async fn a_controller_that_panics_fails_liveness_and_readiness() {
        let health = Arc::new(Health::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let steady = health.supervise("database", async move {
            let _ = stopped.await;
        });
        let crashed = health.supervise("databasebackup", async { panic!("boom") });
        crashed.await.unwrap();
        let error = health.live().unwrap_err();
        assert!(
            error.contains("databasebackup stopped: it panicked"),
            "{error}"
        );
        assert!(!error.contains("controller database "), "{error}");
        assert!(health.ready().is_err());
        stop.send(()).unwrap();
        steady.await.unwrap();
        assert!(
            health
                .live()
                .unwrap_err()
                .contains("database stopped: its loop ended")
        );
    }
}
