//! [`FaultyApi`]: the real kube-apiserver, behind a front on loopback that
//! answers some requests the way an API server under load does (429 Too
//! Many Requests with a Retry-After, 503 Service Unavailable, 504 Gateway
//! Timeout, 500 Internal Server Error) and passes every other one on. Which requests fail is drawn
//! from a seeded generator, so a failing run can be repeated.
//!
//! The front speaks plain HTTP on 127.0.0.1 and forwards through a client
//! of the real API server with the identity it was given: the operator
//! pointed at it (by [`FaultyApi::kubeconfig`]) keeps its rights and sees
//! the real objects, watches included; only the answers drawn to fail are
//! made up.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The answers an overloaded API server gives, drawn at random. The kube
/// client retries the first three with backoff (honouring Retry-After);
/// a 500 reaches the operator.
const FAULTS: [(StatusCode, &str); 4] = [
    (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
    (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
    (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
    (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
];

/// A front of the API server that fails a share of the requests.
pub struct FaultyApi {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    client: kube::Client,
    /// The share of requests (other than watches) that fail, in ‰.
    per_mille: AtomicU64,
    rng: Mutex<StdRng>,
    injected: [AtomicU64; 4],
    /// Each failed request: its code, method and path.
    failed: Mutex<Vec<String>>,
    passed: AtomicU64,
    /// Whether watches fail as well (each failed one is re-listed).
    watches: AtomicBool,
}

impl FaultyApi {
    /// Listens on a free loopback port and forwards through `client`,
    /// failing `per_mille` ‰ of the requests other than watches, drawn
    /// from `seed`.
    pub async fn start(client: kube::Client, per_mille: u64, seed: u64) -> Result<FaultyApi> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the faulty API front")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            client,
            per_mille: AtomicU64::new(per_mille),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            injected: Default::default(),
            failed: Mutex::default(),
            passed: AtomicU64::new(0),
            watches: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(shared.clone(), request));
                    // A connection cut by the operator (a watch it drops)
                    // ends here; nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultyApi {
            port,
            shared,
            accept,
        })
    }

    /// Writes, under `dir`, a kubeconfig that reaches the API server
    /// through this front (no credentials: the front holds them).
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("faulty-api.kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: faulty\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: faulty\n  context:\n    cluster: faulty\n    user: faulty\nusers:\n- name: faulty\n  user: {{}}\ncurrent-context: faulty\n",
            port = self.port
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Fails `per_mille` ‰ of the requests from now on (0: none).
    pub fn set_per_mille(&self, per_mille: u64) {
        self.shared.per_mille.store(per_mille, Ordering::SeqCst);
    }

    /// Fails watches too (at the same rate).
    pub fn fail_watches(&self, fail: bool) {
        self.shared.watches.store(fail, Ordering::SeqCst);
    }

    /// How many requests it failed, by status code.
    pub fn injected(&self) -> Vec<(u16, u64)> {
        FAULTS
            .iter()
            .zip(&self.shared.injected)
            .map(|((code, _), n)| (code.as_u16(), n.load(Ordering::SeqCst)))
            .collect()
    }

    /// The requests it failed: `code METHOD path?query`.
    pub fn failed_requests(&self) -> Vec<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests it failed in all.
    pub fn injected_total(&self) -> u64 {
        self.injected().iter().map(|(_, n)| n).sum()
    }

    /// How many requests it passed on.
    pub fn passed(&self) -> u64 {
        self.shared.passed.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for FaultyApi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Fails `request` if the draw says so, else passes it on.
async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let may_fail = !watch || shared.watches.load(Ordering::SeqCst);
    let per_mille = shared.per_mille.load(Ordering::SeqCst);
    let fault = may_fail
        .then(|| {
            let mut rng = shared.rng.lock().unwrap_or_else(PoisonError::into_inner);
            (rng.random_range(0..1000) < per_mille).then(|| rng.random_range(0..FAULTS.len()))
        })
        .flatten();
    if let Some(which) = fault {
        shared.injected[which].fetch_add(1, Ordering::SeqCst);
        shared
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!(
                "{} {} {}",
                FAULTS[which].0.as_u16(),
                request.method(),
                request.uri()
            ));
        return Ok(failure(which));
    }
    shared.passed.fetch_add(1, Ordering::SeqCst);
    Ok(match forward(&shared.client, request).await {
        Ok(response) => response,
        Err(error) => plain(
            StatusCode::BAD_GATEWAY,
            format!("faulty API front: {error:#}"),
        ),
    })
}

/// The answer the API server gives for `FAULTS[which]`: its Status object.
fn failure(which: usize) -> Response<Body> {
    let (code, reason) = FAULTS[which];
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("injected by the test: {reason}"),
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = plain(code, status.to_string());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if code == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

fn plain(code: StatusCode, text: String) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response
}

/// Sends `request` to the real API server through `client`, streaming the
/// answer back (a watch stays open).
async fn forward(client: &kube::Client, request: Request<Incoming>) -> Result<Response<Body>> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .context("reading the request")?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut outgoing = Request::builder().method(parts.method).uri(path);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = outgoing.body(kube::client::Body::from(bytes.to_vec()))?;
    let response = client.send(outgoing).await.context("the API server")?;
    let (parts, body) = response.into_parts();
    let body = body
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}
