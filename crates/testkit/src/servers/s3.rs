//! [`S3`]: a private S3-compatible object store (versitygw, posix backend).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{
    HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector,
};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use rand::Rng;

use super::install::{self, Component};
use super::process::{self, Admin, HOST, Instance, ServerDir, ServerProcess, Shutdown};

const REGION: &str = "us-east-1";

/// An S3 server for tests: versitygw (built by `hack/servers/install.sh`
/// into [`install::versitygw_bin`]) with its posix backend, on
/// `127.0.0.1:<free port>`, plain HTTP, path-style addressing
/// (`http://127.0.0.1:<port>/<bucket>/<key>`), region `us-east-1`.
///
/// One root account with a generated access key and secret key (single
/// account mode, no IAM); every request must carry a valid SigV4 signature
/// with them. Buckets are folders of [`S3::root_dir`] and objects are files
/// below them; metadata (ETags, content types, checksums) lives in the
/// files' `user.*` extended attributes, or in a sidecar folder when the temp
/// dir's file system has none. Multipart uploads in progress are staged in
/// the hidden `<bucket>/.sgwtmp` folder and do not show in listings.
///
/// [`S3::store`] gives an `object_store` client for a bucket, configured
/// for this server. [`S3::stop`] and [`S3::start_again`] restart the server
/// on the same port with the same data and keys.
///
/// Dropping it kills the server and removes the folder (`TESTKIT_KEEP_DIR=1`
/// keeps it); the server also dies with the test process (PDEATHSIG).
pub struct S3 {
    instance: Instance,
    binary: PathBuf,
    /// `--sidecar` folder when the file system has no user xattrs.
    sidecar: Option<PathBuf>,
    http: HttpClient,
}

process::instance!(S3);

impl S3 {
    /// Starts versitygw; returns once a SigV4-signed ListBuckets with the
    /// generated keys succeeds. Runs `hack/servers/install.sh` first if the
    /// versitygw binary is not in the cache (builds it with Go, about a
    /// minute).
    pub async fn start() -> Result<S3> {
        process::install_and_start(Component::Versitygw, "versitygw", S3::start_once).await
    }

