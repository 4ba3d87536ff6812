//! Runs the real `database-operator agent` binary against the testkit's S3
//! server and database servers, for the agent's tests.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::servers::{Ferret, Instance, Mariadb, Postgres, S3};
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

pub const BUCKET: &str = "backups";

/// A running S3 server with one bucket.
pub struct Bucket {
    pub s3: S3,
    pub store: AmazonS3,
}

impl Bucket {
    pub async fn start() -> Bucket {
        let s3 = S3::start().await.expect("S3 server");
        s3.create_bucket(BUCKET).await.expect("bucket");
        let store = s3.store(BUCKET).expect("store");
        Bucket { s3, store }
    }

    /// `--bucket … --force-path-style` for this server and a prefix.
    pub fn args(&self, prefix: &str) -> Vec<String> {
        vec![
            "--bucket".into(),
            BUCKET.into(),
            "--region".into(),
            self.s3.region().into(),
            "--endpoint".into(),
            self.s3.endpoint(),
            "--prefix".into(),
            prefix.into(),
            "--force-path-style".into(),
            "--s3-retry-timeout-seconds".into(),
            "5".into(),
        ]
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.s3.access_key().into()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.s3.secret_key().into()),
        ]
    }

    /// Keys of every object under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let p = ObjectPath::from(prefix);
        let mut keys: Vec<String> = self
            .store
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        self.store
            .get(&ObjectPath::from(key))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body")
            .to_vec()
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.store
            .put(&ObjectPath::from(key), bytes.into())
            .await
            .expect("put");
    }
}

/// The agent's result.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must be one JSON line: {:?}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        serde_json::from_str(lines[0]).expect("stdout is JSON")
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "agent failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn failed(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "stdout on failure: {}", self.stdout);
        self
    }
}

fn command(args: &[String], env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(crate::paths::operator_binary());
    cmd.arg("agent").args(args).kill_on_drop(true);
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "DB_USER",
        "DB_PASSWORD",
        "AWS_ENDPOINT",
        "AWS_REGION",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `database-operator agent <args>` with `env`.
pub async fn agent(args: &[String], env: &[(String, String)]) -> Run {
    let out: Output = tokio::time::timeout(
        Duration::from_secs(600),
        command(args, env)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("agent finished within 10 minutes")
    .expect("agent runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "agent {}: exit {}\n{}",
        args.first().map_or("", String::as_str),
        run.code,
        run.stderr.trim_end()
    );
    run
}

/// Spawns the agent without waiting.
pub fn spawn(args: &[String], env: &[(String, String)]) -> tokio::process::Child {
    command(args, env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent spawns")
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// `args` + `rest`.
pub fn with(mut args: Vec<String>, rest: &[&str]) -> Vec<String> {
    args.extend(rest.iter().map(ToString::to_string));
    args
}

/// DB_USER / DB_PASSWORD for a login, plus the bucket's credentials.
pub fn env_for(bucket: &Bucket, user: &str, password: &str) -> Vec<(String, String)> {
    let mut env = bucket.env();
    env.push(("DB_USER".into(), user.into()));
    env.push(("DB_PASSWORD".into(), password.into()));
    env
}

/// A test server the agent can back up, restore and verify.
pub trait AgentServer {
    /// `--engine`.
    fn engine(&self) -> &'static str;
    /// Host, port and admin login.
    fn instance(&self) -> &Instance;
    /// `--tools-dir`, for engines whose client programs the agent runs.
    fn tools_dir(&self) -> Option<&Path> {
        None
    }
}

impl AgentServer for Postgres {
    fn engine(&self) -> &'static str {
        "postgresql"
    }
    fn instance(&self) -> &Instance {
        self
    }
    fn tools_dir(&self) -> Option<&Path> {
        Some(self.bin_dir())
    }
}

impl AgentServer for Mariadb {
    fn engine(&self) -> &'static str {
        "mysql"
    }
    fn instance(&self) -> &Instance {
        self
    }
    fn tools_dir(&self) -> Option<&Path> {
        Some(self.bin_dir())
    }
}

impl AgentServer for Ferret {
    fn engine(&self) -> &'static str {
        "mongodb"
    }
    fn instance(&self) -> &Instance {
        self
    }
}

/// Agent runs against one server and one prefix of the bucket.
pub struct On<'a> {
    bucket: &'a Bucket,
    server: &'a dyn AgentServer,
    prefix: &'a str,
}

impl Bucket {
    /// Agent runs against `server`, with backups under `prefix`.
    pub fn on<'a>(&'a self, server: &'a dyn AgentServer, prefix: &'a str) -> On<'a> {
        On {
            bucket: self,
            server,
            prefix,
        }
    }
}

impl On<'_> {
    /// `<cmd> --engine … --host … --port … [--tools-dir …]`, the bucket's
    /// arguments, then `rest`.
    pub fn args(&self, cmd: &str, rest: &[&str]) -> Vec<String> {
        let instance = self.server.instance();
        let mut args = strings(&[
            cmd,
            "--engine",
            self.server.engine(),
            "--host",
            instance.host(),
            "--port",
            &instance.port().to_string(),
        ]);
        if let Some(tools) = self.server.tools_dir() {
            args.extend(["--tools-dir".into(), tools.display().to_string()]);
        }
        args.extend(self.bucket.args(self.prefix));
        with(args, rest)
    }

    /// The bucket's credentials and the server's admin login.
    pub fn env(&self) -> Vec<(String, String)> {
        let instance = self.server.instance();
        env_for(
            self.bucket,
            instance.admin_user(),
            instance.admin_password(),
        )
    }

    /// Runs `database-operator agent <cmd> … <rest>` as the server's admin.
    /// The arguments are taken at the call: the run borrows nothing.
    pub fn run(&self, cmd: &str, rest: &[&str]) -> impl Future<Output = Run> + use<> {
        let (args, env) = (self.args(cmd, rest), self.env());
        async move { agent(&args, &env).await }
    }
}

/// Non-empty files under `dir`, recursively.
pub fn nonempty_files(dir: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(nonempty_files(&p));
        } else if std::fs::metadata(&p).is_ok_and(|m| m.len() > 0) {
            out.insert(p);
        }
    }
    out
}
