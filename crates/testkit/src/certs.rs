//! PKI for one cluster: a CA, the apiserver serving certificate, client
//! certificates for each component and the service-account signing key.
//!
//! Everything is generated fresh per cluster (ECDSA P-256, fast to make) and
//! written as PEM files under `<cluster>/pki/`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A PEM certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Client identities the harness hands out.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertPair,
    pub apiserver: CertPair,
    /// CN=admin, O=system:masters: used by tests, kubectl and kwok.
    pub admin: CertPair,
    /// CN=system:kube-controller-manager (bound by the default RBAC policy).
    pub controller_manager: CertPair,
    /// CN=system:kube-scheduler (bound by the default RBAC policy).
    pub scheduler: CertPair,
    /// Private key (PKCS#8 PEM) that signs service-account tokens.
    pub service_account_key: PathBuf,
    /// Its public key (PEM), which the apiserver verifies tokens with.
    pub service_account_public_key: PathBuf,
}

/// First address of the service CIDR: the in-cluster `kubernetes` Service.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

impl Pki {
    pub fn generate(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("testkit-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = write_pair(dir, "ca", ca_cert.pem(), ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut serving = leaf("kube-apiserver", None, ExtendedKeyUsagePurpose::ServerAuth);
        serving.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V4(KUBERNETES_SERVICE_IP)),
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes".try_into()?),
            SanType::DnsName("kubernetes.default".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
            SanType::DnsName("kubernetes.default.svc.cluster.local".try_into()?),
        ];
        let apiserver = sign(dir, "apiserver", &serving, &issuer)?;

        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let admin = sign(
            dir,
            "admin",
            &leaf("admin", Some("system:masters"), client.clone()),
            &issuer,
        )?;
        let controller_manager = sign(
            dir,
            "controller-manager",
            &leaf("system:kube-controller-manager", None, client.clone()),
            &issuer,
        )?;
        let scheduler = sign(
            dir,
            "scheduler",
            &leaf("system:kube-scheduler", None, client),
            &issuer,
        )?;

        let sa_key = KeyPair::generate()?;
        let service_account_key = dir.join("service-account.key");
        write_private(&service_account_key, &sa_key.serialize_pem())?;
        let service_account_public_key = dir.join("service-account.pub");
        std::fs::write(&service_account_public_key, sa_key.public_key_pem())?;

        Ok(Pki {
            ca,
            apiserver,
            admin,
            controller_manager,
            scheduler,
            service_account_key,
            service_account_public_key,
        })
    }
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn leaf(
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name, organization);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

fn sign(
    dir: &Path,
    name: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertPair> {
    let key = KeyPair::generate()?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing {name} certificate"))?;
    write_pair(dir, name, cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, name: &str, cert_pem: String, key_pem: String) -> Result<CertPair> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, &cert_pem)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(&key_path, &key_pem)?;
    Ok(CertPair {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
    })
}

/// A private key, readable only by the owner.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    crate::kubeconfig::write(path, pem)
}
