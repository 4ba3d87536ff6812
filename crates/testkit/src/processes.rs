//! Child processes of a cluster and the thread that owns them.
//!
//! Children are started with `PR_SET_PDEATHSIG = SIGKILL` so they die when
//! the test process dies, even by SIGKILL. The kernel sends that signal when
//! the *thread* that forked the child exits, not the process; so every child
//! is forked by the cluster's [`Supervisor`] thread, which lives exactly as
//! long as the `Cluster`. The same thread runs a small tokio runtime for the
//! cluster's background tasks (the volume provisioner), so those outlive the
//! runtime of whichever test created the cluster.
//!
//! Each child leads its own process group, so a stop signal reaches anything
//! it may have forked too.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Request {
    Spawn(Box<Command>, oneshot::Sender<io::Result<Child>>),
    Task(Task),
}

/// Dedicated thread that forks the children and runs background tasks.
pub struct Supervisor {
    tx: Option<mpsc::UnboundedSender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    pub fn start(name: &str) -> Result<Supervisor> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building supervisor runtime")?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(request) = rx.recv().await {
                        match request {
                            Request::Spawn(mut command, reply) => {
                                let _ = reply.send(command.spawn());
                            }
                            Request::Task(task) => {
                                tokio::spawn(task);
                            }
                        }
                    }
                });
                // Dropping the runtime here cancels the background tasks.
            })
            .context("starting supervisor thread")?;
        Ok(Supervisor {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Forks `command` from the supervisor thread.
    pub async fn spawn(&self, command: Command) -> Result<Child> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Request::Spawn(Box::new(command), reply))
            .map_err(|_| anyhow!("supervisor thread is gone"))?;
        Ok(rx.await.context("supervisor thread is gone")??)
    }

    /// Runs `task` on the supervisor's runtime until the supervisor stops.
    pub fn run_task(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        self.sender()?
            .send(Request::Task(Box::pin(task)))
            .map_err(|_| anyhow!("supervisor thread is gone"))
    }

    fn sender(&self) -> Result<&mpsc::UnboundedSender<Request>> {
        self.tx.as_ref().context("supervisor stopped")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running component.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    exited: bool,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Fails with the end of the component's log if it has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if self.exited {
            bail!("{} is not running", self.name);
        }
        if let Some(status) = self.child.try_wait()? {
            self.exited = true;
            bail!(
                "{} exited early ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 25)
            );
        }
        Ok(())
    }

    fn signal(&self, signal: libc::c_int) {
        // Negative pid: the whole process group the child leads.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety requirements.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Builds the command for a component: own process group, PDEATHSIG,
/// stdin from /dev/null, stdout+stderr appended to `log`.
pub fn command(binary: &Path, args: &[String], log: &Path) -> Result<Command> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid, _exit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    Ok(command)
}

/// Starts `command` via the supervisor and tracks it as `name`.
pub async fn spawn(
    supervisor: &Supervisor,
    name: &'static str,
    command: Command,
    log: &Path,
) -> Result<Process> {
    let program = command.get_program().to_owned();
    let child = supervisor
        .spawn(command)
        .await
        .with_context(|| format!("starting {name} ({})", program.to_string_lossy()))?;
    Ok(Process {
        name,
        child,
        log: log.to_owned(),
        exited: false,
    })
}

/// SIGTERM to every process group, then SIGKILL to what is left after
/// `grace`; reaps every child so no zombie stays behind.
pub fn stop_all(processes: &mut [Process], grace: Duration) {
    for p in processes.iter_mut() {
        if !p.exited && matches!(p.child.try_wait(), Ok(None)) {
            p.signal(libc::SIGTERM);
        } else {
            p.exited = true;
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut running = false;
        for p in processes.iter_mut().filter(|p| !p.exited) {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => p.exited = true,
                Ok(None) => running = true,
            }
        }
        if !running || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in processes.iter_mut().filter(|p| !p.exited) {
        p.signal(libc::SIGKILL);
        let _ = p.child.wait();
        p.exited = true;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Ports are handed out once per process, so clusters started concurrently in
/// one test binary never get the same port. Across processes the kernel's
/// ephemeral port choice makes clashes unlikely; `Cluster::start` retries
/// when a component reports "address already in use".
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
        let port = listener.local_addr()?.port();
        let mut used = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port found")
}

/// Last `lines` lines of a log file (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// True if a process with this pid exists (zombies count as gone).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Runs a bash script with no input and its output on the test's stderr
/// (so a long install shows its progress); returns its exit status.
pub fn run_script(script: &Path) -> Result<std::process::ExitStatus> {
    use std::os::fd::AsFd;
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("running {}", script.display()))
}
