//! The integration fixture: one real control plane per test binary (from the
//! testkit), the generated CRDs installed, and the real `database-operator`
//! binary running against it as a child process. Each test works in its own
//! namespace, so tests run in parallel without seeing each other.

use database_operator_api::v1;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Cluster;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

pub struct Env {
    pub cluster: Cluster,
    pub metrics_address: String,
    pub operator_log: PathBuf,
    operator_pid: std::sync::Mutex<u32>,
    operator_args: Vec<String>,
    operator_kubeconfig: PathBuf,
}

/// One environment per group of tests, started on first use.
static ENVS: std::sync::Mutex<BTreeMap<&'static str, &'static OnceCell<Env>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The cluster with CRDs and a running operator that the tests of `group`
/// share (a test module passes `module_path!()`): groups do not see each
/// other's operator, so one group's counts (writes at steady state, metrics)
/// are not disturbed by another's.
pub async fn env(group: &'static str) -> &'static Env {
    let cell = *ENVS
        .lock()
        .expect("environments lock")
        .entry(group)
        .or_insert_with(|| Box::leak(Box::new(OnceCell::new())));
    cell.get_or_init(|| async {
        start(Vec::new())
            .await
            .expect("starting the integration environment")
    })
    .await
}

/// A cluster with CRDs and an operator started with `extra_args` (for
/// example `--resolve` entries for real database servers).
pub async fn start(extra_args: Vec<String>) -> Result<Env> {
    start_with(extra_args, async |_| Ok(None)).await
}

/// Like [`start`], with `setup` run on the cluster before the operator
/// starts; when it returns a kubeconfig, the operator uses that one (for
/// example one that impersonates the operator's ServiceAccount).
pub async fn start_with(
    extra_args: Vec<String>,
    setup: impl AsyncFnOnce(&Cluster) -> Result<Option<PathBuf>>,
) -> Result<Env> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    install_crds(&client).await?;
    let operator_kubeconfig = setup(&cluster)
        .await?
        .unwrap_or_else(|| cluster.kubeconfig_path().to_owned());
    let port = crate::processes::free_port()?;
    let metrics_address = format!("127.0.0.1:{port}");
    let operator_log = cluster.dir().join("operator.log");
    let pid = spawn_operator(
        &operator_kubeconfig,
        &metrics_address,
        &operator_log,
        &extra_args,
    )?;
    let env = Env {
        cluster,
        metrics_address,
        operator_log,
        operator_pid: std::sync::Mutex::new(pid),
        operator_args: extra_args,
        operator_kubeconfig,
    };
    env.wait_until_ready().await?;
    Ok(env)
}

/// Starts the real operator binary with `kubeconfig`; returns its pid.
fn spawn_operator(
    kubeconfig: &std::path::Path,
    metrics_address: &str,
    log: &std::path::Path,
    extra: &[String],
) -> Result<u32> {
    let mut args: Vec<String> = [
        "run",
        "--metrics-address",
        metrics_address,
        "--cleanup-deadline-seconds",
        "8",
        // Databases without a server on loopback: a closed port on
        // loopback, never a DNS query for a cluster name.
        "--resolve-default",
        crate::UNREACHABLE,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().cloned());
    let mut command = crate::processes::command(&crate::paths::operator_binary(), &args, log)?;
    command
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn,operator=debug");
    // The operator dies with the forking thread (PR_SET_PDEATHSIG), so fork it
    // from a thread that lives as long as the operator.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || match command.spawn() {
        Ok(mut child) => {
            let _ = tx.send(Ok(child.id()));
            let _ = child.wait();
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    });
    rx.recv()?.context("starting database-operator")
}

/// Applies every generated CRD and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> Result<()> {
    apply_crds(client, v1::crds(), "integration-tests").await
}

/// Applies `crds` under the field manager `manager` and waits until each is
/// Established.
pub async fn apply_crds(
    client: &Client,
    crds: Vec<CustomResourceDefinition>,
    manager: &str,
) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in &crds {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(crd),
        )
        .await
        .with_context(|| format!("installing CRD {}", crd.name_any()))?;
    }
    for crd in &crds {
        let name = crd.name_any();
        let mut established = false;
        for _ in 0..100 {
            let live = api.get(&name).await?;
            established = live
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !established {
            bail!("CRD {name} never became Established");
        }
    }
    Ok(())
}

/// Third-party CRDs from their YAML files (as fetched by hack/crds/fetch.sh).
pub fn crds_from_files(files: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
                .with_context(|| format!("parsing {}", file.display()))?;
            crd.metadata.managed_fields = None;
            Ok(crd)
        })
        .collect()
}

/// Applies the CRDs in `files` and waits until they are Established.
pub async fn install_crd_files(client: &Client, files: &[PathBuf], manager: &str) -> Result<()> {
    apply_crds(client, crds_from_files(files)?, manager).await
}

