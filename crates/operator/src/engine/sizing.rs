//! How much memory and CPU the database container gets, and the engine
//! settings that follow from it.

use database_operator_api::v1;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const MIB: u64 = 1024 * 1024;

/// Requests applied when the user sets none: small enough for a laptop cluster.
pub const DEFAULT_CPU_REQUEST: &str = "250m";
/// See [`DEFAULT_CPU_REQUEST`].
pub const DEFAULT_MEMORY_REQUEST: &str = "512Mi";
/// Memory limit applied when the user sets none.
pub const DEFAULT_MEMORY_LIMIT: &str = "1Gi";

/// The container's resources, filled with defaults, and the memory the
/// engine may plan for.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizing {
    /// What goes on the container.
    pub resources: ResourceRequirements,
    /// Bytes the engine may plan for: the memory limit, else the request.
    pub memory_bytes: u64,
}

impl Sizing {
    /// Sizing from the user's `spec.resources`, with defaults for what is missing.
    pub fn from_spec(spec: Option<&ResourceRequirements>) -> Self {
        let mut requests = spec.and_then(|r| r.requests.clone()).unwrap_or_default();
        let mut limits = spec.and_then(|r| r.limits.clone()).unwrap_or_default();
        requests
            .entry("cpu".into())
            .or_insert_with(|| Quantity(DEFAULT_CPU_REQUEST.into()));
        if !requests.contains_key("memory") {
            // A limit without a request means request == limit in Kubernetes; keep that.
            let memory = limits
                .get("memory")
                .cloned()
                .unwrap_or_else(|| Quantity(DEFAULT_MEMORY_REQUEST.into()));
            requests.insert("memory".into(), memory);
        }
        if spec.is_none() {
            limits.insert("memory".into(), Quantity(DEFAULT_MEMORY_LIMIT.into()));
        }
        let memory_bytes = memory_of(&limits)
            .or_else(|| memory_of(&requests))
            .unwrap_or(512 * MIB)
            .max(128 * MIB);
        Self {
            resources: ResourceRequirements {
                requests: Some(requests),
                limits: (!limits.is_empty()).then_some(limits),
                ..Default::default()
            },
            memory_bytes,
        }
    }

    /// Memory in whole MiB.
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes / MIB
    }

    /// A fraction of memory in whole MiB, at least `floor_mib`.
    pub fn fraction_mib(&self, fraction: f64, floor_mib: u64) -> u64 {
        ((self.memory_mib() as f64 * fraction) as u64).max(floor_mib)
    }

    /// Connections the engine should allow: more memory, more connections.
    pub fn max_connections(&self) -> u64 {
        match self.memory_mib() {
            0..=1024 => 100,
            1025..=4096 => 200,
            4097..=16384 => 400,
            _ => 800,
        }
    }
}

fn memory_of(list: &BTreeMap<String, Quantity>) -> Option<u64> {
    list.get("memory").and_then(|q| v1::quantity::bytes(&q.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
        let list = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        ResourceRequirements {
            requests: list(requests),
            limits: list(limits),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_give_a_small_container_with_a_memory_limit() {
        let sizing = Sizing::from_spec(None);
        assert_eq!(sizing.memory_mib(), 1024);
        let requests = sizing.resources.requests.unwrap();
        assert_eq!(requests["cpu"].0, "250m");
        assert_eq!(requests["memory"].0, "512Mi");
    }

    #[test]
    fn the_limit_wins_over_the_request_for_planning() {
        let sizing =
            Sizing::from_spec(Some(&resources(&[("memory", "1Gi")], &[("memory", "4Gi")])));
        assert_eq!(sizing.memory_mib(), 4096);
    }

    #[test]
    fn a_limit_alone_also_becomes_the_request() {
        let sizing = Sizing::from_spec(Some(&resources(&[], &[("memory", "2Gi")])));
        assert_eq!(sizing.resources.requests.unwrap()["memory"].0, "2Gi");
    }

    #[test]
    fn more_memory_allows_more_connections() {
        let small = Sizing::from_spec(Some(&resources(&[("memory", "512Mi")], &[])));
        let large = Sizing::from_spec(Some(&resources(&[("memory", "8Gi")], &[])));
        assert!(large.max_connections() > small.max_connections());
    }
}
