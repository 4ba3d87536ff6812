//! The in-pod program of a replicated PostgreSQL or MySQL-family Database:
//! `database-operator instance [options] -- <instance script> <server ...>`,
//! the database container's command. It runs the instance script (which
//! execs the server) as its child and stands between it and the rest of
//! the world in two ways:
//!
//! - **A role the API confirmed.** Before it starts the server, it reads
//!   the pod from the Kubernetes API and writes the pod's labels into the
//!   file the instance script reads its role from. A primary that restarts
//!   after losing the API therefore starts only with the role the operator
//!   gives it now, never with the one a stale downward-API file still shows
//!   (the kubelet refreshes those files a minute or more later).
//! - **Self-fencing.** While the server runs, it asks the API about the pod
//!   and its Database every few seconds (GETs only: no write at steady
//!   state). A primary that gets no answer for half the failover delay
//!   stops its server ([`fence`] says why and when), then waits for the API
//!   again.
//!
//! The binary reaches the database image through an init container that
//! copies it out of the operator's image (`copy-self`), as the backup pods
//! do. Its API access is the Database's own ServiceAccount, which may read
//! its pods and its Database and nothing else.
//!
//! Termination signals go to the server as its stop signal (PostgreSQL's
//! fast shutdown is SIGINT), and the program exits with the server's
//! status, so that the kubelet sees the server's exit as before.

pub mod fence;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use database_operator_api::v1::Database;
use database_operator_api::v1::replication::{DEFAULT_FAILOVER_DELAY, ReplicationSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use fence::{Observed, Reply, Verdict, Watch};

/// The options of `database-operator instance`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The pod this program runs in.
    #[arg(long, env = "POD_NAME")]
    pub pod: String,
    /// Its namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The Database the pod belongs to.
    #[arg(long)]
    pub database: String,
    /// Where the pod's confirmed labels are written; the server's command
    /// gets it as ROLE_FILE.
    #[arg(long)]
    pub role_file: PathBuf,
    /// The signal that stops the server cleanly (PostgreSQL: INT, fast
    /// shutdown; MySQL: TERM).
    #[arg(long, value_enum, default_value_t = StopSignal::Term)]
    pub stop_signal: StopSignal,
    /// The instance script and the server command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// A signal that stops a server cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StopSignal {
    Term,
    Int,
    /// Not a clean stop: what the supervisor passes on when it gets it.
    #[value(skip)]
    Quit,
}

impl StopSignal {
    fn number(self) -> i32 {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Int => libc::SIGINT,
            Self::Quit => libc::SIGQUIT,
        }
    }
}

/// How long a stopped server may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long to wait between two attempts to reach the API before a start.
const RETRY_START: Duration = Duration::from_secs(2);

/// Runs the server under supervision; returns the exit code to leave with.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    let client = api_client().await?;
    let pods = Api::<Pod>::namespaced(client.clone(), &args.namespace);
    let databases = Api::<Database>::namespaced(client, &args.namespace);
    let ask = |timeout: Duration| check(&pods, &databases, &args, timeout);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    loop {
        // The role, confirmed by the API, before the server starts.
        let observed = loop {
            match ask(RETRY_START).await {
                Reply::Observed(observed) => break observed,
                reply => {
                    warn!(pod = %args.pod, ?reply, "waiting for the Kubernetes API to confirm this pod's role before starting the server");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_START) => {}
                        _ = terminate.recv() => return Ok(128 + libc::SIGTERM),
                        _ = interrupt.recv() => return Ok(128 + libc::SIGINT),
                        _ = quit.recv() => return Ok(128 + libc::SIGQUIT),
                    }
                }
            }
        };
        write_labels(&args.role_file, &observed)?;
        info!(pod = %args.pod, role = observed.role().unwrap_or(""), "starting the server");
        let mut command = Command::new(&args.command[0]);
        command
            .args(&args.command[1..])
            .env("ROLE_FILE", &args.role_file);
        // SAFETY: prctl(2) only, between fork and exec: the server dies
        // with its supervisor, never left running unsupervised.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", args.command[0]))?;
        let mut watch = Watch::new(&observed, Instant::now());
        let reason = loop {
            let every = watch.check_every();
            tokio::select! {
                status = child.wait() => return Ok(exit_code(status?)),
                _ = terminate.recv() => return stop(&mut child, args.stop_signal).await,
                _ = interrupt.recv() => return stop(&mut child, args.stop_signal).await,
                // Immediate: passed on as it is.
                _ = quit.recv() => return stop(&mut child, StopSignal::Quit).await,
                () = tokio::time::sleep(every) => {
                    if let Verdict::Stop(reason) = watch.observe(Instant::now(), ask(every).await) {
                        break reason;
                    }
                }
            }
        };
        warn!(pod = %args.pod, %reason, "fencing: stopping the server");
        let code = stop(&mut child, args.stop_signal).await?;
        info!(pod = %args.pod, code, "the server stopped; it starts again once the Kubernetes API answers");
    }
}

/// A client of the API in the pod (its ServiceAccount), or of KUBECONFIG.
async fn api_client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster ServiceAccount or KUBECONFIG)")?;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    Client::try_from(config).context("making a Kubernetes client")
}

/// One check: the pod and its Database, within `timeout`.
async fn check(
    pods: &Api<Pod>,
    databases: &Api<Database>,
    args: &Args,
    timeout: Duration,
) -> Reply {
    let both = async { tokio::join!(pods.get(&args.pod), databases.get(&args.database)) };
    let Ok((pod, database)) = tokio::time::timeout(timeout, both).await else {
        return Reply::Silent;
    };
    match (pod, database) {
        (Ok(pod), Ok(db)) => Reply::Observed(Observed {
            labels: pod.labels().clone(),
            replicas: db.spec.replicas,
            failover_delay: db
                .spec
                .replication
                .as_ref()
                .map_or(DEFAULT_FAILOVER_DELAY, ReplicationSpec::failover_delay),
        }),
        // The API server answered (a refusal, a Database being deleted).
        (Ok(_) | Err(kube::Error::Api(_)), Ok(_) | Err(kube::Error::Api(_))) => Reply::Answered,
        _ => Reply::Silent,
    }
}

/// Writes the labels file through a temporary file beside it, so that the
/// instance script never reads half of it.
fn write_labels(path: &Path, observed: &Observed) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, fence::labels_file(&observed.labels))
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// Stops the server with `signal`, kills it after [`STOP_GRACE`], and
/// returns its exit code.
async fn stop(child: &mut Child, signal: StopSignal) -> anyhow::Result<i32> {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, signal.number()) };
    }
    let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            warn!(
                "the server did not stop in {}s: killing it",
                STOP_GRACE.as_secs()
            );
            child.kill().await?;
            child.wait().await?
        }
    };
    Ok(exit_code(status))
}

/// A shell's exit code for `status`: the code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
