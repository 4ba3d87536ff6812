//! [`Cluster`]: one private control plane per test binary (or per test).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::{Api, Client};
use tokio::net::TcpStream;

use crate::certs::Pki;
use crate::components::{self, Layout, Ports};
use crate::processes::{self, Process, Supervisor};
use crate::{kubeconfig, nodes, paths, provisioner};

/// Options for [`Cluster::start_with`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of fake nodes (`kwok-node-0`, ...), spread over zones a, b, c.
    pub nodes: usize,
    /// Parent of the cluster's temporary folder (default: the system temp dir).
    pub parent_dir: Option<PathBuf>,
    /// Upper bound for each startup phase.
    pub timeout: Duration,
    /// Remove the cluster folder (logs, etcd data) on drop. Set
    /// `TESTKIT_KEEP_DIR=1` to keep it for every cluster of a run.
    pub cleanup: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 1,
            parent_dir: None,
            timeout: Duration::from_secs(90),
            cleanup: std::env::var_os("TESTKIT_KEEP_DIR").is_none_or(|v| v.is_empty() || v == "0"),
        }
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager + kube-scheduler
/// + KWOK on loopback, with fake Ready nodes and a default StorageClass.
///
/// Dropping it stops every component (SIGTERM, then SIGKILL after a grace
/// period) and removes its folder. Components also die with the test
/// process, since they are started with `PR_SET_PDEATHSIG`.
pub struct Cluster {
    processes: Vec<Process>,
    supervisor: Option<Supervisor>,
    layout: Layout,
    server_url: String,
    node_names: Vec<String>,
    startup: Duration,
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server_url", &self.server_url)
            .field("dir", &self.layout.dir)
            .field("pids", &self.pids())
            .finish()
    }
}

impl Cluster {
    /// Starts a cluster with the default [`ClusterConfig`].
    ///
    /// Builds the control plane first (via `hack/controlplane/build.sh`) if
    /// the binaries are not in [`Cluster::bin_dir`] yet.
    pub async fn start() -> Result<Cluster> {
        Cluster::start_with(ClusterConfig::default()).await
    }

