//! Kubeconfig files for the harness' clients.
//!
//! Certificates are embedded (`*-data`), so a kubeconfig stays usable when it
//! is copied elsewhere (e.g. `local-cluster`'s stable path).

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::certs::CertPair;

/// Context, cluster and user name used in every generated kubeconfig.
pub const CONTEXT_NAME: &str = "testkit";

/// Renders a kubeconfig for `server` that authenticates with `client`.
pub fn render(server: &str, ca_pem: &str, client: &CertPair, user: &str) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(&client.cert_pem);
    let key = STANDARD.encode(&client.key_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT_NAME}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {CONTEXT_NAME}
  context:
    cluster: {CONTEXT_NAME}
    user: {user}
    namespace: default
current-context: {CONTEXT_NAME}
preferences: {{}}
"
    )
}

/// Writes a kubeconfig (or any file that holds private keys) readable
/// only by the owner.
pub fn write(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Builds a kube client from a kubeconfig file.
pub async fn client(path: &Path) -> Result<kube::Client> {
    // ring and aws-lc-rs may both be linked in (object_store brings the
    // latter); rustls then needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).context("building kube client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_kubeconfig_parses_with_embedded_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::certs::Pki::generate(dir.path()).unwrap();
        let text = render(
            "https://127.0.0.1:1234",
            &pki.ca.cert_pem,
            &pki.admin,
            "admin",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some(CONTEXT_NAME));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:1234"));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        let cert = STANDARD
            .decode(user.client_certificate_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(cert).unwrap(), pki.admin.cert_pem);
    }
}
