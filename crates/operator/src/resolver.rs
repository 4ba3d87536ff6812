//! How the operator reaches a Database's primary from wherever it runs.
//!
//! Inside the cluster that is the `<name>-primary` Service through cluster
//! DNS. An operator running outside the cluster (a laptop with `kubectl
//! port-forward`, or the integration tests, which run real database servers
//! on loopback) cannot resolve Service names, so `--resolve` maps a
//! Service to an address, like curl's option of the same name. Both paths
//! are production code; the tests use the second one.
//!
//! An operator outside the cluster must not ask a DNS server for a cluster
//! name at all: the answer never comes from the cluster, and a resolver
//! that does not answer holds the reconcile (and a blocking thread) for its
//! timeout. `--resolve-default` gives every name no `--resolve` entry names
//! one address instead: the tests and `make bench` point it at a closed
//! port on loopback, so those Databases are unreachable at once, and no
//! packet leaves the machine.

use std::collections::BTreeMap;
use std::str::FromStr;

/// Maps `<service>.<namespace>` to the address to dial.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    overrides: BTreeMap<String, (String, u16)>,
    /// Where every other name goes, instead of cluster DNS.
    fallback: Option<(String, u16)>,
}

/// A `<host>:<port>` argument (`--resolve-default`).
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl FromStr for Address {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("--resolve-default takes <host>:<port>, not {text:?}");
        let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
        let port = port.parse().map_err(|_| usage())?;
        if host.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            host: host.into(),
            port,
        })
    }
}

/// One `--resolve <service>.<namespace>=<host>:<port>` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub service: String,
    pub namespace: String,
    pub host: String,
    pub port: u16,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("--resolve takes <service>.<namespace>=<host>:<port>, not {text:?}");
        let (name, address) = text.split_once('=').ok_or_else(usage)?;
        let (service, namespace) = name.split_once('.').ok_or_else(usage)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(usage)?;
        let port = port.parse().map_err(|_| usage())?;
        if service.is_empty() || namespace.is_empty() || host.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            service: service.into(),
            namespace: namespace.into(),
            host: host.into(),
            port,
        })
    }
}

impl Resolver {
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> Self {
        Self {
            overrides: overrides
                .into_iter()
                .map(|o| (format!("{}.{}", o.service, o.namespace), (o.host, o.port)))
                .collect(),
            fallback: None,
        }
    }

    /// Sends every name that no override names to `address`, instead of
    /// looking it up.
    pub fn with_fallback(mut self, address: Option<Address>) -> Self {
        self.fallback = address.map(|a| (a.host, a.port));
        self
    }

    /// The host and port at which `service` in `namespace` answers on `port`.
    pub fn resolve(&self, service: &str, namespace: &str, port: u16) -> (String, u16) {
        match (
            self.overrides.get(&format!("{service}.{namespace}")),
            &self.fallback,
        ) {
            (Some((host, port)), _) | (None, Some((host, port))) => (host.clone(), *port),
            (None, None) => (format!("{service}.{namespace}.svc"), port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_resolve_through_cluster_dns_by_default() {
        let resolver = Resolver::default();
        assert_eq!(
            resolver.resolve("orders-primary", "shop", 5432),
            ("orders-primary.shop.svc".into(), 5432)
        );
    }

    #[test]
    fn an_override_maps_one_service_to_an_address() {
        let resolver = Resolver::new(["orders-primary.shop=127.0.0.1:15432"
            .parse::<Override>()
            .unwrap()]);
        assert_eq!(
            resolver.resolve("orders-primary", "shop", 5432),
            ("127.0.0.1".into(), 15432)
        );
        assert_eq!(
            resolver.resolve("orders-primary", "other", 5432).0,
            "orders-primary.other.svc"
        );
    }

    #[test]
    fn with_a_fallback_no_name_is_looked_up() {
        let resolver = Resolver::new(["orders-primary.shop=127.0.0.1:15432"
            .parse::<Override>()
            .unwrap()])
        .with_fallback(Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(
            resolver.resolve("orders-primary", "shop", 5432),
            ("127.0.0.1".into(), 15432)
        );
        assert_eq!(
            resolver.resolve("orders-0.orders-headless", "shop", 5432),
            ("127.0.0.1".into(), 9)
        );
        for bad in ["", ":9", "host", "host:port"] {
            let error = bad.parse::<Address>().unwrap_err();
            assert!(error.contains("<host>:<port>"), "{bad}: {error}");
        }
    }

    #[test]
    fn malformed_overrides_are_refused_with_the_expected_form() {
        for bad in [
            "orders",
            "orders=1.2.3.4:5",
            "orders.shop=host",
            "orders.shop=host:port",
            ".shop=h:1",
        ] {
            let error = bad.parse::<Override>().unwrap_err();
            assert!(
                error.contains("<service>.<namespace>=<host>:<port>"),
                "{bad}: {error}"
            );
        }
    }
}
