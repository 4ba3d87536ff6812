//! The HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;

use crate::daemon::health::Health;
use crate::metrics::{self, Metrics};

#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(probes)
}

fn answer(result: Result<(), String>, ok: &str) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, ok.to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn healthz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(probes.health.live(), "ok")
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(probes.health.ready(), "ready")
}

async fn scrape(State(probes): State<Probes>) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        probes.metrics.encode(),
    )
}

/// Binds `address`; failing here (the port is taken) must stop the start.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, probes: Probes) -> std::io::Result<()> {
    axum::serve(listener, router(probes)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(probes: &Probes, path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).unwrap();
        router(probes.clone())
            .oneshot(request)
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn healthz_fails_once_a_controller_loop_has_died() {
        let probes = Probes {
            metrics: Arc::new(Metrics::default()),
            health: Arc::new(Health::default()),
        };
        probes.health.expect_caches(&["children"]);
        assert_eq!(get(&probes, "/healthz").await, StatusCode::OK);
        assert_eq!(
            get(&probes, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        probes.health.cache_synced("children");
        assert_eq!(get(&probes, "/readyz").await, StatusCode::OK);
        probes
            .health
            .supervise("database", async { panic!("a reconcile bug") })
            .await
            .unwrap();
        assert_eq!(
            get(&probes, "/healthz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&probes, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
