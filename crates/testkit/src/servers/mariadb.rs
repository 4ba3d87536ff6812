//! [`Mariadb`]: a private MariaDB server, and [`Mysql`]: a private MySQL
//! server (Debian sid's, see `hack/servers/install.sh`), the same fixture
//! with the other server's binaries and first start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;

use super::Member;
use super::install::{self, Component};
use super::process::{self, Admin, HOST, Instance, ServerDir, ServerProcess, Shutdown};

const ADMIN_USER: &str = "root";

/// A MariaDB server (Debian's `mariadb-server`) on `127.0.0.1:<free port>`
/// with `--skip-name-resolve`, its data, socket and log in its own temporary
/// folder.
///
/// `root` has a generated password for TCP logins (`root@127.0.0.1` and
/// `root@%`, all privileges with grant option); `root@localhost` accepts
/// the password or the unix socket of the OS user root. When the tests run
/// as root the server runs as the system user `dbtest`.
///
/// Dropping it kills the server and removes the folder (`TESTKIT_KEEP_DIR=1`
/// keeps it); the server also dies with the test process (PDEATHSIG).
pub struct Mariadb {
    kind: Kind,
    instance: Instance,
    mariadbd: PathBuf,
    bin_dir: PathBuf,
    /// Server options after the testkit's own (a later option wins).
    extra_args: Vec<String>,
    /// Set when the server starts through the operator's instance script.
    member: Option<Member>,
}

process::instance!(Mariadb);

/// Which server of the family runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mariadb,
    Mysql,
}

impl Kind {
    fn component(self) -> Component {
        match self {
            Kind::Mariadb => Component::Mariadb,
            Kind::Mysql => Component::Mysql,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Mariadb => "mariadb",
            Kind::Mysql => "mysql",
        }
    }
}

/// A MySQL server (Debian sid's `mysqld`, run beside the system by
/// `hack/servers/install.sh`'s wrappers) on `127.0.0.1:<free port>`: the
/// [`Mariadb`] fixture with MySQL's binaries and first start (`mysqld
/// --initialize-insecure`), so every [`Mariadb`] method works on it.
/// `root` has a generated password at `localhost`, `127.0.0.1` and `%`.
pub struct Mysql(Mariadb);

impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Mysql").field(&self.0).finish()
    }
}

impl std::ops::Deref for Mysql {
    type Target = Mariadb;
    fn deref(&self) -> &Mariadb {
        &self.0
    }
}

impl std::ops::DerefMut for Mysql {
    fn deref_mut(&mut self) -> &mut Mariadb {
        &mut self.0
    }
}

impl Mysql {
    /// As [`Mariadb::start_with`], for MySQL.
    pub async fn start_with(extra_args: &[&str]) -> Result<Mysql> {
        let extra: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        process::install_and_start(Component::Mysql, "mysql", async || {
            Mariadb::start_once(Kind::Mysql, extra.clone()).await
        })
        .await
        .map(Mysql)
    }

    /// The fixture itself, for code written for both servers.
    pub fn into_inner(self) -> Mariadb {
        self.0
    }

    /// As [`Mariadb::prepare_member`], for MySQL.
    pub fn prepare_member(admin_password: &str, options: &[&str]) -> Result<Mysql> {
        Mariadb::prepare(Kind::Mysql, admin_password, options).map(Mysql)
    }
}

impl Mariadb {
    /// mariadb-install-db + mariadbd; returns once root can log in over TCP
    /// with its password. Runs `hack/servers/install.sh` first if MariaDB
    /// (or, as root, the `dbtest` user) is missing.
    pub async fn start() -> Result<Mariadb> {
        Mariadb::start_with(&[]).await
    }

    /// As [`Mariadb::start`], with server options added after the
    /// testkit's own, such as `--log-bin` and `--server-id=2` for a
    /// replication source or replica.
    pub async fn start_with(extra_args: &[&str]) -> Result<Mariadb> {
        let extra: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        process::install_and_start(Component::Mariadb, "mariadb", async || {
            Mariadb::start_once(Kind::Mariadb, extra.clone()).await
        })
        .await
    }

    async fn start_once(kind: Kind, extra_args: Vec<String>) -> Result<Mariadb> {
        let started = Instant::now();
        let missing = || {
            format!(
                "{} not found; run {}",
                kind.component().describe(),
                install::install_script().display()
            )
        };
        let mut mariadb = Mariadb::unstarted(kind, Admin::generated(ADMIN_USER), extra_args)
            .with_context(missing)?;
        mariadb.init().await?;
        mariadb.launch(true).await?;
        mariadb.startup = started.elapsed();
        Ok(mariadb)
    }

