//! The backup agent: `database-operator agent backup|restore|prune|verify`.
//!
//! Runs in the backup Job's pod (or anywhere with the engine's client tools)
//! and moves logical dumps between a database server and an S3 bucket:
//!
//! - **backup** streams a consistent logical dump (PostgreSQL: `pg_dumpall
//!   --clean --if-exists`; MySQL/MariaDB: `mysqldump`/`mariadb-dump
//!   --single-transaction --all-databases …`; MongoDB: the agent's own
//!   archive, see [`archive`]) through zstd and SHA-256 into an S3 multipart
//!   upload in parts of 8 MiB, never staging the dump on disk, and writes
//!   `<prefix>/<key>/manifest.json` last (see [`manifest`]). A backup is
//!   complete only if its manifest exists.
//! - **restore** checks the stored object's size and SHA-256 against the
//!   manifest in a first streaming pass, then streams it again into `psql`,
//!   `mysql`/`mariadb` or the MongoDB driver; it refuses a server that holds
//!   user data unless `--force`.
//! - **prune** applies a retention (`7d`, `12h`, `4w` or a count `10`),
//!   never deleting the newest complete backup (see [`retention`]).
//! - **verify** restores into a throwaway server and compares row counts per
//!   table/collection with the counts the manifest recorded at backup time.
//!
//! Secrets come only from the environment (`DB_USER`, `DB_PASSWORD`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) and are cut out of every
//! message. Progress goes to stderr; stdout carries exactly one JSON line on
//! success, which is also written to `--termination-log`.
//!
//! Exit codes: 0 success; 1 any other failure; 2 bad usage; 3 S3 refused the
//! credentials; 4 the database refused the credentials; 5 integrity (missing
//! manifest, checksum or size mismatch, truncated or corrupt object, row
//! counts differ); 6 restore refused because the target holds user data.

pub mod archive;
pub mod backup;
pub mod catalog;
pub mod engines;
pub mod manifest;
pub mod pipeline;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod store;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use database_operator_api::agent::FailureReport;
use database_operator_api::v1::Engine;
use serde::Serialize;

/// `database-operator agent …`
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Stream a logical dump of every database to S3, then write its manifest.
    Backup(BackupArgs),
    /// Check a backup's checksum, then restore it into the server.
    Restore(RestoreArgs),
    /// Delete backups beyond the retention (never the newest complete one).
    Prune(PruneArgs),
    /// Restore into a throwaway server and compare row counts with the manifest.
    Verify(RestoreArgs),
}

/// `--engine`: the API's engine names.
fn parse_engine(name: &str) -> std::result::Result<Engine, String> {
    name.parse()
}

/// Where the database is. The login comes from `DB_USER` / `DB_PASSWORD`.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// postgresql, mysql or mongodb.
    #[arg(long, env = "DB_ENGINE", value_parser = parse_engine)]
    pub engine: Engine,
    /// Host of the database server.
    #[arg(long, env = "DB_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// `backup` only: where to dump from when `--host` does not answer (the
    /// primary, when `--host` is the replicas' Service).
    #[arg(long, env = "DB_FALLBACK_HOST")]
    pub fallback_host: Option<String>,
    /// Port (the engine's default when absent).
    #[arg(long, env = "DB_PORT")]
    pub port: Option<u16>,
    /// MongoDB: the database the user is defined in.
    #[arg(long, env = "DB_AUTH_DATABASE", default_value = "admin")]
    pub auth_database: String,
    /// Folder with pg_dumpall/psql or mysqldump/mariadb-dump/mysql/mariadb
    /// (PATH when absent).
    #[arg(long, env = "DB_TOOLS_DIR")]
    pub tools_dir: Option<PathBuf>,
}

