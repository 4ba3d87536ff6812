//! [`Postgres`]: a private PostgreSQL server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::install::{self, Component};
use super::process::{self, Admin, HOST, Instance, ServerDir, ServerProcess, Shutdown};

const ADMIN_USER: &str = "postgres";

/// A PostgreSQL server (Debian's package, `/usr/lib/postgresql/<major>`) on
/// `127.0.0.1:<free port>` with its data, unix socket and log in its own
/// temporary folder.
///
/// TCP logins use scram-sha-256 (`host all` and `host replication` from
/// 127.0.0.1/32); the superuser is `postgres` with a generated password.
/// Unix-socket logins (socket in [`Postgres::socket_dir`], folder mode 0700)
/// are trusted. When the tests run as root the server runs as the system
/// user `dbtest`, since PostgreSQL refuses root.
///
/// Dropping it stops the server (immediate shutdown, then SIGKILL) and
/// removes the folder (`TESTKIT_KEEP_DIR=1` keeps it). The postmaster dies
/// with the test process (PDEATHSIG); its workers, which PostgreSQL puts in
/// sessions of their own, exit when they see the postmaster gone.
pub struct Postgres {
    instance: Instance,
    bin_dir: PathBuf,
    /// Set when the server starts through the operator's instance script.
    member: Option<Member>,
}

/// How a server of a replicated cluster starts: through the operator's
/// instance script, as a pod's container command runs it, with the pod's
/// role label in a file standing for the downward API volume.
#[derive(Clone, Debug)]
pub struct Member {
    /// The script (the operator's `postgresql-instance.sh`).
    pub script: PathBuf,
    /// The pod's `example.com/role` label: `primary` or `replica`.
    pub role: String,
    /// Its environment besides `PGDATA`, `ROLE_FILE` and `PATH`, which
    /// the server sets (`POD_NAME`, `PRIMARY_HOST`, ...).
    pub env: Vec<(String, String)>,
    /// A program and its options that run the script as the pod's
    /// container command does: the operator's in-pod supervisor
    /// (`database-operator instance ... --`), which writes the role file
    /// from the API itself. Empty: the script runs alone.
    pub supervisor: Vec<String>,
}

impl Member {
    /// Writes the pod's role label into `dir/labels`, as the downward API
    /// volume holds it, and returns the file.
    pub(crate) fn write_labels(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("labels");
        std::fs::write(&path, format!("example.com/role=\"{}\"\n", self.role))
            .context("writing the role label")?;
        Ok(path)
    }
}

process::instance!(Postgres);

/// A PostgreSQL server's folder and process, not started: fast shutdown
/// (SIGINT) to stop it, immediate shutdown (SIGQUIT) when dropped.
fn instance(admin: Admin) -> Result<Instance> {
    let dir = ServerDir::create("postgres", install::server_user()?)?;
    Instance::new(
        "postgres",
        dir,
        "postgres.log",
        admin,
        Shutdown {
            signal: libc::SIGINT,
            grace: Duration::from_secs(10),
        },
        Some(Shutdown {
            signal: libc::SIGQUIT,
            grace: Duration::from_secs(5),
        }),
    )
}

impl Postgres {
    /// initdb + postgres; returns once the superuser can log in over TCP
    /// with its password. Runs `hack/servers/install.sh` first if PostgreSQL
    /// (or, as root, the `dbtest` user) is missing.
    pub async fn start() -> Result<Postgres> {
        Postgres::start_configured("").await
    }

    /// As [`Postgres::start`], with `settings` added to `postgresql.conf`
    /// (the operator's replication settings, which replicas copy).
    pub async fn start_configured(settings: &str) -> Result<Postgres> {
        let settings = settings.to_owned();
        process::install_and_start(Component::Postgres, "postgres", async move || {
            Postgres::start_once(&settings).await
        })
        .await
    }

    async fn start_once(extra_settings: &str) -> Result<Postgres> {
        let started = Instant::now();
        let bin_dir = install::postgres_bin_dir().with_context(|| {
            format!(
                "PostgreSQL not found in /usr/lib/postgresql/<major>/bin; run {}",
                install::install_script().display()
            )
        })?;
        let mut postgres = Postgres {
            instance: instance(Admin::generated(ADMIN_USER))?,
            bin_dir,
            member: None,
        };
        postgres.init(extra_settings).await?;
        postgres.launch().await?;
        postgres.startup = started.elapsed();
        Ok(postgres)
    }

