//! Shared plumbing of the server fixtures: their folder, their processes,
//! and waiting for them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

use super::install::{self, Component};
use crate::processes::{self, Supervisor};

/// Prefix of the fixtures' folders in the temp dir.
const DIR_PREFIX: &str = "testkit-db-";
/// File in each folder naming the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// A random alphanumeric password (safe in URLs and SQL literals).
pub(crate) fn password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Whether folders are removed on drop (`TESTKIT_KEEP_DIR=1` keeps them).
fn cleanup() -> bool {
    std::env::var_os("TESTKIT_KEEP_DIR").is_none_or(|v| v.is_empty() || v == "0")
}

/// The address every test server listens on.
pub(super) const HOST: &str = "127.0.0.1";

/// How a server is asked to stop: a signal, then SIGKILL after a grace.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shutdown {
    pub(super) signal: libc::c_int,
    pub(super) grace: Duration,
}

/// What every test server has — its process, the thread that forks it, its
/// folder, its port, its log and how long it took to start — with the
/// accessors and the stop, kill and drop behaviour written once. Each server
/// ([`super::Postgres`], [`super::Mariadb`], [`super::Ferret`],
/// [`super::S3`]) holds one and dereferences to it; what differs is how it
/// is initialised and launched.
pub struct Instance {
    // Field order is drop order: server, then its thread, then the folder.
    pub(super) server: Option<ServerProcess>,
    pub(super) supervisor: Supervisor,
    pub(super) dir: ServerDir,
    pub(super) port: u16,
    pub(super) startup: Duration,
    log_name: &'static str,
    admin: Admin,
    stop: Shutdown,
    /// How dropping it ends the server; `None`: SIGKILL at once.
    on_drop: Option<Shutdown>,
}

/// The login a server is set up with, which the tests (and the operator
/// code they run) use as the server's administrator.
pub(crate) struct Admin {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Admin {
    /// `user` with a random password.
    pub(crate) fn generated(user: &str) -> Admin {
        Admin {
            user: user.to_owned(),
            password: password(),
        }
    }
}

impl Instance {
    /// A server named `name` (its supervisor thread), in `dir`, on a free
    /// port, logging to `<dir>/<log_name>`, set up with `admin`, not
    /// started yet.
    pub(super) fn new(
        name: &str,
        dir: ServerDir,
        log_name: &'static str,
        admin: Admin,
        stop: Shutdown,
        on_drop: Option<Shutdown>,
    ) -> Result<Self> {
        Ok(Self {
            server: None,
            supervisor: Supervisor::start(name)?,
            dir,
            port: processes::free_port()?,
            startup: Duration::ZERO,
            log_name,
            admin,
            stop,
            on_drop,
        })
    }

    /// The administrator login the server was set up with.
    pub fn admin_user(&self) -> &str {
        &self.admin.user
    }

    /// The administrator's password (random, letters and digits).
    pub fn admin_password(&self) -> &str {
        &self.admin.password
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(self.log_name)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(ServerProcess::pid)
    }

    /// Time from `start` to the first login.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// True while the server runs.
    pub fn is_running(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.has_exited())
    }

    /// Asks the server to shut down (PostgreSQL: SIGINT, a fast shutdown
    /// with a checkpoint, SIGKILL after 10 s; MariaDB: SIGTERM, SIGKILL
    /// after 10 s; FerretDB and versitygw: SIGTERM, SIGKILL after 5 s). Data
    /// stays; the server's `start_again` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop(self.stop.signal, self.stop.grace);
        }
    }

    /// SIGKILL at once (a crash): nothing is flushed or cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            match self.on_drop {
                Some(shutdown) => server.stop(shutdown.signal, shutdown.grace),
                None => server.kill(),
            }
        }
        self.dir.close();
    }
}

