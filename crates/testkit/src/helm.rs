//! Helm, built from its Go module by `hack/helm/install.sh` (once, cached),
//! and the chart under `charts/database-operator`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart.
pub fn chart() -> PathBuf {
    repo().join(operator::crd::CHART_DIR)
}

/// The helm binary (built on first use when `make helm` has not run).
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| crate::paths::installed_tool("hack/helm/install.sh"))
        .clone()
}

/// The Kubernetes version charts are rendered and linted for: the test
/// control plane's (helm's own default, without a cluster, is far older).
pub fn kube_version() -> String {
    crate::paths::kubernetes_version().to_owned()
}

/// Runs helm with `args`; returns its standard output, or panics with its
/// standard error.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(helm())
        .args(args)
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm writes UTF-8")
}

/// `helm template` of `chart` as release `release` in `namespace` with
/// `--set` values: every rendered object.
pub fn template(
    chart: &std::path::Path,
    release: &str,
    namespace: &str,
    set: &[&str],
) -> Vec<serde_json::Value> {
    let chart = chart.display().to_string();
    let kube_version = kube_version();
    let mut args = vec![
        "template",
        release,
        &chart,
        "--namespace",
        namespace,
        "--kube-version",
        &kube_version,
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    let text = run(&args);
    serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text)
        .expect("helm template renders YAML")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}
