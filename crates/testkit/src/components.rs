//! Command lines of the control-plane components.
//!
//! Modelled on what envtest and kwokctl's binary runtime pass, trimmed to a
//! single-node loopback cluster: everything listens on 127.0.0.1, all state
//! lives in the cluster's folder.

use std::path::{Path, PathBuf};

use crate::certs::Pki;
use crate::nodes::KWOK_ANNOTATION;

/// Service IP range; the apiserver serving certificate covers its first IP.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// Pod IPs KWOK hands out (a /16: room for far more than 1000 pods).
pub const POD_CIDR: &str = "10.244.0.0/16";
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Ports picked for one cluster.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub scheduler: u16,
    pub kwok: u16,
}

/// Files of one cluster, all under its folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub pki: Pki,
    pub admin_kubeconfig: PathBuf,
    pub controller_manager_kubeconfig: PathBuf,
    pub scheduler_kubeconfig: PathBuf,
}

impl Layout {
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }
}

fn flag(name: &str, value: impl AsRef<std::ffi::OsStr>) -> String {
    format!("--{name}={}", value.as_ref().to_string_lossy())
}

pub fn etcd(layout: &Layout, ports: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        flag("name", "testkit"),
        flag("data-dir", layout.dir.join("etcd")),
        flag("listen-client-urls", &client),
        flag("advertise-client-urls", &client),
        flag("listen-peer-urls", &peer),
        flag("initial-advertise-peer-urls", &peer),
        flag("initial-cluster", format!("testkit={peer}")),
        flag("initial-cluster-state", "new"),
        // Test data is throwaway: skip fsync, it dominates etcd latency.
        flag("unsafe-no-fsync", "true"),
        flag("auto-compaction-mode", "periodic"),
        flag("auto-compaction-retention", "1m"),
        flag("quota-backend-bytes", (4u64 << 30).to_string()),
        flag("log-level", "warn"),
    ]
}

pub fn apiserver(layout: &Layout, ports: &Ports) -> Vec<String> {
    let pki = &layout.pki;
    vec![
        flag("advertise-address", "127.0.0.1"),
        // 1.37 refuses a loopback address in the `kubernetes` Endpoints; no
        // pod here can reach the apiserver through it anyway.
        flag("endpoint-reconciler-type", "none"),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", ports.apiserver.to_string()),
        flag(
            "etcd-servers",
            format!("http://127.0.0.1:{}", ports.etcd_client),
        ),
        flag("cert-dir", layout.dir.join("apiserver")),
        flag("tls-cert-file", &pki.apiserver.cert_path),
        flag("tls-private-key-file", &pki.apiserver.key_path),
        flag("client-ca-file", &pki.ca.cert_path),
        flag("service-account-key-file", &pki.service_account_public_key),
        flag("service-account-signing-key-file", &pki.service_account_key),
        flag("service-account-issuer", SERVICE_ACCOUNT_ISSUER),
        flag("service-cluster-ip-range", SERVICE_CIDR),
        flag("authorization-mode", "Node,RBAC"),
        flag("allow-privileged", "true"),
        flag("profiling", "false"),
        // Tests create objects in bursts; don't let the default limits
        // throttle them.
        flag("max-requests-inflight", "1000"),
        flag("max-mutating-requests-inflight", "500"),
    ]
}

pub fn controller_manager(layout: &Layout) -> Vec<String> {
    let pki = &layout.pki;
    vec![
        flag("kubeconfig", &layout.controller_manager_kubeconfig),
        // No serving endpoint: nothing scrapes it and it saves a port.
        flag("secure-port", "0"),
        flag("leader-elect", "false"),
        flag("controllers", "*"),
        flag("use-service-account-credentials", "true"),
        flag("service-account-private-key-file", &pki.service_account_key),
        flag("root-ca-file", &pki.ca.cert_path),
        flag("cluster-signing-cert-file", &pki.ca.cert_path),
        flag("cluster-signing-key-file", &pki.ca.key_path),
        flag("cluster-name", "testkit"),
        flag("kube-api-qps", "500"),
        flag("kube-api-burst", "1000"),
    ]
}

pub fn scheduler(layout: &Layout, ports: &Ports) -> Vec<String> {
    vec![
        flag("kubeconfig", &layout.scheduler_kubeconfig),
        flag("authentication-kubeconfig", &layout.scheduler_kubeconfig),
        flag("authorization-kubeconfig", &layout.scheduler_kubeconfig),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", ports.scheduler.to_string()),
        flag("cert-dir", layout.dir.join("scheduler")),
        flag("leader-elect", "false"),
        flag("kube-api-qps", "500"),
        flag("kube-api-burst", "1000"),
    ]
}

/// `stages` is the KWOK stage file from the build (node-initialize,
/// node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete): the
/// kwok binary applies no stages on its own, only kwokctl does.
pub fn kwok(layout: &Layout, ports: &Ports, stages: &Path) -> Vec<String> {
    let pki = &layout.pki;
    vec![
        flag("kubeconfig", &layout.admin_kubeconfig),
        flag("config", stages),
        flag("manage-all-nodes", "false"),
        flag(
            "manage-nodes-with-annotation-selector",
            format!("{}={}", KWOK_ANNOTATION.0, KWOK_ANNOTATION.1),
        ),
        flag("cidr", POD_CIDR),
        flag("node-ip", "127.0.0.1"),
        flag("node-port", ports.kwok.to_string()),
        flag("server-address", format!("127.0.0.1:{}", ports.kwok)),
        flag("tls-cert-file", &pki.admin.cert_path),
        flag("tls-private-key-file", &pki.admin.key_path),
        flag("node-lease-duration-seconds", "40"),
    ]
}
