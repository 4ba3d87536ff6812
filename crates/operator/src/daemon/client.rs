//! The Kubernetes client, with a layer that counts every write request so
//! `/metrics` and the benchmarks can show writes per reconcile.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Method, Request};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Builds a client from `config` that counts its writes in `metrics`.
pub fn counting_client(config: Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&CountWrites { metrics })
        .build())
}

#[derive(Clone)]
struct CountWrites {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for CountWrites {
    type Service = CountWritesService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountWritesService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountWritesService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for CountWritesService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            self.metrics.api_write(method.as_str());
        }
        self.inner.call(request)
    }
}
