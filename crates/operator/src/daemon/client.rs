//! The Kubernetes client, with a layer that counts every request by verb
//! and resource, so `/metrics` and `make bench` can show what the operator
//! costs the API server (writes per Database, reads, watches), and a cap on
//! the requests in flight: a reconcile applies its children at once, and
//! without a cap a burst of reconciles would open a connection (and its TLS
//! buffers) per request.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Method, Request};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// The operator's client, built from `config`: every request counted in
/// `metrics`, at most `in_flight` at once (a watch holds its slot only
/// until the API server answers).
pub fn counting_client(
    config: Config,
    metrics: Arc<Metrics>,
    in_flight: usize,
) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ConcurrencyLimitLayer::new(in_flight))
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
        let (verb, resource) = classify(request.method(), request.uri());
        self.metrics.api_request(verb, resource);
        self.inner.call(request)
    }
}

/// The Kubernetes verb and the resource (`secrets`, `statefulsets/status`)
/// of a request, from its method and path. The operator builds every path
/// itself, from a fixed set of kinds, so the labels stay bounded.
pub fn classify(method: &Method, uri: &http::Uri) -> (&'static str, String) {
    let path = uri.path();
    // /api/v1/REST or /apis/GROUP/VERSION/REST
    let rest = match path.strip_prefix("/api/v1") {
        Some(rest) => rest,
        None => path
            .strip_prefix("/apis/")
            .and_then(|after| after.splitn(3, '/').nth(2))
            .unwrap_or(""),
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    // namespaces/NS/RESOURCE[/NAME[/SUB]], or RESOURCE[/NAME[/SUB]] (a
    // Namespace itself is `namespaces[/NAME]`).
    let tail = match segments.as_slice() {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        all => all,
    };
    let resource = match tail {
        [] => "other".to_owned(),
        [resource] | [resource, _] => (*resource).to_owned(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    };
    let named = tail.len() > 1;
    let watching = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET | Method::HEAD | Method::OPTIONS if named => "get",
        Method::GET | Method::HEAD | Method::OPTIONS => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().unwrap())
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets/s",
                ("get", "secrets"),
            ),
            (
                Method::GET,
                "/api/v1/secrets?labelSelector=x",
                ("list", "secrets"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/statefulsets?watch=true&resourceVersion=1",
                ("watch", "statefulsets"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/statefulsets/db?fieldManager=m",
                ("patch", "statefulsets"),
            ),
            (
                Method::PATCH,
                "/apis/example.com/v1/namespaces/a/databases/db/status",
                ("patch", "databases/status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/events",
                ("create", "events"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/o/leases/l",
                ("update", "leases"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                ("delete", "pods"),
            ),
            (Method::GET, "/api/v1/namespaces/a", ("get", "namespaces")),
            (Method::GET, "/apis/example.com/v1", ("list", "other")),
        ];
        for (method, uri, (verb, resource)) in cases {
            assert_eq!(of(method, uri), (verb, resource.to_owned()), "{uri}");
        }
    }
}
