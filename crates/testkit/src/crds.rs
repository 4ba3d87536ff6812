//! Third-party CustomResourceDefinitions for tests, fetched by
//! `hack/crds/fetch.sh` from the projects' Go modules into
//! `<cache>/crds/<set>-<version>/`. The script is compiled in, so the
//! pinned versions here and there are the same.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::paths::cache_root;

const FETCH_SCRIPT_TEXT: &str = include_str!("../../../hack/crds/fetch.sh");

/// Reads `NAME="value"` from fetch.sh.
fn pinned(name: &str) -> &'static str {
    let prefix = format!("{name}=\"");
    FETCH_SCRIPT_TEXT
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("hack/crds/fetch.sh has no {name}=\"...\" line"))
}

/// The folder of one fetched set, or an error that says how to fetch it.
fn set_dir(set: &str, version: &str) -> Result<PathBuf> {
    let dir = cache_root().join("crds").join(format!("{set}-{version}"));
    if !dir.join(".complete").is_file() {
        bail!(
            "the {set} {version} CRDs are not in {}: run `bash hack/crds/fetch.sh` (`.ci/run` and `make test` do)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Velero release whose CRDs the tests install, e.g. `v1.18.3`.
pub fn velero_version() -> &'static str {
    pinned("VELERO_VERSION")
}

/// Velero's `velero.io_schedules.yaml`, as released.
pub fn velero_schedule_crd() -> Result<PathBuf> {
    Ok(set_dir("velero", velero_version())?.join("velero.io_schedules.yaml"))
}

/// prometheus-operator release whose CRDs the tests install, e.g. `v0.85.0`.
pub fn prometheus_operator_version() -> &'static str {
    pinned("PROMETHEUS_OPERATOR_VERSION")
}

/// prometheus-operator's ServiceMonitor and PrometheusRule CRDs, as released.
pub fn prometheus_operator_crds() -> Result<Vec<PathBuf>> {
    let dir = set_dir("prometheus-operator", prometheus_operator_version())?;
    Ok(["servicemonitors", "prometheusrules"]
        .iter()
        .map(|kind| dir.join(format!("monitoring.coreos.com_{kind}.yaml")))
        .collect())
}
