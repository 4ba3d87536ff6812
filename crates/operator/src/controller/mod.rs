//! The controllers. Each reads the world from caches, calls the pure
//! builders, applies what changed and writes status only when it changed.

pub mod backup;
pub(crate) mod database;
pub(crate) mod monitor;
pub mod shared;
pub(crate) mod user;

use database_operator_api::v1;
use std::sync::Arc;

use kube::Client;

use crate::metrics::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub stores: shared::stores::Stores,
    pub recorder: shared::events::Recorder,
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness, for `/healthz` and `/readyz`.
    pub health: Arc<crate::daemon::health::Health>,
    pub backoff: shared::backoff::PerObjectBackoff,
    /// When each Database's status was last written: progress waits for
    /// its window ([`shared::coalesce`]).
    pub status_writes: shared::coalesce::RecentWrites,
    pub settings: Settings,
}

/// Tunables, with production defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long deletion cleanup is retried before the finalizer gives up
    /// and reports what it left behind.
    pub cleanup_deadline: std::time::Duration,
    /// Resync period for a healthy Database.
    pub resync: std::time::Duration,
    /// The image carrying the operator's binary, from which backup pods copy the agent.
    pub agent_image: String,
    /// How to reach a Database's primary (cluster DNS, or `--resolve`).
    pub resolver: crate::resolver::Resolver,
    /// The document whose sections are the alerts' runbooks (`runbook_url` = `<this>#<alert>`).
    pub runbook_base_url: String,
    /// The operator's own namespace, whose operator pods a Database's
    /// NetworkPolicy admits.
    pub operator_namespace: String,
    /// The namespaces whose Databases, users, backups and monitors the
    /// operator manages (`WATCH_NAMESPACES`).
    pub scope: crate::scope::Scope,
    /// How many reconciles each controller runs at once: a burst of
    /// objects waits for a slot instead of opening a connection each.
    pub max_concurrent_reconciles: u16,
}

/// The default of [`Settings::max_concurrent_reconciles`].
pub const MAX_CONCURRENT_RECONCILES: u16 = 32;

impl Default for Settings {
    fn default() -> Self {
        Self {
            cleanup_deadline: shared::requeue::CLEANUP_DEADLINE,
            resync: shared::requeue::RESYNC,
            resolver: Default::default(),
            agent_image: crate::builders::DEFAULT_AGENT_IMAGE.to_owned(),
            runbook_base_url: crate::builders::monitoring::rules::DEFAULT_RUNBOOK_BASE.to_owned(),
            operator_namespace: crate::builders::DEFAULT_OPERATOR_NAMESPACE.to_owned(),
            scope: crate::scope::Scope::Cluster,
            max_concurrent_reconciles: MAX_CONCURRENT_RECONCILES,
        }
    }
}

impl Context {
    pub fn new(
        client: Client,
        stores: shared::stores::Stores,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            recorder: shared::events::Recorder::new(
                client.clone(),
                v1::labels::OPERATOR,
                std::env::var("POD_NAME").ok(),
            ),
            client,
            stores,
            metrics,
            health: Default::default(),
            backoff: shared::backoff::PerObjectBackoff::default(),
            status_writes: Default::default(),
            settings,
        }
    }
}
