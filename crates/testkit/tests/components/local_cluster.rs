//! Tests of the `local-cluster` binary: up/status/down and that the
//! components die with their parent even when it is SIGKILLed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use database_operator_testkit::paths;
use database_operator_testkit::processes::pid_alive;

fn local_cluster(state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-cluster"));
    command.arg("--state-dir").arg(state);
    command
}

fn run(command: &mut Command) -> Result<Output> {
    let output = command.stdin(Stdio::null()).output()?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    Ok(output)
}

/// Runs `local-cluster down` when dropped, so a failing test leaves no
/// cluster running.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(local_cluster(&self.0).arg("down"));
    }
}

fn component_pids(state: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(state.join("pids"))?;
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .context("malformed pids file")?
                .parse()
                .context("malformed pid")
        })
        .collect()
}

fn wait_gone(pids: &[u32], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|p| pid_alive(*p)) {
        if Instant::now() > deadline {
            let alive: Vec<_> = pids.iter().filter(|p| pid_alive(**p)).collect();
            bail!("processes {alive:?} still alive");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn up_prints_exports_and_down_stops_everything() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("cluster");
    let _down = Down(state.clone());

    let output = run(local_cluster(&state).arg("up"))?;
    ensure!(output.status.success(), "up failed");
    let stdout = String::from_utf8(output.stdout)?;
    let kubeconfig = state.join("kubeconfig");
    let expected = format!(
        "export KUBECONFIG=\"{}\"\nexport PATH=\"{}:$PATH\"\n",
        kubeconfig.display(),
        paths::bin_dir().display()
    );
    assert_eq!(stdout, expected);

    let nodes = run(Command::new(paths::bin_dir().join("kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["get", "nodes", "--no-headers"]))?;
    ensure!(nodes.status.success(), "kubectl failed");
    let nodes = String::from_utf8(nodes.stdout)?;
    ensure!(nodes.contains(" Ready "), "no Ready node: {nodes}");

    // A second `up` reuses the running cluster.
    let again = run(local_cluster(&state).arg("up"))?;
    ensure!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout)?, expected);

    let status = run(local_cluster(&state).arg("status"))?;
    ensure!(status.status.success(), "status says not running");

    let mut pids = component_pids(&state)?;
    pids.push(
        std::fs::read_to_string(state.join("serve.pid"))?
            .trim()
            .parse()?,
    );
    let down = run(local_cluster(&state).arg("down"))?;
    ensure!(down.status.success(), "down failed");
    // `down` returns only after every process is gone.
    for pid in &pids {
        ensure!(!pid_alive(*pid), "process {pid} survived down");
    }
    ensure!(!state.exists(), "state folder not removed");

    let status = run(local_cluster(&state).arg("status"))?;
    ensure!(!status.status.success(), "status says running after down");
    Ok(())
}

#[test]
fn components_die_when_their_parent_is_killed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("cluster");
    let _down = Down(state.clone());

    // `serve` in the foreground: it is our child, so we can SIGKILL it.
    let mut serve = local_cluster(&state)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.join("ready").exists() {
        if let Some(status) = serve.try_wait()? {
            bail!("serve exited: {status}");
        }
        ensure!(Instant::now() < deadline, "cluster not ready in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = component_pids(&state)?;
    ensure!(pids.len() == 5, "{pids:?}");
    ensure!(pids.iter().all(|p| pid_alive(*p)));

    serve.kill()?; // SIGKILL: no Drop runs, only PDEATHSIG can stop them.
    serve.wait()?;
    wait_gone(&pids, Duration::from_secs(10))
}