/// `Deref` and `DerefMut` from a server to its [`Instance`], and a `Debug`
/// that shows the instance.
macro_rules! instance {
    ($server:ty) => {
        impl std::fmt::Debug for $server {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($server))
                    .field("port", &self.port())
                    .field("dir", &self.dir())
                    .field("pid", &self.pid())
                    .finish()
            }
        }
        impl std::ops::Deref for $server {
            type Target = $crate::servers::Instance;
            fn deref(&self) -> &Self::Target {
                &self.instance
            }
        }
        impl std::ops::DerefMut for $server {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.instance
            }
        }
    };
}
pub(super) use instance;

/// The temporary folder of one server, owned by the user the server runs as.
#[derive(Debug)]
pub(crate) struct ServerDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    owner: Option<(u32, u32)>,
}

impl ServerDir {
    pub(crate) fn create(kind: &str, owner: Option<(u32, u32)>) -> Result<ServerDir> {
        let parent = std::env::temp_dir();
        remove_stale_dirs(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{kind}-"))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a {kind} folder in {}", parent.display()))?;
        let path = dir.path().to_owned();
        std::fs::write(path.join(OWNER_FILE), std::process::id().to_string())?;
        let server_dir = ServerDir {
            dir: Some(dir),
            path,
            owner,
        };
        server_dir.chown(&server_dir.path)?;
        Ok(server_dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Gives `path` to the server's user (no-op when not running as root).
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes a file the server's user can read (mode 0600).
    pub(crate) fn write_private(&self, name: &str, contents: &str) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(contents.as_bytes())?;
        self.chown(&path)?;
        Ok(path)
    }

    /// A command for `binary` that runs as the server's user, in the
    /// folder, in its own process group, dying with the test process, with
    /// output appended to `log`.
    pub(crate) fn command(&self, binary: &Path, args: &[String], log: &Path) -> Result<Command> {
        let mut command = processes::command(binary, args, log)?;
        command.current_dir(&self.path).env("HOME", &self.path);
        if let Some((uid, gid)) = self.owner {
            // std switches the ids (and drops supplementary groups) before
            // the pre_exec hook runs, so PR_SET_PDEATHSIG, which a change of
            // credentials would clear, is set afterwards and stays.
            command.uid(uid).gid(gid);
        }
        Ok(command)
    }

    pub(crate) fn close(&mut self) {
        if let Some(dir) = self.dir.take() {
            if cleanup() {
                let _ = dir.close();
            } else {
                let _ = dir.keep();
            }
        }
    }
}

impl Drop for ServerDir {
    fn drop(&mut self) {
        self.close();
    }
}

/// Removes folders left behind by test processes that died without dropping
/// their servers (the servers died with them, by PDEATHSIG).
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        // Folders without an owner file may be in the middle of creation.
        if owner.is_some_and(|pid| !processes::pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A child process (a server or a setup tool such as initdb) that leads its
/// own process group. Dropping it kills the group and reaps the child.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
    reaped: bool,
}