/// Where the backups are. Credentials come from `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` (or the pod's identity when absent).
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    #[arg(long, env = "S3_BUCKET")]
    pub bucket: String,
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub region: String,
    /// URL of an S3-compatible server (AWS when absent).
    #[arg(long, env = "S3_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Key prefix under which this database's backups live.
    #[arg(long, env = "S3_PREFIX", default_value = "")]
    pub prefix: String,
    /// Address the bucket as endpoint/bucket instead of bucket.endpoint.
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub force_path_style: bool,
    /// How long one S3 request is retried before the agent gives up.
    #[arg(long, env = "S3_RETRY_TIMEOUT_SECONDS", default_value_t = 60)]
    pub s3_retry_timeout_seconds: u64,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Where the result JSON (or the error) is also written, for the pod's
    /// status. backup, restore and verify default to /dev/termination-log
    /// when it is writable; prune writes only where this says, so that it
    /// never replaces the backup's result in the same pod.
    #[arg(long, env = "TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Name of the backup under the prefix (default: UTC timestamp
    /// YYYYMMDDTHHMMSSZ).
    #[arg(long)]
    pub key_name: Option<String>,
    /// zstd level: 1..19, or -7..-1 for zstd's faster levels.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-7..=19))]
    pub compression_level: i32,
    /// zstd worker threads beside the task that reads and uploads (0, the
    /// default: compress in that task, which measured fastest on two cores).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=8))]
    pub compression_workers: u32,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The backup to restore.
    #[arg(long, required_unless_present = "latest")]
    pub key_name: Option<String>,
    /// Restore the newest complete backup under the prefix instead (what a
    /// restore drill checks).
    #[arg(long, conflicts_with = "key_name")]
    pub latest: bool,
    /// Restore even into a server that already holds user data (the dump
    /// drops and recreates what it contains).
    #[arg(long)]
    pub force: bool,
}

/// The database flags, accepted by `prune` so that one argument list serves
/// every subcommand (the backup Job passes the same list to backup and
/// prune); prune never connects to the database.
#[derive(Args, Debug, Clone)]
pub struct UnusedDbArgs {
    #[arg(long, hide = true, value_parser = parse_engine)]
    pub engine: Option<Engine>,
    #[arg(long, hide = true)]
    pub host: Option<String>,
    #[arg(long, hide = true)]
    pub port: Option<u16>,
    #[arg(long, hide = true)]
    pub auth_database: Option<String>,
    #[arg(long, hide = true)]
    pub tools_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub unused_db: UnusedDbArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// 12h, 7d, 4w (age) or 10 (count of complete backups to keep).
    #[arg(long, env = "BACKUP_RETENTION")]
    pub retention: String,
    /// Pretend it is this time (RFC 3339), for drills and tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
    /// Only print what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// What went wrong, by what the user must do about it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Usage(String),
    #[error("S3 refused the credentials: {0}")]
    S3Auth(String),
    #[error("S3: {0}")]
    S3(String),
    #[error("the database refused the login: {0}")]
    DbAuth(String),
    #[error("database: {0}")]
    Db(String),
    #[error("{0}")]
    Tool(String),
    #[error("integrity: {0}")]
    Integrity(String),
    #[error("refused: {0}")]
    NotEmpty(String),
    #[error("{0}")]
    Other(String),
}

