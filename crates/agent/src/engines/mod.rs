//! What the agent knows per engine: how to connect with the driver, how to
//! take the inventory (version, databases, row counts), the dump and
//! restore command lines, and whether a server holds user data.

pub mod copy_count;
pub mod counting;
pub mod insert_count;
pub mod mongodb;
pub mod mysql;
pub mod postgresql;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{AgentError, Result};

/// What a server holds, taken before the dump.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub server_version: String,
    pub databases: Vec<String>,
    pub row_counts: BTreeMap<String, u64>,
    pub row_count_method: String,
}

/// Finds a client program in `dir`, else on PATH; the first name that exists.
pub fn find_tool(dir: Option<&Path>, names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => vec![d.to_owned()],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    for name in names {
        for d in &dirs {
            let candidate = d.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn require_tool(dir: Option<&Path>, names: &[&str]) -> Result<PathBuf> {
    find_tool(dir, names).ok_or_else(|| {
        AgentError::Tool(format!(
            "{} not found in {}",
            names.join(" or "),
            dir.map_or_else(
                || "PATH (set --tools-dir)".into(),
                |d| d.display().to_string()
            )
        ))
    })
}

/// `<tool> --version`, first line.
pub async fn tool_version(tool: &Path) -> Result<String> {
    let out = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AgentError::Tool(format!("running {} --version: {e}", tool.display())))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// A running client program whose stderr is kept (its last lines) for the
/// error message.
pub struct Tool {
    pub name: String,
    pub child: Child,
    stderr: JoinHandle<Vec<String>>,
}

/// How many stderr lines an error quotes.
const STDERR_LINES: usize = 12;

/// Grows a pipe from the default 64 KiB to 1 MiB: a dump moves through it
/// in far fewer wake-ups of the tool and the agent (measured: a quarter of
/// the dump tool's time went to pipe wake-ups). Best effort: a smaller
/// limit (`/proc/sys/fs/pipe-max-size`) keeps the default.
fn widen_pipe(fd: RawFd) {
    const PIPE_SIZE: libc::c_int = 1 << 20;
    // SAFETY: fcntl on a descriptor this process owns, with an int argument.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}

impl Tool {
    /// Spawns `program args` with `env` added and the agent's own secrets
    /// removed from its environment.
    pub fn spawn<I, S>(
        program: &Path,
        args: I,
        env: &[(&str, &str)],
        stdin: bool,
        stdout: bool,
    ) -> Result<Tool>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove("DB_PASSWORD")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| AgentError::Tool(format!("starting {}: {e}", program.display())))?;
        for pipe in [
            child.stdout.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
            child.stdin.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
        ]
        .into_iter()
        .flatten()
        {
            widen_pipe(pipe);
        }
        let err = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            let mut tail = std::collections::VecDeque::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail.into()
        });
        Ok(Tool {
            name,
            child,
            stderr,
        })
    }

    /// Waits for the exit; non-zero is an error quoting its stderr.
    pub async fn wait(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| AgentError::Tool(format!("waiting for {}: {e}", self.name)))?;
        let stderr = self.stderr.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(tool_failure(&self.name, &status.to_string(), &stderr))
    }

    /// Waits for a tool that was fed a backup on stdin; `fed` is how the
    /// feeding went. The tool's own failure says more than the broken pipe
    /// it leaves behind, so it wins.
    pub async fn wait_after_feeding(self, fed: std::io::Result<()>) -> Result<()> {
        self.wait().await?;
        fed.map_err(|e| AgentError::Integrity(format!("reading the backup while restoring: {e}")))
    }
}

/// The error for a failed tool; a refused login is a [`AgentError::DbAuth`].
pub fn tool_failure(name: &str, status: &str, stderr: &[String]) -> AgentError {
    let text = stderr
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let msg = super::redact(&format!("{name} failed ({status}): {text}"));
    let lower = text.to_ascii_lowercase();
    if lower.contains("password authentication failed")
        || lower.contains("access denied for user")
        || lower.contains("authentication failed")
    {
        AgentError::DbAuth(msg)
    } else {
        AgentError::Tool(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_that_are_logins_say_so() {
        let e = tool_failure(
            "pg_dumpall",
            "exit status: 1",
            &[
                "pg_dumpall: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"postgres\"".into(),
            ],
        );
        assert!(matches!(e, AgentError::DbAuth(_)), "{e}");
        let e = tool_failure(
            "mariadb-dump",
            "exit status: 2",
            &["mariadb-dump: Got error: 1045: \"Access denied for user 'root'@'127.0.0.1' (using password: YES)\"".into()],
        );
        assert!(matches!(e, AgentError::DbAuth(_)), "{e}");
        let e = tool_failure("psql", "exit status: 3", &["ERROR:  syntax error".into()]);
        assert!(matches!(e, AgentError::Tool(_)), "{e}");
        assert!(
            e.to_string()
                .contains("psql failed (exit status: 3): ERROR: syntax error")
        );
    }

    #[test]
    fn tools_are_found_in_the_given_folder_first_name_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["mysqldump", "mariadb-dump"] {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(
            find_tool(Some(dir.path()), &["mariadb-dump", "mysqldump"]),
            Some(dir.path().join("mariadb-dump"))
        );
        assert_eq!(find_tool(Some(dir.path()), &["pg_dumpall"]), None);
        assert!(require_tool(Some(dir.path()), &["psql"]).is_err());
    }
}