    /// A server's folder, port and binaries, not started.
    fn unstarted(kind: Kind, admin: Admin, extra_args: Vec<String>) -> Result<Mariadb> {
        let (mariadbd, bin_dir) = match kind {
            Kind::Mariadb => (
                install::mariadbd_path().context("no mariadbd")?,
                install::mariadb_bin_dir().context("no MariaDB clients")?,
            ),
            Kind::Mysql => {
                let bin = install::mysql_bin_dir().context("no MySQL")?;
                (bin.join("mysqld"), bin)
            }
        };
        let dir = ServerDir::create(kind.name(), install::server_user()?)?;
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        dir.chown(&dir.path().join("tmp"))?;
        Ok(Mariadb {
            kind,
            instance: Instance::new(
                kind.name(),
                dir,
                "mariadbd.log",
                admin,
                Shutdown {
                    signal: libc::SIGTERM,
                    grace: Duration::from_secs(10),
                },
                None,
            )?,
            mariadbd,
            bin_dir,
            extra_args,
            member: None,
        })
    }

    /// A member of a replicated Database, not started yet, with its port:
    /// [`Mariadb::restart_as`] starts it through the operator's instance
    /// script, which fills its empty data directory (a replica copies its
    /// primary, whose `root` it then has, with `admin_password`). `options`
    /// are the operator's server settings.
    pub fn prepare_member(admin_password: &str, options: &[&str]) -> Result<Mariadb> {
        Mariadb::prepare(Kind::Mariadb, admin_password, options)
    }

    fn prepare(kind: Kind, admin_password: &str, options: &[&str]) -> Result<Mariadb> {
        install::ensure(&[kind.component()])?;
        Mariadb::unstarted(
            kind,
            Admin {
                user: ADMIN_USER.to_owned(),
                password: admin_password.to_owned(),
            },
            options.iter().map(|o| (*o).to_owned()).collect(),
        )
    }

    /// Stops the server and starts it again through `member`: a pod
    /// restarted, perhaps with another role.
    pub async fn restart_as(&mut self, member: Member) -> Result<()> {
        self.stop();
        member.write_labels(self.dir.path())?;
        self.member = Some(member);
        self.launch(false).await
    }

