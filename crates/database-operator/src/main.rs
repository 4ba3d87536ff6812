use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use operator::controller::Settings;
use operator::metrics::Metrics;

/// A Kubernetes operator for PostgreSQL, MySQL and MongoDB.
#[derive(Parser)]
#[command(name = "database-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG or the in-cluster config.
    Run {
        /// Address for /healthz, /readyz and /metrics.
        #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
        metrics_address: SocketAddr,
        /// Log format: readable `text`, or `json` (one object per line) for
        /// log collectors.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = operator::daemon::telemetry::LogFormat::Text)]
        log_format: operator::daemon::telemetry::LogFormat,
        /// How long deletion cleanup is retried before the finalizer lets go
        /// and reports what it left behind.
        #[arg(long, env = "CLEANUP_DEADLINE_SECONDS", default_value_t = 120)]
        cleanup_deadline_seconds: u64,
        /// Reach a Service at another address, for an operator running
        /// outside the cluster: <service>.<namespace>=<host>:<port>. Repeatable.
        #[arg(long = "resolve", value_name = "SERVICE.NAMESPACE=HOST:PORT")]
        resolve: Vec<operator::resolver::Override>,
        /// Reach every Service no --resolve entry names at this address
        /// instead of looking its name up: an operator outside the cluster
        /// then asks no DNS server for cluster names.
        #[arg(long, env = "RESOLVE_DEFAULT", value_name = "HOST:PORT")]
        resolve_default: Option<operator::resolver::Address>,
        /// Run as one of several replicas: only the holder of a Lease
        /// reconciles; the others stand by, ready, to take over.
        #[arg(long, env = "LEADER_ELECT")]
        leader_elect: bool,
        /// Namespace of the leader-election Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "database-operator")]
        leader_election_namespace: String,
        /// Image with this binary at /usr/local/bin/database-operator; backup
        /// pods copy the agent from it into the engine's image.
        #[arg(long, env = "AGENT_IMAGE", default_value = operator::builders::DEFAULT_AGENT_IMAGE)]
        agent_image: String,
        /// The document holding the alert runbooks; each alert's runbook_url
        /// is `<this>#<alert name in lowercase>`.
        #[arg(long, env = "RUNBOOK_BASE_URL", default_value = operator::builders::monitoring::rules::DEFAULT_RUNBOOK_BASE)]
        runbook_base_url: String,
        /// The namespaces to manage, comma-separated; empty for all. Scoped
        /// to namespaces, the operator needs a Role in each and reads
        /// nothing cluster-wide but CRDs.
        #[arg(long, env = "WATCH_NAMESPACES", default_value = "")]
        watch_namespaces: operator::scope::Scope,
        /// How many reconciles each controller runs at once, and how many
        /// requests the operator sends the API server at once; a burst of
        /// objects beyond that waits for a slot.
        #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = operator::controller::MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
        max_concurrent_reconciles: u16,
    },
    /// Print every CRD as YAML, or write one file per CRD into a directory.
    Crd {
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Write every generated manifest (the CRDs and the operator's RBAC,
    /// under `deploy/` and the Helm chart) below a repository root: `make
    /// manifests`.
    Manifests {
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// The backup agent: backup, restore, prune or verify (run in backup Jobs).
    Agent(agent::AgentArgs),
    /// The database container's command in a replicated PostgreSQL or
    /// MySQL-family Database: runs the instance script once the Kubernetes
    /// API has confirmed the pod's role, and stops a primary cut off from
    /// the API for half the failover delay.
    Instance(operator::instance::Args),
    /// Copy this binary to a path (made executable): how backup, restore
    /// and drill pods take the agent out of the operator's image, which has
    /// no shell and no `cp`.
    CopySelf {
        /// Where the copy goes, such as /agent/database-operator.
        to: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// glibc's malloc gives each thread that contends for it an arena of its
/// own, up to eight per core, and memory freed in one arena is not reused
/// by the others: with the runtime's worker threads and blocking pool,
/// resident memory grows with fragmentation rather than with what is held.
/// Two arenas keep it close to what the caches hold (measured with `make
/// bench`, docs/src/benchmark.md). Set before any thread starts.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes the allocator's settings; called before
    // the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run() -> anyhow::Result<()> {
    install_crypto_provider();
    match Cli::parse().command {
        Command::Agent(args) => std::process::exit(agent::run(args).await),
        Command::CopySelf { to } => copy_self(&to)?,
        Command::Instance(args) => {
            operator::daemon::telemetry::init(operator::daemon::telemetry::LogFormat::Text);
            std::process::exit(operator::instance::run(args).await?);
        }
        Command::Manifests { root } => {
            for (path, contents) in operator::crd::generated_files() {
                let path = root.join(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, contents)?;
            }
        }
        Command::Crd { output_dir: None } => print!("{}", operator::crd::render_all()),
        Command::Crd {
            output_dir: Some(dir),
        } => {
            std::fs::create_dir_all(&dir)?;
            for (name, yaml) in operator::crd::render_files() {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
        Command::Run {
            metrics_address,
            log_format,
            cleanup_deadline_seconds,
            resolve,
            resolve_default,
            agent_image,
            runbook_base_url,
            leader_elect,
            leader_election_namespace,
            watch_namespaces,
            max_concurrent_reconciles,
        } => {
            operator::daemon::telemetry::init(log_format);
            let metrics = Arc::new(Metrics::default());
            let config = kube::Config::infer().await?;
            let client = operator::daemon::client::counting_client(
                config,
                metrics.clone(),
                usize::from(max_concurrent_reconciles),
            )?;
            let settings = Settings {
                cleanup_deadline: std::time::Duration::from_secs(cleanup_deadline_seconds),
                resolver: operator::resolver::Resolver::new(resolve).with_fallback(resolve_default),
                agent_image,
                runbook_base_url,
                operator_namespace: leader_election_namespace.clone(),
                scope: watch_namespaces,
                max_concurrent_reconciles,
                ..Settings::default()
            };
            let election = leader_elect.then(|| {
                operator::daemon::leader::Elector::new(
                    client.clone(),
                    &leader_election_namespace,
                    "database-operator",
                    operator::daemon::leader::identity(),
                )
            });
            operator::daemon::run(client, metrics, metrics_address, settings, election).await?;
        }
    }
    Ok(())
}

/// Copies the running executable to `to`, mode 0755, through a temporary
/// file beside it, so that a reader never sees half a binary.
fn copy_self(to: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    // /proc/self/exe, else the path it was started by (a container
    // without /proc runs it by its absolute path).
    let me = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .filter(|path| path.is_absolute() && path.is_file())
        .context(
            "finding this executable (no /proc/self/exe, and not started by its absolute path)",
        )?;
    let partial = to.with_extension("partial");
    std::fs::copy(&me, &partial)
        .with_context(|| format!("copying {} to {}", me.display(), partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("moving the copy to {}", to.display()))?;
    Ok(())
}

/// Selects ring as rustls' process-wide crypto provider. This binary links
/// both ring (kube, the operator's side) and aws-lc-rs (object_store, the
/// agent's side), and with two providers rustls refuses to pick one itself.
fn install_crypto_provider() {
    // An error means a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
