//! `local-cluster`: a testkit cluster that outlives the command, for working
//! with kubectl or running the operator by hand.
//!
//! ```text
//! eval "$(cargo run -q -p database-operator-testkit --bin local-cluster -- up)"
//! kubectl get nodes
//! cargo run -q -p database-operator-testkit --bin local-cluster -- down
//! ```
//!
//! `up` starts `local-cluster serve` in a new session (setsid) with its output
//! in `<state-dir>/serve.log`, waits for `<state-dir>/ready`, and prints
//! `export KUBECONFIG=...` and `export PATH=...` as the only lines on stdout.
//! Everything else goes to stderr.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use database_operator_testkit::processes::{log_tail, pid_alive};
use database_operator_testkit::{Cluster, ClusterConfig, nodes, paths};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

#[derive(Parser)]
#[command(about = "Run a local testkit Kubernetes cluster in the background")]
struct Cli {
    /// Where the running cluster keeps its kubeconfig, logs and data.
    #[arg(long, global = true, env = "LOCAL_CLUSTER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the cluster in the background (or reuse the running one) and
    /// print shell exports: eval "$(local-cluster up)".
    Up {
        /// Number of fake nodes.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Seconds to wait for the cluster to become ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Stop the cluster, wait for every process to exit, remove the state.
    Down,
    /// Tell whether the cluster runs; exit status 1 if it does not.
    Status,
    /// Run the cluster in the foreground until SIGTERM/SIGINT (used by `up`).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
}

/// Files in the state folder.
struct State {
    dir: PathBuf,
}

impl State {
    fn pid_file(&self) -> PathBuf {
        self.dir.join("serve.pid")
    }
    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }
    fn pids_file(&self) -> PathBuf {
        self.dir.join("pids")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("serve.log")
    }
    fn clusters(&self) -> PathBuf {
        self.dir.join("clusters")
    }

    fn serve_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// PID of a live serve process, if any (checking the command line, in
    /// case the recorded PID was reused).
    fn running_pid(&self) -> Option<u32> {
        self.serve_pid().filter(|pid| {
            pid_alive(*pid)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"serve"))
        })
    }

    fn is_ready(&self) -> bool {
        self.running_pid().is_some() && self.ready_file().is_file()
    }

    /// Component PIDs recorded by `serve`.
    fn component_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.pids_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }
}