    async fn init(&mut self) -> Result<()> {
        if self.kind == Kind::Mysql {
            return self.init_mysql().await;
        }
        let log = self.dir.path().join("install-db.log");
        // A private tmpdir: bootstrap servers sharing /tmp remove each
        // other's temporary tables ("Unknown table 'mysql.tmp_user_sys'").
        let tmp = self.dir.path().join("tmp");
        let args: Vec<String> = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data_dir().display()),
            format!("--tmpdir={}", tmp.display()),
            "--auth-root-authentication-method=socket".to_owned(),
            "--skip-test-db".to_owned(),
            "--skip-name-resolve".to_owned(),
        ];
        let command = self
            .dir
            .command(&self.bin_dir.join("mariadb-install-db"), &args, &log)?;
        let mut install_db =
            ServerProcess::spawn(&self.supervisor, "mariadb-install-db", command, &log).await?;
        install_db.wait_success(Duration::from_secs(120)).await?;
        // Run by mariadbd at its first start, before it serves clients.
        let password = self.admin_password();
        self.write_init_sql(&format!(
            "IDENTIFIED VIA mysql_native_password USING PASSWORD('{password}') OR unix_socket"
        ))
    }

    /// `mysqld --initialize-insecure` (root@localhost without a password),
    /// and the first start's file that gives root its password.
    async fn init_mysql(&mut self) -> Result<()> {
        let log = self.dir.path().join("initialize.log");
        let args: Vec<String> = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data_dir().display()),
            format!("--tmpdir={}", self.dir.path().join("tmp").display()),
            "--initialize-insecure".to_owned(),
        ];
        let command = self.dir.command(&self.mariadbd, &args, &log)?;
        let mut initialize =
            ServerProcess::spawn(&self.supervisor, "mysqld", command, &log).await?;
        initialize.wait_success(Duration::from_secs(120)).await?;
        let password = self.admin_password();
        self.write_init_sql(&format!("IDENTIFIED BY '{password}'"))
    }

    /// The file the first start runs: root@localhost authenticated as
    /// `localhost_auth` says, and root over TCP with the admin password.
    fn write_init_sql(&self, localhost_auth: &str) -> Result<()> {
        let password = self.admin_password();
        let sql = format!(
            "ALTER USER 'root'@'localhost' {localhost_auth};\n\
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
        );
        self.dir.write_private("init.sql", &sql)?;
        Ok(())
    }

    async fn launch(&mut self, first: bool) -> Result<()> {
        let root = self.dir.path();
        let log = self.log_path();
        let mut args: Vec<String> = vec![
            // Must come first: ignore /etc/mysql/my.cnf and ~/.my.cnf.
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data_dir().display()),
            format!("--socket={}", self.socket_path().display()),
            format!("--pid-file={}", root.join("mariadbd.pid").display()),
            format!("--tmpdir={}", root.join("tmp").display()),
            format!("--port={}", self.port),
            format!("--bind-address={HOST}"),
            "--skip-name-resolve".to_owned(),
            "--innodb-flush-log-at-trx-commit=0".to_owned(),
            "--innodb-buffer-pool-size=64M".to_owned(),
            "--max-connections=50".to_owned(),
        ];
        match self.kind {
            Kind::Mariadb => args.push("--skip-log-bin".to_owned()),
            // No file import/export folder, no X protocol port (it would
            // clash between servers); the binary log stays on (MySQL's
            // default): replicated members need it.
            Kind::Mysql => {
                args.extend(["--secure-file-priv=".to_owned(), "--mysqlx=OFF".to_owned()]);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        if first {
            args.push(format!("--init-file={}", root.join("init.sql").display()));
        }
        let command = if let Some(member) = &self.member {
            let mut script_args = vec![
                member.script.display().to_string(),
                self.mariadbd.display().to_string(),
            ];
            script_args.extend(args);
            let mut command = self.dir.command(Path::new("/bin/sh"), &script_args, &log)?;
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("DATADIR", self.data_dir())
                .env("ROLE_FILE", self.dir.path().join("labels"))
                .env("TMPDIR", root.join("tmp"))
                .env(
                    match self.kind {
                        Kind::Mariadb => "MARIADB_ROOT_PASSWORD",
                        Kind::Mysql => "MYSQL_ROOT_PASSWORD",
                    },
                    self.admin_password(),
                )
                .env("PATH", format!("{}:{path}", self.bin_dir.display()))
                .envs(member.env.iter().map(|(k, v)| (k, v)));
            command
        } else {
            self.dir.command(&self.mariadbd, &args, &log)?
        };
        let mut server =
            ServerProcess::spawn(&self.supervisor, self.kind.name(), command, &log).await?;
        let opts = self.opts();
        let port = self.port;
        process::wait_ready(
            &mut server,
            &format!("mariadbd on {HOST}:{port} to accept root's password login"),
            process::START_TIMEOUT,
            async || {
                let mut conn = mysql_async::Conn::new(opts.clone()).await?;
                conn.query_drop("SELECT 1").await?;
                conn.disconnect().await?;
                Ok(())
            },
        )
        .await?;
        if first {
            let _ = std::fs::remove_file(root.join("init.sql"));
        }
        self.server = Some(server);
        Ok(())
    }

    /// Connection options for root over TCP.
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(HOST)
            .tcp_port(self.port)
            .user(Some(ADMIN_USER))
            .pass(Some(self.admin_password().to_owned()))
            .prefer_socket(false)
            .into()
    }

    /// A root connection over TCP.
    pub async fn connect(&self) -> Result<mysql_async::Conn> {
        mysql_async::Conn::new(self.opts())
            .await
            .with_context(|| format!("connecting to mariadb on {HOST}:{}", self.port))
    }

    /// `mysql://root:<password>@127.0.0.1:<port>`. Note that mysql_async
    /// given this URL moves to the server's unix socket after connecting
    /// (its `prefer_socket` default; root@localhost accepts the password
    /// there too): add `?prefer_socket=false` or use [`Mariadb::opts`] to stay
    /// on TCP.
    pub fn url(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{}@{HOST}:{}",
            self.admin_password(),
            self.port
        )
    }

    /// Folder with the client programs (`mariadb`/`mysql`, `mysqladmin`,
    /// `mariadb-dump`/`mysqldump`), usually `/usr/bin`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server binary, usually `/usr/sbin/mariadbd`.
    pub fn server_binary(&self) -> &Path {
        &self.mariadbd
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The unix socket (`--socket`).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// Starts the stopped server again (same port, data and users).
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.launch(false).await
    }
}