/// Velero's real Schedule CRD, fetched from its Go module by hack/crds/fetch.sh.
pub async fn install_velero_schedule_crd(client: &Client, manager: &str) -> Result<()> {
    let path = crate::crds::velero_schedule_crd()?;
    install_crd_files(client, &[path], manager).await
}

/// prometheus-operator's CRD files, fetched by hack/crds/fetch.sh (run here
/// when the cache lacks them).
pub fn prometheus_operator_crds() -> Vec<PathBuf> {
    if let Ok(files) = crate::crds::prometheus_operator_crds() {
        return files;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../hack/crds/fetch.sh");
    let ok = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .expect("running hack/crds/fetch.sh")
        .success();
    assert!(ok, "hack/crds/fetch.sh failed");
    crate::crds::prometheus_operator_crds()
        .expect("prometheus-operator CRD files after hack/crds/fetch.sh")
}

impl Env {
    async fn wait_until_ready(&self) -> Result<()> {
        for _ in 0..300 {
            if let Ok((200, _)) = self.http_get("/readyz").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("operator never became ready:\n{}", self.operator_log_tail())
    }

    /// Stops the operator (SIGTERM, as Kubernetes would) and starts a new one.
    pub async fn restart_operator(&self) {
        self.restart_operator_with(&[]).await;
    }

    /// As [`Env::restart_operator`], the new one with `extra` arguments
    /// besides the usual (for this run only): a new release's settings.
    pub async fn restart_operator_with(&self, extra: &[&str]) {
        self.replace_operator(libc::SIGTERM, extra).await;
    }

    /// Kills the operator with SIGKILL, as a node failure or the OOM killer
    /// would (no shutdown, no lease released, work cut mid-write), and
    /// starts a new one.
    pub async fn kill_and_restart_operator(&self) {
        self.replace_operator(libc::SIGKILL, &[]).await;
    }

    async fn replace_operator(&self, signal: libc::c_int, extra: &[&str]) {
        let old = self.operator_pid();
        // SAFETY: kill(2) on a pid this harness started; no memory is shared.
        let sent = unsafe { libc::kill(old as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal {signal} to the operator {old}");
        for _ in 0..100 {
            if !crate::processes::pid_alive(old) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = self.operator_args.clone();
        args.extend(extra.iter().map(ToString::to_string));
        let pid = spawn_operator(
            &self.operator_kubeconfig,
            &self.metrics_address,
            &self.operator_log,
            &args,
        )
        .expect("restarting the operator");
        *self.operator_pid.lock().expect("operator pid lock") = pid;
        self.wait_until_ready()
            .await
            .expect("operator ready after restart");
    }

    pub async fn client(&self) -> Client {
        self.cluster
            .client()
            .await
            .expect("client for the test cluster")
    }

    /// Creates a fresh namespace for one test.
    pub async fn namespace(&self, name: &str) -> String {
        let namespaces = Api::<Namespace>::all(self.client().await);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a Namespace from its name");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating namespace");
        // The ServiceAccount admission plugin refuses pods until "default" exists.
        self.cluster
            .eventually(
                "the default ServiceAccount",
                Duration::from_secs(30),
                async |client| {
                    let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                        client.clone(),
                        name,
                    );
                    Ok(sa.get_opt("default").await?.map(|_| ()))
                },
            )
            .await
            .expect("default ServiceAccount");
        name.to_owned()
    }

    /// The running operator's process id.
    pub fn operator_pid(&self) -> u32 {
        *self.operator_pid.lock().expect("operator pid lock")
    }

    /// Starts one more operator, with the same kubeconfig and arguments,
    /// serving on `metrics_address` and logging to `log`; returns its pid.
    /// The caller stops it.
    pub fn spawn_another_operator(&self, metrics_address: &str, log: &std::path::Path) -> u32 {
        spawn_operator(
            &self.operator_kubeconfig,
            metrics_address,
            log,
            &self.operator_args,
        )
        .expect("starting another operator")
    }

    /// A plain HTTP/1.0 GET against the operator's metrics server.
    pub async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.metrics_address, path).await
    }

    /// Sum of every series of a metric in the operator's /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await.expect("scraping /metrics");
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The series of a metric that are not zero, one per line, for
    /// failure messages (`verb="patch",resource="secrets"} 1`).
    pub async fn metric_series(&self, name: &str) -> String {
        let (_, body) = self.http_get("/metrics").await.expect("scraping /metrics");
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) != Some(0.0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The operator's log, for failure messages.
    pub fn operator_log_tail(&self) -> String {
        crate::processes::log_tail(&self.operator_log, 60)
    }
}

/// A plain HTTP/1.0 GET against an operator's metrics server at `address`.
pub async fn http_get(address: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `check` every 200 ms until it yields a value, or panics with the
/// operator's log after `timeout`.
pub async fn eventually<T, F, Fut>(env: &Env, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}\noperator log:\n{}",
                env.operator_log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `object` through `api` and returns what the API server stored;
/// a refusal fails the test with the API server's message.
pub async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {}: {e}",
                object.meta().name.as_deref().unwrap_or("?")
            )
        })
}