    async fn start_once() -> Result<S3> {
        let started = Instant::now();
        // versitygw does not mind root, and the cache under root's home may
        // be closed to other users: it runs as the current user.
        let dir = ServerDir::create("s3", None)?;
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root)?;
        let sidecar = if xattrs_supported(&root) {
            None
        } else {
            let sidecar = dir.path().join("meta");
            std::fs::create_dir_all(&sidecar)?;
            Some(sidecar)
        };
        let http = ReqwestConnector::default()
            .connect(
                &ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(10)),
            )
            .context("building the HTTP client")?;
        let mut s3 = S3 {
            instance: Instance::new(
                "versitygw",
                dir,
                "versitygw.log",
                Admin {
                    user: access_key(),
                    password: secret_key(),
                },
                Shutdown {
                    signal: libc::SIGTERM,
                    grace: Duration::from_secs(5),
                },
                None,
            )?,
            binary: install::versitygw_bin(),
            sidecar,
            http,
        };
        s3.launch().await?;
        s3.startup = started.elapsed();
        Ok(s3)
    }

    async fn launch(&mut self) -> Result<()> {
        let log = self.log_path();
        let mut args: Vec<String> = vec![
            format!("--port={HOST}:{}", self.port),
            format!("--region={REGION}"),
            "posix".to_owned(),
        ];
        if let Some(sidecar) = &self.sidecar {
            args.push(format!("--sidecar={}", sidecar.display()));
        }
        args.push(self.root_dir().display().to_string());
        let mut command = self.dir.command(&self.binary, &args, &log)?;
        // The keys go in the environment, not on the command line (which
        // any local user can read in /proc); versitygw also reads the
        // aliases ROOT_ACCESS_KEY and ROOT_SECRET_KEY, so those are dropped.
        command
            .env("ROOT_ACCESS_KEY_ID", self.access_key())
            .env("ROOT_SECRET_ACCESS_KEY", self.secret_key())
            .env_remove("ROOT_ACCESS_KEY")
            .env_remove("ROOT_SECRET_KEY");
        let mut server = ServerProcess::spawn(&self.supervisor, "versitygw", command, &log).await?;
        let port = self.port;
        let this = &*self;
        process::wait_ready(
            &mut server,
            &format!("versitygw on {HOST}:{port} to answer a signed ListBuckets"),
            process::START_TIMEOUT,
            async || {
                // Cheap first: no HTTP client timeouts while nobody listens.
                tokio::net::TcpStream::connect((HOST, port)).await?;
                this.signed("GET", "/", Vec::new()).await.map(|_| ())
            },
        )
        .await?;
        self.server = Some(server);
        Ok(())
    }

    /// Sends a SigV4-signed request (path-style `path`, starting with `/`)
    /// with the root keys; fails unless the status is 2xx. Returns the body.
    async fn signed(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.endpoint());
        let mut request: HttpRequest = http::Request::builder()
            .method(method)
            .uri(&url)
            .body(HttpRequestBody::from(body))
            .with_context(|| format!("building {method} {url}"))?;
        let credential = AwsCredential {
            key_id: self.access_key().to_owned(),
            secret_key: self.secret_key().to_owned(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", REGION)
            .try_authorize(&mut request, None)
            .with_context(|| format!("signing {method} {url}"))?;
        let response = self
            .http
            .execute(request)
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?;
        if !status.is_success() {
            bail!(
                "{method} {url}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body.to_vec())
    }

    /// Creates a bucket (CreateBucket, signed with the root keys). Bucket
    /// names follow S3's rules: 3-63 lowercase letters, digits, `-`, `.`.
    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        self.signed("PUT", &format!("/{name}"), Vec::new())
            .await
            .with_context(|| format!("creating bucket {name}"))?;
        Ok(())
    }

    /// Names of the buckets (ListBuckets, signed with the root keys).
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        let body = self.signed("GET", "/", Vec::new()).await?;
        let text = String::from_utf8_lossy(&body);
        Ok(text
            .split("<Name>")
            .skip(1)
            .filter_map(|rest| rest.split("</Name>").next())
            .map(str::to_owned)
            .collect())
    }

    /// An `object_store` builder for `bucket` on this server: endpoint,
    /// region, root keys, plain HTTP allowed, path-style requests, and a
    /// short retry budget (2 retries within 5 s, so a stopped server fails
    /// requests quickly instead of after object_store's default 3 minutes).
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_region(REGION)
            .with_bucket_name(bucket)
            .with_access_key_id(self.access_key())
            .with_secret_access_key(self.secret_key())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
            })
    }

    /// `self.builder(bucket).build()`.
    pub fn store(&self, bucket: &str) -> Result<AmazonS3> {
        self.builder(bucket)
            .build()
            .with_context(|| format!("building an object_store client for bucket {bucket}"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    /// `us-east-1`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The root account's access key id (20 characters, `TK` + uppercase
    /// letters and digits).
    pub fn access_key(&self) -> &str {
        self.admin_user()
    }

    /// The root account's secret key (40 letters and digits).
    pub fn secret_key(&self) -> &str {
        self.admin_password()
    }

    /// The posix backend's root: one folder per bucket.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The versitygw binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// versitygw version, e.g. `v1.8.0`.
    pub fn version(&self) -> &'static str {
        install::versitygw_version()
    }

    /// Starts the stopped server again (same port, data and keys).
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }
}

fn random_chars(charset: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| charset[rng.random_range(0..charset.len())] as char)
        .collect()
}

/// `TK` + 18 uppercase letters and digits, like AWS access key ids.
fn access_key() -> String {
    format!(
        "TK{}",
        random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 18)
    )
}

/// 40 letters and digits (no `/` or `+`, so it is safe in URLs too).
fn secret_key() -> String {
    random_chars(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        40,
    )
}

/// Whether `dir`'s file system takes `user.*` extended attributes, which
/// the posix backend keeps its metadata in (tmpfs before Linux 6.6 does
/// not).
fn xattrs_supported(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let name = c"user.testkit.probe";
    let value = b"1";
    // SAFETY: both strings are NUL-terminated and live across the calls;
    // value points at value.len() readable bytes.
    unsafe {
        let ok = libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0;
        if ok {
            libc::removexattr(path.as_ptr(), name.as_ptr());
        }
        ok
    }
}