impl ServerProcess {
    /// Forks `command` from `supervisor`'s thread.
    pub(crate) async fn spawn(
        supervisor: &Supervisor,
        name: &'static str,
        command: Command,
        log: &Path,
    ) -> Result<ServerProcess> {
        let program = command.get_program().to_owned();
        let child = supervisor
            .spawn(command)
            .await
            .with_context(|| format!("starting {name} ({})", program.to_string_lossy()))?;
        Ok(ServerProcess {
            name,
            child,
            log: log.to_owned(),
            reaped: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// True once the leader has exited. Does not reap it, so its process
    /// group id cannot be reused while we may still signal the group.
    pub(crate) fn has_exited(&self) -> bool {
        if self.reaped {
            return true;
        }
        // SAFETY: waitid writes into the zeroed siginfo we own.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            // ECHILD: already reaped (cannot happen through this type).
            rc != 0 || info.si_pid() != 0
        }
    }

    /// The exit status, reaping the child, once it has exited.
    fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        if !self.has_exited() {
            return None;
        }
        self.kill_group();
        let status = self.child.wait().ok();
        self.reaped = true;
        status
    }

    /// Fails with the end of the log if the process has exited.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        if self.has_exited() {
            let status = self
                .try_status()
                .map_or_else(|| "exited".to_owned(), |s| s.to_string());
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                processes::log_tail(&self.log, 50)
            );
        }
        Ok(())
    }

    /// Waits (polling, without blocking the runtime) for a setup tool to
    /// finish; fails with its log on a non-zero exit or after `timeout`.
    pub(crate) async fn wait_success(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                if status.success() {
                    return Ok(());
                }
                bail!(
                    "{} failed ({status}); last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    processes::log_tail(&self.log, 50)
                );
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "{} did not finish within {}s; last lines of {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display(),
                    processes::log_tail(&self.log, 50)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        if self.reaped {
            return;
        }
        // SAFETY: kill(2) has no memory-safety requirements. The leader is
        // not reaped yet, so the group id still belongs to it.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), signal);
        }
    }

    fn kill_group(&self) {
        self.signal_group(libc::SIGKILL);
    }

    /// Sends `signal` to the leader only (servers shut their workers down
    /// themselves), waits up to `grace`, then SIGKILLs the whole group and
    /// reaps the leader.
    pub(crate) fn stop(&mut self, signal: libc::c_int, grace: Duration) {
        if self.reaped {
            return;
        }
        if !self.has_exited() {
            // SAFETY: see signal_group.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
            let deadline = Instant::now() + grace;
            while !self.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// SIGKILL to the group and to every descendant (PostgreSQL's workers
    /// leave the group: each calls setsid), then reap.
    pub(crate) fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // Scanned while the leader is alive (or an unreaped zombie), so its
        // children are still its children.
        let descendants = descendants(self.child.id());
        self.kill_group();
        for pid in descendants {
            // SAFETY: kill(2) has no memory-safety requirements.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PIDs of the live descendants of `pid` (children, their children, ...).
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the parenthesised name: state, ppid, ...
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace());
        let state = fields.as_mut().and_then(Iterator::next);
        let ppid = fields
            .as_mut()
            .and_then(Iterator::next)
            .and_then(|p| p.parse::<u32>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid)
            && state != "Z"
            && state != "X"
        {
            parent_of.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Polls `check` every 50 ms until it succeeds; fails early with the log if
/// `process` exits, and after `timeout` with the last error and the log.
pub(crate) async fn wait_ready<T>(
    process: &mut ServerProcess,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        process
            .ensure_running()
            .with_context(|| format!("waiting for {what}"))?;
        // A single attempt must not eat the whole budget.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        let last_error = match tokio::time::timeout(budget, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error,
            Err(_) => anyhow::anyhow!("attempt timed out after {budget:?}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "timed out after {}s waiting for {what} (last error: {last_error:#}); last lines of {}:\n{}",
                timeout.as_secs(),
                process.log_path().display(),
                processes::log_tail(process.log_path(), 50)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True if an error says the port was taken (retry with another port).
pub(crate) fn is_port_clash(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}").to_ascii_lowercase();
    text.contains("address already in use")
}

/// Runs `start` up to three times while it fails because its port was taken
/// by someone else between probing and binding.
/// Installs `component` if it is missing (`hack/servers/install.sh`), then
/// starts it with `start`, retrying a start that lost its port to another
/// process.
pub(super) async fn install_and_start<T>(
    component: Component,
    what: &str,
    start: impl AsyncFnMut() -> Result<T>,
) -> Result<T> {
    tokio::task::spawn_blocking(move || install::ensure(&[component]))
        .await
        .context("install task panicked")??;
    retry_port_clash(what, start).await
}

pub(crate) async fn retry_port_clash<T>(
    what: &str,
    mut start: impl AsyncFnMut() -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match start().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < 3 && is_port_clash(&error) => {
                eprintln!("testkit: port clash while starting {what}, retrying: {error:#}");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Default time a server gets to accept its first authenticated connection.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
