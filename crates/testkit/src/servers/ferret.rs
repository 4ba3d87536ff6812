//! [`Ferret`]: a private FerretDB server, our stand-in for MongoDB.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use mongodb::bson::doc;

use super::install::{self, Component};
use super::process::{self, Admin, HOST, Instance, ServerDir, ServerProcess, Shutdown};

const ADMIN_USER: &str = "admin";
const ADMIN_DATABASE: &str = "admin";

/// A FerretDB server (MongoDB wire protocol; built by
/// `hack/servers/install.sh` into [`install::ferretdb_bin`]) with the SQLite
/// backend in its own temporary folder, on `127.0.0.1:<free port>`.
///
/// Authentication is on (`--test-enable-new-auth`: SCRAM-SHA-256 and
/// SCRAM-SHA-1, users stored by FerretDB); the admin user `admin` in
/// database `admin` is created at first start (`--setup-username`). Every
/// command but the handshake and authentication needs a login.
///
/// install.sh builds FerretDB with a one-line patch: the SCRAM conversation
/// ends (`done: true`) with the server's final message, as on MongoDB 4.4+.
/// Unpatched 1.24 waits for an extra empty `saslContinue` that the Rust
/// driver (mongodb 3.9+) no longer sends ("expected SCRAM authentication to
/// have completed"); drivers that still send it keep working.
///
/// FerretDB 1.24 has users but no authorization: `createUser` needs
/// `roles: []` (non-empty roles, `customData`, `createRole` and
/// `grantRolesToUser` are not implemented) and any authenticated user may
/// read and write every database.
///
/// Dropping it kills the server and removes the folder (`TESTKIT_KEEP_DIR=1`
/// keeps it); the server also dies with the test process (PDEATHSIG).
pub struct Ferret {
    instance: Instance,
    binary: PathBuf,
}

process::instance!(Ferret);

impl Ferret {
    /// Starts ferretdb; returns once the admin user can authenticate with
    /// SCRAM-SHA-256 and run a command. Runs `hack/servers/install.sh` first
    /// if the FerretDB binary is not in the cache (builds it with Go).
    pub async fn start() -> Result<Ferret> {
        process::install_and_start(Component::Ferretdb, "ferretdb", Ferret::start_once).await
    }

    async fn start_once() -> Result<Ferret> {
        let started = Instant::now();
        // FerretDB does not mind root, and the cache under root's home may
        // be closed to other users: it runs as the current user.
        let dir = ServerDir::create("ferretdb", None)?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let mut ferret = Ferret {
            instance: Instance::new(
                "ferretdb",
                dir,
                "ferretdb.log",
                Admin::generated(ADMIN_USER),
                Shutdown {
                    signal: libc::SIGTERM,
                    grace: Duration::from_secs(5),
                },
                None,
            )?,
            binary: install::ferretdb_bin(),
        };
        ferret.launch().await?;
        ferret.startup = started.elapsed();
        Ok(ferret)
    }

    async fn launch(&mut self) -> Result<()> {
        let root = self.dir.path();
        let log = self.log_path();
        let args: Vec<String> = vec![
            "--handler=sqlite".to_owned(),
            format!("--sqlite-url=file:{}/", self.data_dir().display()),
            format!("--state-dir={}", root.display()),
            format!("--listen-addr={HOST}:{}", self.port),
            // No debug/metrics listener: the default port would clash.
            "--debug-addr=-".to_owned(),
            "--telemetry=disable".to_owned(),
            "--test-enable-new-auth".to_owned(),
            // Only used when the database does not exist yet (first start).
            format!("--setup-database={ADMIN_DATABASE}"),
            format!("--setup-username={ADMIN_USER}"),
            format!("--setup-password={}", self.admin_password()),
            "--log-level=info".to_owned(),
        ];
        let command = self.dir.command(&self.binary, &args, &log)?;
        let mut server = ServerProcess::spawn(&self.supervisor, "ferretdb", command, &log).await?;
        let uri = self.uri();
        let port = self.port;
        let client = process::wait_ready(
            &mut server,
            &format!("ferretdb on {HOST}:{port} to accept a SCRAM-SHA-256 login"),
            process::START_TIMEOUT,
            async || {
                // Cheap first: the driver would wait out its server
                // selection timeout on a port nobody listens on yet.
                tokio::net::TcpStream::connect((HOST, port)).await?;
                let client = client_for(&uri).await?;
                // Needs authentication, unlike ping and hello.
                client
                    .database(ADMIN_DATABASE)
                    .run_command(doc! { "connectionStatus": 1 })
                    .await?;
                client
                    .database(ADMIN_DATABASE)
                    .run_command(doc! { "listDatabases": 1 })
                    .await?;
                Ok(client)
            },
        )
        .await?;
        client.shutdown().await;
        self.server = Some(server);
        Ok(())
    }

    /// A client authenticated as the admin user.
    pub async fn client(&self) -> Result<mongodb::Client> {
        client_for(&self.uri()).await
    }

    /// `admin`: the database the admin user is defined in (authSource).
    pub fn admin_database(&self) -> &str {
        ADMIN_DATABASE
    }

    /// `mongodb://admin:<password>@127.0.0.1:<port>/?authSource=admin&authMechanism=SCRAM-SHA-256&directConnection=true`.
    pub fn uri(&self) -> String {
        self.uri_for(ADMIN_USER, self.admin_password(), ADMIN_DATABASE)
    }

    /// The URI for another user (alphanumeric names and passwords; others
    /// need percent-encoding).
    pub fn uri_for(&self, user: &str, password: &str, auth_source: &str) -> String {
        format!(
            "mongodb://{user}:{password}@{HOST}:{}/?authSource={auth_source}&authMechanism=SCRAM-SHA-256&directConnection=true",
            self.port
        )
    }

    /// The ferretdb binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// FerretDB version, e.g. `v1.24.2`.
    pub fn version(&self) -> &'static str {
        install::ferretdb_version()
    }

    /// SQLite files, one per database.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the stopped server again (same port, data and users).
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }
}

async fn client_for(uri: &str) -> Result<mongodb::Client> {
    let mut options = mongodb::options::ClientOptions::parse(uri).await?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.connect_timeout = Some(Duration::from_secs(5));
    options.app_name = Some("testkit".to_owned());
    Ok(mongodb::Client::with_options(options)?)
}
