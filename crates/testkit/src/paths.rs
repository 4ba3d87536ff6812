//! Where the control-plane binaries live and how to build them.
//!
//! `hack/controlplane/build.sh` is the single source of truth for the pinned
//! versions; it is compiled into this crate so the harness and the script can
//! never disagree about the cache folder.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Result, bail};

const BUILD_SCRIPT_TEXT: &str = include_str!("../../../hack/controlplane/build.sh");

/// Binaries `build.sh` puts into [`bin_dir`].
pub const BINARIES: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
];

/// Reads `NAME="value"` from build.sh.
fn pinned(name: &str) -> &'static str {
    let prefix = format!("{name}=\"");
    BUILD_SCRIPT_TEXT
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("hack/controlplane/build.sh has no {name}=\"...\" line"))
}

/// Kubernetes release the control plane is built from, e.g. `v1.37.2`.
pub fn kubernetes_version() -> &'static str {
    pinned("K8S_VERSION")
}

/// etcd release, e.g. `v3.6.16`.
pub fn etcd_version() -> &'static str {
    pinned("ETCD_VERSION")
}

/// KWOK release, e.g. `v0.8.0`.
pub fn kwok_version() -> &'static str {
    pinned("KWOK_VERSION")
}

/// `$DATABASE_OPERATOR_CACHE`, or `~/.cache/database-operator`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("DATABASE_OPERATOR_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("database-operator")
}

/// `<cache>/controlplane/<k8s-version>`.
pub fn controlplane_dir() -> PathBuf {
    cache_root().join("controlplane").join(kubernetes_version())
}

/// Folder holding etcd, kube-apiserver, ..., kubectl and kwok.
pub fn bin_dir() -> PathBuf {
    controlplane_dir().join("bin")
}

/// KWOK stage definitions (node/pod lifecycles) extracted by build.sh from
/// the same kwok module the binary was built from.
pub fn kwok_stages_file() -> PathBuf {
    controlplane_dir().join("etc").join("kwok-stages.yaml")
}

/// The build script in this repository.
/// The `database-operator` binary the tests run: `$DATABASE_OPERATOR_BIN`,
/// else the one cargo built beside the running test (integration tests run
/// from `target/<profile>/deps/`, and cargo builds the package's binaries
/// into `target/<profile>/` before it runs them).
pub fn operator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DATABASE_OPERATOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary under target/<profile>/deps");
    profile_dir.join("database-operator")
}

pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/controlplane/build.sh")
}

/// True when build.sh finished a build for the pinned versions.
pub fn is_built() -> bool {
    let stamp = bin_dir().join(".complete");
    let want = format!(
        "k8s={} etcd={} kwok={} layout={}",
        kubernetes_version(),
        etcd_version(),
        kwok_version(),
        pinned("CACHE_LAYOUT")
    );
    let complete = std::fs::read_to_string(stamp).is_ok_and(|s| s.trim() == want);
    complete && kwok_stages_file().is_file() && BINARIES.iter().all(|b| bin_dir().join(b).is_file())
}

/// Runs `hack/controlplane/build.sh` unless the binaries are already there.
///
/// The script's output goes to this process's stderr. build.sh takes a file
/// lock, so concurrent test binaries wait for one build instead of racing.
pub fn ensure_built() -> Result<()> {
    // One build per process even if several tests call this at once.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if is_built() {
        return Ok(());
    }
    let script = build_script();
    if !script.is_file() {
        bail!(
            "control plane binaries missing in {} and build script {} not found; run hack/controlplane/build.sh from the repository",
            bin_dir().display(),
            script.display()
        );
    }
    eprintln!(
        "testkit: control plane binaries missing in {}; running {} (takes many minutes on first use)",
        bin_dir().display(),
        script.display()
    );
    let status = crate::processes::run_script(&script)?;
    if !status.success() || !is_built() {
        bail!(
            "{} failed ({status}); run it by hand to see why",
            script.display()
        );
    }
    Ok(())
}

/// A tool one of the repository's `hack/*/install.sh` scripts builds once
/// into the cache (`script`, from the repository's root): runs it, which
/// builds the tool when it is missing, and returns the path it prints.
pub fn installed_tool(script: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("bash")
        .arg(root.join(script))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_build_script() {
        assert!(kubernetes_version().starts_with("v1."));
        assert!(etcd_version().starts_with("v3."));
        assert!(kwok_version().starts_with("v0."));
        assert!(bin_dir().ends_with(format!("{}/bin", kubernetes_version())));
    }
}
