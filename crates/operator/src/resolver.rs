//! How the operator reaches a Database's primary from wherever it runs.
//!
//! Inside the cluster that is the `<name>-primary` Service through cluster
//! DNS. An operator running outside the cluster (a laptop with `kubectl
//! port-forward`, or the integration tests, which run real database servers
//! on loopback) cannot resolve Service names, so `--resolve` maps a
//! Service to an address, like curl's option of the same name. Both paths
//! are production code; the tests use the second one.

use std::collections::BTreeMap;
use std::str::FromStr;

/// Maps `<service>.<namespace>` to the address to dial.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    overrides: BTreeMap<String, (String, u16)>,
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
        }
    }

    /// The host and port at which `service` in `namespace` answers on `port`.
    pub fn resolve(&self, service: &str, namespace: &str, port: u16) -> (String, u16) {
        match self.overrides.get(&format!("{service}.{namespace}")) {
            Some((host, port)) => (host.clone(), *port),
            None => (format!("{service}.{namespace}.svc"), port),
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