fn default_state_dir() -> PathBuf {
    paths::cache_root().join("cluster")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = State {
        dir: cli.state_dir.unwrap_or_else(default_state_dir),
    };
    let result = match cli.command {
        Cmd::Up { nodes, timeout } => up(&state, nodes, Duration::from_secs(timeout)),
        Cmd::Down => down(&state),
        Cmd::Status => status(&state),
        Cmd::Serve { nodes } => serve(&state, nodes),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("local-cluster: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_exports(state: &State) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "export KUBECONFIG=\"{}\"",
        state.kubeconfig().display()
    )?;
    writeln!(out, "export PATH=\"{}:$PATH\"", paths::bin_dir().display())?;
    Ok(())
}

fn up(state: &State, nodes: usize, timeout: Duration) -> Result<ExitCode> {
    if state.is_ready() {
        eprintln!(
            "local-cluster: already running (state in {})",
            state.dir.display()
        );
        print_exports(state)?;
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let mut child = None;
    if let Some(pid) = state.running_pid() {
        eprintln!("local-cluster: cluster is starting (pid {pid}); waiting");
    } else {
        // Leftovers of a cluster whose serve process died.
        clean_state(state)?;
        std::fs::create_dir_all(&state.dir)
            .with_context(|| format!("creating {}", state.dir.display()))?;
        // Build in the foreground so the progress is visible.
        paths::ensure_built()?;
        let log = std::fs::File::create(state.log())
            .with_context(|| format!("creating {}", state.log().display()))?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("--state-dir")
            .arg(&state.dir)
            .arg("serve")
            .arg("--nodes")
            .arg(nodes.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                // Own session: no terminal hangup, no job-control signals.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = command.spawn().context("starting local-cluster serve")?;
        eprintln!(
            "local-cluster: starting cluster (pid {}, log {})",
            spawned.id(),
            state.log().display()
        );
        child = Some(spawned);
    }
    let deadline = Instant::now() + timeout;
    loop {
        if state.ready_file().is_file() {
            break;
        }
        if let Some(child) = child.as_mut()
            && let Some(exit) = child.try_wait()?
        {
            bail!(
                "cluster failed to start ({exit}); last lines of {}:\n{}",
                state.log().display(),
                log_tail(&state.log(), 30)
            );
        }
        if child.is_none() && state.running_pid().is_none() {
            bail!("cluster process exited; see {}", state.log().display());
        }
        if Instant::now() >= deadline {
            bail!(
                "cluster not ready after {}s; see {} (run `local-cluster down` to clean up)",
                timeout.as_secs(),
                state.log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "local-cluster: ready in {:.1}s; kubeconfig {}",
        started.elapsed().as_secs_f64(),
        state.kubeconfig().display()
    );
    print_exports(state)?;
    Ok(ExitCode::SUCCESS)
}

fn down(state: &State) -> Result<ExitCode> {
    let components = state.component_pids();
    match state.running_pid() {
        Some(pid) => {
            eprintln!("local-cluster: stopping (pid {pid})");
            // SAFETY: kill(2) has no memory-safety requirements.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if !wait_gone(&[pid], Duration::from_secs(30)) {
                eprintln!("local-cluster: serve process did not stop; killing it");
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                wait_gone(&[pid], Duration::from_secs(5));
            }
        }
        None => eprintln!("local-cluster: not running"),
    }
    // Components die with serve (Drop, or PDEATHSIG if it was killed); make
    // sure before removing their files. Only kill our own binaries, in case
    // a PID was reused.
    if !wait_gone(&components, Duration::from_secs(10)) {
        for pid in components
            .iter()
            .copied()
            .filter(|p| is_controlplane_process(*p))
        {
            eprintln!("local-cluster: killing leftover process {pid}");
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        if !wait_gone(&components, Duration::from_secs(5)) {
            bail!("processes {components:?} are still running");
        }
    }
    clean_state(state)?;
    eprintln!("local-cluster: stopped; removed {}", state.dir.display());
    Ok(ExitCode::SUCCESS)
}

fn status(state: &State) -> Result<ExitCode> {
    let Some(pid) = state.running_pid() else {
        println!("not running");
        return Ok(ExitCode::FAILURE);
    };
    if !state.ready_file().is_file() {
        println!("starting (pid {pid}, log {})", state.log().display());
        return Ok(ExitCode::FAILURE);
    }
    let server = std::fs::read_to_string(state.ready_file())?;
    println!("running (pid {pid})");
    println!("server:     {}", server.trim());
    println!("kubeconfig: {}", state.kubeconfig().display());
    println!("bin dir:    {}", paths::bin_dir().display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kubeconfig = state.kubeconfig();
    let nodes = runtime.block_on(async move {
        let client = database_operator_testkit::kubeconfig::client(&kubeconfig).await?;
        anyhow::Ok(
            Api::<Node>::all(client)
                .list(&ListParams::default())
                .await?,
        )
    })?;
    for node in nodes {
        let ready = if nodes::is_schedulable(&node) {
            "Ready"
        } else {
            "NotReady"
        };
        println!(
            "node:       {} {ready}",
            node.metadata.name.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(state: &State, nodes: usize) -> Result<ExitCode> {
    std::fs::create_dir_all(&state.dir)?;
    std::fs::write(state.pid_file(), std::process::id().to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve_until_signalled(state, nodes));
    let _ = std::fs::remove_file(state.pid_file());
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve_until_signalled(state: &State, nodes: usize) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    let config = ClusterConfig {
        nodes,
        parent_dir: Some(state.clusters()),
        ..ClusterConfig::default()
    };
    let cluster = tokio::select! {
        cluster = Cluster::start_with(config) => cluster?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    let pids: String = cluster
        .pids()
        .iter()
        .map(|(name, pid)| format!("{name} {pid}\n"))
        .collect();
    std::fs::write(state.pids_file(), pids)?;
    let tmp = state.dir.join("kubeconfig.tmp");
    std::fs::copy(cluster.kubeconfig_path(), &tmp)?;
    std::fs::rename(&tmp, state.kubeconfig())?;
    std::fs::write(state.ready_file(), format!("{}\n", cluster.server_url()))?;
    eprintln!(
        "local-cluster: serving {} (components: {:?})",
        cluster.server_url(),
        cluster.pids()
    );

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
    eprintln!("local-cluster: stopping");
    let _ = std::fs::remove_file(state.ready_file());
    drop(cluster);
    Ok(())
}

/// Waits until none of `pids` is alive; false on timeout.
fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !pid_alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True if `pid` runs one of the binaries from the control-plane bin dir.
fn is_controlplane_process(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.starts_with(paths::bin_dir()))
}

fn clean_state(state: &State) -> Result<()> {
    if state.dir.exists() {
        std::fs::remove_dir_all(&state.dir)
            .with_context(|| format!("removing {}", state.dir.display()))?;
    }
    Ok(())
}