impl AgentError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage(_) => 2,
            AgentError::S3Auth(_) => 3,
            AgentError::DbAuth(_) => 4,
            AgentError::Integrity(_) => 5,
            AgentError::NotEmpty(_) => 6,
            _ => 1,
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(self, what: &str) -> AgentError {
        let wrap = |m: String| format!("{what}: {m}");
        match self {
            AgentError::Usage(m) => AgentError::Usage(wrap(m)),
            AgentError::S3Auth(m) => AgentError::S3Auth(wrap(m)),
            AgentError::S3(m) => AgentError::S3(wrap(m)),
            AgentError::DbAuth(m) => AgentError::DbAuth(wrap(m)),
            AgentError::Db(m) => AgentError::Db(wrap(m)),
            AgentError::Tool(m) => AgentError::Tool(wrap(m)),
            AgentError::Integrity(m) => AgentError::Integrity(wrap(m)),
            AgentError::NotEmpty(m) => AgentError::NotEmpty(wrap(m)),
            AgentError::Other(m) => AgentError::Other(wrap(m)),
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The secrets of this run, read from the environment only.
#[derive(Clone, Default)]
pub struct Secrets {
    pub db_user: Option<String>,
    pub db_password: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("db_user", &self.db_user)
            .field("db_password", &"<redacted>")
            .finish()
    }
}

impl Secrets {
    pub fn from_env() -> Secrets {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Secrets {
            db_user: get("DB_USER"),
            db_password: get("DB_PASSWORD"),
        }
    }

    /// The login, or the engine's usual admin when `DB_USER` is unset.
    pub fn user(&self, engine: Engine) -> String {
        self.db_user.clone().unwrap_or_else(|| {
            match engine {
                Engine::Postgresql => "postgres",
                Engine::Mysql => "root",
                Engine::Mongodb => "admin",
            }
            .to_owned()
        })
    }

    pub fn password(&self) -> &str {
        self.db_password.as_deref().unwrap_or_default()
    }
}

/// Cuts every secret of the environment out of a message.
pub fn redact(message: &str) -> String {
    let mut out = message.to_owned();
    for key in ["DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(secret) = std::env::var(key)
            && secret.len() >= 3
        {
            out = out.replace(&secret, "<redacted>");
        }
    }
    // One line: the operator shows it in a status field.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The backup this run works on, once known, so that an error report names
/// it too (a drill that fails must be recorded on the backup it tried).
static SUBJECT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records which backup this run works on.
pub(crate) fn set_subject(key: &str) {
    if let Ok(mut subject) = SUBJECT.lock() {
        *subject = Some(key.to_owned());
    }
}

fn take_subject() -> Option<String> {
    SUBJECT.lock().ok().and_then(|mut s| s.take())
}

/// Runs an agent command; returns the process exit code.
pub async fn run(args: AgentArgs) -> i32 {
    take_subject();
    let (output, default_log) = match &args.command {
        AgentCommand::Backup(a) => (a.output.clone(), true),
        AgentCommand::Restore(a) | AgentCommand::Verify(a) => (a.output.clone(), true),
        AgentCommand::Prune(a) => (a.output.clone(), false),
    };
    let result = match args.command {
        AgentCommand::Backup(a) => backup::run(a).await.map(|r| report_line(&r)),
        AgentCommand::Restore(a) => restore::run(a, false).await.map(|r| report_line(&r)),
        AgentCommand::Verify(a) => restore::run(a, true).await.map(|r| report_line(&r)),
        AgentCommand::Prune(a) => prune::run(a).await.map(|r| report_line(&r)),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            write_termination_log(&output, default_log, &line);
            0
        }
        Err(e) => {
            let message = redact(&format!("error: {e}"));
            eprintln!("{message}");
            let line = report_line(&FailureReport {
                error: message,
                key_name: take_subject(),
            });
            write_termination_log(&output, default_log, &line);
            e.exit_code()
        }
    }
}

/// The report as the one line the agent prints ([`database_operator_api::agent`]).
fn report_line(report: &impl Serialize) -> String {
    serde_json::to_string(report).expect("a report serialises to JSON")
}

const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

fn write_termination_log(output: &OutputArgs, use_default: bool, line: &str) {
    match &output.termination_log {
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{line}\n")) {
                eprintln!("warning: cannot write {}: {e}", path.display());
            }
        }
        None if !use_default => {}
        None => {
            // Only when it is there and writable (inside a pod).
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(DEFAULT_TERMINATION_LOG)
            {
                let _ = std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes());
            }
        }
    }
}

/// A progress line on stderr.
pub(crate) fn progress(message: impl AsRef<str>) {
    eprintln!("agent: {}", redact(message.as_ref()));
}

/// The current time, RFC 3339 with seconds precision.
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
