//! Tests that a server dies with its test process run an ignored helper
//! test of this binary in a child process, which starts servers, writes
//! their PIDs and folders to a file and waits to be killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Runs the ignored test `test` (its full path, `module::name`) of this
/// binary with `env_var` naming `pid_file`, and waits until the helper has
/// written that file (three minutes at most); returns the running child and
/// what it wrote.
pub(crate) async fn run_helper(
    test: &str,
    env_var: &str,
    pid_file: &Path,
) -> Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", test, "--ignored", "--nocapture"])
        .env(env_var, pid_file)
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(text) = std::fs::read_to_string(pid_file) {
            return Ok((child, text));
        }
        if let Some(status) = child.try_wait()? {
            bail!("helper {test} exited early ({status})");
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("helper {test} did not start its servers in time");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
