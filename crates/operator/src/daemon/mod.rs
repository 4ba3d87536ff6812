//! `database-operator run`: the long-running process — the caches, the
//! controllers, leader election and the HTTP endpoints.

pub mod client;
pub mod endpoints;
pub mod health;
pub mod leader;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tracing::info;

use crate::controller::shared::stores;
use crate::controller::{self, Context, Settings};
use crate::daemon::leader::Elector;
use crate::metrics::Metrics;
use endpoints::Probes;

/// The caches `/readyz` waits for: the children's, and each controller's own.
const CACHES: [&str; 5] = [
    "children",
    "database",
    "databaseuser",
    "databasemonitor",
    "databasebackup",
];

/// Runs the operator with `client` until a shutdown signal.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    address: SocketAddr,
    settings: Settings,
    election: Option<Elector>,
) -> anyhow::Result<()> {
    info!(scope = %settings.scope, "watching");
    let (stores, streams) = stores::start(&client, &settings.scope);
    let ctx = Arc::new(Context::new(
        client,
        stores.clone(),
        metrics.clone(),
        settings,
    ));
    let health = ctx.health.clone();
    health.expect_caches(&CACHES);
    let probes = Probes {
        metrics,
        health: health.clone(),
    };
    let listener = endpoints::bind(address).await?;
    let server = tokio::spawn(async move {
        if let Err(error) = endpoints::serve(listener, probes).await {
            tracing::error!(%error, "the metrics and probes server stopped");
        }
    });
    info!(%address, "serving /healthz, /readyz and /metrics");

    // A follower serves its probes and waits; it starts the controllers
    // only once it holds the lease.
    if let Some(elector) = &election {
        health.following(true);
        info!(identity = elector.identity(), "waiting for the lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown_signal() => {
                server.abort();
                return Ok(());
            }
        }
        health.following(false);
    }
    let stopping = health.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.stopping();
    });
    let children = health.clone();
    tokio::spawn(async move {
        if stores.wait_until_ready().await.is_ok() {
            children.cache_synced("children");
        }
    });
    // Each controller is its own task: one that dies fails /healthz while
    // the others keep working; on SIGTERM all of them end and so do we.
    let loops = [
        health.supervise("database", controller::database::run(ctx.clone(), streams)),
        health.supervise("databaseuser", controller::user::run(ctx.clone())),
        health.supervise("databasemonitor", controller::monitor::run(ctx.clone())),
        health.supervise("databasebackup", controller::backup::run(ctx)),
    ];
    let loops = futures::future::join_all(loops);
    match &election {
        None => {
            loops.await;
        }
        Some(elector) => {
            tokio::select! {
                _ = loops => elector.release().await,
                () = elector.keep() => {
                    // Another replica may lead now: stop at once, and let
                    // the restart come back as a follower.
                    server.abort();
                    anyhow::bail!("lost the lease; stopping so that only the new leader reconciles");
                }
            }
        }
    }
    server.abort();
    Ok(())
}

/// SIGTERM (the kubelet) or Ctrl-C: the signals the controllers stop on.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