    async fn init(&mut self, extra_settings: &str) -> Result<()> {
        let root = self.dir.path().to_owned();
        let pwfile = self.dir.write_private("pwfile", self.admin_password())?;
        let args: Vec<String> = [
            "--pgdata",
            &self.data_dir().to_string_lossy(),
            "--username",
            ADMIN_USER,
            "--pwfile",
            &pwfile.to_string_lossy(),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let log = root.join("initdb.log");
        let command = self
            .dir
            .command(&self.bin_dir.join("initdb"), &args, &log)?;
        let mut initdb = ServerProcess::spawn(&self.supervisor, "initdb", command, &log).await?;
        initdb.wait_success(Duration::from_secs(120)).await?;
        let _ = std::fs::remove_file(&pwfile);

        let data = self.data_dir();
        std::fs::write(
            data.join("pg_hba.conf"),
            "# Written by database_operator_testkit::servers::Postgres.\n\
             local all all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host replication all 127.0.0.1/32 scram-sha-256\n",
        )
        .context("writing pg_hba.conf")?;
        // In postgresql.conf rather than on the command line, so ALTER
        // SYSTEM can still override them and a restart keeps them.
        let settings = format!(
            "\n# Added by database_operator_testkit::servers::Postgres.\n\
             listen_addresses = '{HOST}'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             logging_collector = off\n\
             max_connections = 50\n\
             shared_buffers = 32MB\n\
             {extra_settings}",
            port = self.port,
            socket = root.display(),
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .context("opening postgresql.conf")?;
        std::io::Write::write_all(&mut conf, settings.as_bytes())?;
        Ok(())
    }

    /// A cluster member whose data directory starts empty: `member.script`
    /// fills it (a replica copies its primary) and starts the server. Its
    /// superuser is the primary's, `postgres` with `admin_password`, since
    /// a replica's logins are the primary's.
    pub async fn start_member(admin_password: &str, member: Member) -> Result<Postgres> {
        let mut postgres = Postgres::prepare_member(admin_password)?;
        let started = Instant::now();
        postgres.restart_as(member).await?;
        postgres.startup = started.elapsed();
        Ok(postgres)
    }

    /// A member not started yet, with its port: for a test that must name
    /// the address (`--resolve`) before the operator gives the pod a role.
    /// [`Postgres::restart_as`] starts it.
    pub fn prepare_member(admin_password: &str) -> Result<Postgres> {
        install::ensure(&[Component::Postgres])?;
        let bin_dir = install::postgres_bin_dir().context("PostgreSQL not installed")?;
        Ok(Postgres {
            instance: instance(Admin {
                user: ADMIN_USER.to_owned(),
                password: admin_password.to_owned(),
            })?,
            bin_dir,
            member: None,
        })
    }

    /// Stops the server (fast shutdown) and starts it again through
    /// `member`: a pod restarted, perhaps with another role.
    pub async fn restart_as(&mut self, member: Member) -> Result<()> {
        self.stop();
        member.write_labels(self.dir.path())?;
        self.member = Some(member);
        self.launch().await
    }

    async fn launch(&mut self) -> Result<()> {
        let log = self.log_path();
        let mut args = vec![
            "-D".to_owned(),
            self.data_dir().to_string_lossy().into_owned(),
        ];
        let command = if let Some(member) = &self.member {
            // The copy of a primary's data has the primary's settings: the
            // command line overrides them.
            let socket = self.dir.path().display().to_string();
            for setting in [
                format!("port={}", self.port),
                format!("listen_addresses={HOST}"),
                format!("unix_socket_directories={socket}"),
            ] {
                args.extend(["-c".to_owned(), setting]);
            }
            let mut script_args = vec![
                "/bin/sh".to_owned(),
                member.script.display().to_string(),
                self.bin_dir.join("postgres").display().to_string(),
            ];
            script_args.extend(args);
            let mut line = member.supervisor.clone();
            line.extend(script_args);
            let mut command = self.dir.command(Path::new(&line[0]), &line[1..], &log)?;
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("PGDATA", self.data_dir())
                .env("ROLE_FILE", self.dir.path().join("labels"))
                .env("PATH", format!("{}:{path}", self.bin_dir.display()))
                .envs(member.env.iter().map(|(k, v)| (k, v)));
            command
        } else {
            self.dir
                .command(&self.bin_dir.join("postgres"), &args, &log)?
        };
        let mut server = ServerProcess::spawn(&self.supervisor, "postgres", command, &log).await?;
        let config = self.config();
        let port = self.port;
        process::wait_ready(
            &mut server,
            &format!("postgres on {HOST}:{port} to accept a scram-sha-256 login"),
            process::START_TIMEOUT,
            async || {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                let connection = tokio::spawn(connection);
                client.simple_query("SELECT 1").await?;
                drop(client);
                let _ = connection.await;
                Ok(())
            },
        )
        .await?;
        self.server = Some(server);
        Ok(())
    }

    /// Connection settings for the superuser over TCP.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(ADMIN_USER)
            .password(self.admin_password())
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// A superuser client over TCP; its connection runs as a task on the
    /// current tokio runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to postgres on {HOST}:{}", self.port))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{ADMIN_USER}:{}@{HOST}:{}/postgres",
            self.admin_password(),
            self.port
        )
    }

    /// PostgreSQL's bin folder, e.g. `/usr/lib/postgresql/15/bin` (psql,
    /// pg_dump, pg_dumpall, pg_isready, pg_ctl, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Folder holding `.s.PGSQL.<port>`; pass it as `host` for socket logins.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `PGDATA`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the stopped server again (same port, data and password).
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }
}
