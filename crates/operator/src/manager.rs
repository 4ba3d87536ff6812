//! `database-operator run`: the caches, the controllers and the HTTP endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use tracing::info;

use crate::controller::{self, Context, Settings, stores};
use crate::metrics::Metrics;
use crate::server::{self, Probes};

/// Runs the operator with `client` until a shutdown signal.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    address: SocketAddr,
    settings: Settings,
) -> anyhow::Result<()> {
    let (stores, streams) = stores::start(&client);
    let probes = Probes {
        metrics: metrics.clone(),
        ready: Default::default(),
    };
    let ready = probes.ready.clone();
    let listener = server::bind(address).await?;
    let server = tokio::spawn(async move {
        if let Err(error) = server::serve(listener, probes).await {
            tracing::error!(%error, "the metrics and probes server stopped");
        }
    });
    info!(%address, "serving /healthz, /readyz and /metrics");

    let ctx = Arc::new(Context::new(client, stores.clone(), metrics, settings));
    let waiting = stores.clone();
    tokio::spawn(async move {
        if waiting.wait_until_ready().await.is_ok() {
            ready.store(true, Ordering::Relaxed);
            info!("caches synced");
        }
    });
    tokio::join!(
        controller::database::run(ctx.clone(), streams),
        controller::user::run(ctx.clone()),
        controller::monitor::run(ctx.clone()),
        controller::backup::run(ctx)
    );
    server.abort();
    Ok(())
}