    pub async fn start_with(config: ClusterConfig) -> Result<Cluster> {
        tokio::task::spawn_blocking(paths::ensure_built)
            .await
            .context("build task panicked")??;
        // Ports are probed, then released and handed to the components; a
        // concurrent process can grab one in between. Retry on that only.
        let mut attempt = 1;
        loop {
            match Cluster::start_once(&config).await {
                Ok(cluster) => return Ok(cluster),
                Err(error)
                    if attempt < 3 && format!("{error:#}").contains("address already in use") =>
                {
                    eprintln!("testkit: port clash while starting cluster, retrying: {error:#}");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn start_once(config: &ClusterConfig) -> Result<Cluster> {
        let started = Instant::now();
        let parent = config.parent_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        remove_stale_dirs(&parent);
        let dir = tempfile::Builder::new()
            .prefix("testkit-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating cluster folder in {}", parent.display()))?;
        let root = dir.path().to_owned();
        std::fs::write(root.join(OWNER_FILE), std::process::id().to_string())?;
        std::fs::create_dir_all(root.join("logs"))?;

        let ports = Ports {
            etcd_client: processes::free_port()?,
            etcd_peer: processes::free_port()?,
            apiserver: processes::free_port()?,
            scheduler: processes::free_port()?,
            kwok: processes::free_port()?,
        };
        let server_url = format!("https://127.0.0.1:{}", ports.apiserver);
        let pki = Pki::generate(&root.join("pki"))?;
        let layout = Layout {
            admin_kubeconfig: root.join("admin.kubeconfig"),
            controller_manager_kubeconfig: root.join("controller-manager.kubeconfig"),
            scheduler_kubeconfig: root.join("scheduler.kubeconfig"),
            dir: root.clone(),
            pki,
        };
        let ca = &layout.pki.ca.cert_pem;
        for (path, identity, user) in [
            (&layout.admin_kubeconfig, &layout.pki.admin, "admin"),
            (
                &layout.controller_manager_kubeconfig,
                &layout.pki.controller_manager,
                "system:kube-controller-manager",
            ),
            (
                &layout.scheduler_kubeconfig,
                &layout.pki.scheduler,
                "system:kube-scheduler",
            ),
        ] {
            kubeconfig::write(path, &kubeconfig::render(&server_url, ca, identity, user))?;
        }

        let mut cluster = Cluster {
            processes: Vec::new(),
            supervisor: Some(Supervisor::start("cluster")?),
            layout,
            server_url,
            node_names: Vec::new(),
            startup: Duration::ZERO,
            dir: Some(dir),
        };
        if !config.cleanup
            && let Some(dir) = cluster.dir.take()
        {
            // Leaves the folder on disk for post-mortems.
            let _ = dir.keep();
        }
        let timeout = config.timeout;
        let bin = paths::bin_dir();

        // etcd first: the apiserver gives up if etcd is not there in time.
        let args = components::etcd(&cluster.layout, &ports);
        cluster.spawn("etcd", &bin.join("etcd"), &args).await?;
        let etcd_addr = ("127.0.0.1", ports.etcd_client);
        cluster
            .wait_for("etcd to listen", timeout, async || {
                Ok(TcpStream::connect(etcd_addr).await.is_ok())
            })
            .await?;

        let args = components::apiserver(&cluster.layout, &ports);
        cluster
            .spawn("kube-apiserver", &bin.join("kube-apiserver"), &args)
            .await?;
        let client = cluster.client().await?;
        cluster
            .wait_for("kube-apiserver /readyz", timeout, async || {
                let request = http::Request::get("/readyz").body(Vec::new())?;
                Ok(client
                    .request_text(request)
                    .await
                    .is_ok_and(|body| body == "ok"))
            })
            .await?;

        // The rest need a serving apiserver (the controller-manager exits if
        // /healthz does not answer soon enough).
        let args = components::controller_manager(&cluster.layout);
        cluster
            .spawn(
                "kube-controller-manager",
                &bin.join("kube-controller-manager"),
                &args,
            )
            .await?;
        let args = components::scheduler(&cluster.layout, &ports);
        cluster
            .spawn("kube-scheduler", &bin.join("kube-scheduler"), &args)
            .await?;
        let args = components::kwok(&cluster.layout, &ports, &paths::kwok_stages_file());
        cluster.spawn("kwok", &bin.join("kwok"), &args).await?;

        provisioner::create_storage_class(&client).await?;
        let provisioner_kubeconfig = cluster.layout.admin_kubeconfig.clone();
        let volume_root = root.join("volumes");
        cluster.supervisor()?.run_task(async move {
            match kubeconfig::client(&provisioner_kubeconfig).await {
                Ok(client) => provisioner::run(client, volume_root).await,
                Err(error) => eprintln!("testkit provisioner: {error:#}"),
            }
        })?;
        cluster.node_names = nodes::create(&client, config.nodes).await?;

        let service_accounts = Api::<ServiceAccount>::namespaced(client.clone(), "default");
        cluster
            .wait_for("the default ServiceAccount", timeout, async || {
                Ok(service_accounts.get_opt("default").await?.is_some())
            })
            .await?;
        let node_api = Api::<Node>::all(client.clone());
        let names = cluster.node_names.clone();
        cluster
            .wait_for("nodes to be Ready", timeout, async || {
                for name in &names {
                    match node_api.get_opt(name).await? {
                        Some(node) if nodes::is_schedulable(&node) => {}
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            })
            .await?;

        cluster.startup = started.elapsed();
        eprintln!(
            "testkit: cluster {} ready in {:.1}s ({})",
            cluster.server_url,
            cluster.startup.as_secs_f64(),
            cluster.layout.dir.display()
        );
        Ok(cluster)
    }

    async fn spawn(&mut self, name: &'static str, binary: &Path, args: &[String]) -> Result<()> {
        let log = self.layout.log(name);
        let mut command = processes::command(binary, args, &log)?;
        if name == "kwok" {
            // Keep kwok from reading ~/.kwok/kwok.yaml.
            command.env("KWOK_WORKDIR", self.layout.dir.join("kwok"));
        }
        let process = processes::spawn(self.supervisor()?, name, command, &log).await?;
        self.processes.push(process);
        Ok(())
    }

    fn supervisor(&self) -> Result<&Supervisor> {
        self.supervisor.as_ref().context("cluster is stopped")
    }

    /// Polls `check` until it returns true; fails early when a component
    /// exits, and with `what` after `timeout`.
    async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            for process in &mut self.processes {
                process
                    .ensure_running()
                    .with_context(|| format!("waiting for {what}"))?;
            }
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => last_error = Some(error),
            }
            if Instant::now() >= deadline {
                // The folder (and its logs) goes away with the cluster on
                // return, so quote the end of each log.
                let logs: String = self
                    .processes
                    .iter()
                    .map(|p| {
                        format!(
                            "\n--- {} ({}):\n{}",
                            p.name,
                            p.log_path().display(),
                            processes::log_tail(p.log_path(), 10)
                        )
                    })
                    .collect();
                let detail = last_error
                    .map(|e| format!(" (last error: {e:#})"))
                    .unwrap_or_default();
                bail!(
                    "timed out after {}s waiting for {what}{detail}{logs}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Folder with etcd, kube-apiserver, ..., kubectl and kwok.
    pub fn bin_dir() -> PathBuf {
        paths::bin_dir()
    }

    /// Admin kubeconfig (O=system:masters), for kubectl and clients.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.layout.admin_kubeconfig
    }

    /// A new admin client for this cluster.
    pub async fn client(&self) -> Result<Client> {
        kubeconfig::client(&self.layout.admin_kubeconfig).await
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The cluster's folder: `pki/`, `logs/<component>.log`, `etcd/`.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Names of the fake nodes.
    pub fn node_names(&self) -> &[String] {
        &self.node_names
    }

    /// PIDs of the component processes (etcd, apiserver, ...).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.processes.iter().map(|p| (p.name, p.pid())).collect()
    }

    /// Time from `start` to a Ready node.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A `kubectl` command from [`Cluster::bin_dir`] pointed at this cluster.
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(Cluster::bin_dir().join("kubectl"));
        command.env("KUBECONFIG", &self.layout.admin_kubeconfig);
        command
    }

    /// Polls `check` (every 100 ms, with an admin client) until it returns
    /// `Some`, or fails after `timeout` with the last error.
    pub async fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut(&Client) -> Result<Option<T>>,
    ) -> Result<T> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check(&client).await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => None,
                Err(error) => Some(error),
            };
            if Instant::now() >= deadline {
                let detail = last.map(|e| format!(": {e:#}")).unwrap_or_default();
                bail!(
                    "timed out after {}s waiting for {what}{detail}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn shutdown(&mut self) {
        // State is throwaway, so the grace period is short: the small
        // components exit on SIGTERM within milliseconds, while etcd and the
        // apiserver spend many seconds draining watches and get SIGKILLed.
        processes::stop_all(&mut self.processes, Duration::from_secs(1));
        self.processes.clear();
        // Joins the supervisor thread, which cancels the provisioner.
        self.supervisor.take();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// File in each cluster folder naming the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Removes cluster folders left behind by processes that died without
/// dropping their `Cluster` (SIGKILL, or a cluster kept in a `static`).
/// Their components are gone already (PDEATHSIG); only files remain.
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with("testkit-");
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        // Folders without an owner file may be in the middle of creation.
        if ours && owner.is_some_and(|pid| !processes::pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
