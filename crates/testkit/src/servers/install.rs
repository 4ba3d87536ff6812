//! Where the server binaries live and how to install them.
//!
//! `hack/servers/install.sh` installs PostgreSQL and MariaDB from Debian's
//! packages, creates the [`TEST_USER`] and builds FerretDB and versitygw (the
//! S3 server) into the cache. It is compiled into this crate so the fixtures
//! and the script agree on the pinned versions and cache folders.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths;

const INSTALL_SCRIPT_TEXT: &str = include_str!("../../../../hack/servers/install.sh");

/// Reads `NAME="value"` from install.sh.
fn pinned(name: &str) -> &'static str {
    let prefix = format!("{name}=\"");
    INSTALL_SCRIPT_TEXT
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("hack/servers/install.sh has no {name}=\"...\" line"))
}

/// System user the servers run as when the tests run as root (PostgreSQL
/// refuses to run as root). `install.sh` creates it.
pub const TEST_USER: &str = "dbtest";

/// FerretDB release `install.sh` builds, e.g. `v1.24.2`.
pub fn ferretdb_version() -> &'static str {
    pinned("FERRETDB_VERSION")
}

/// `<cache>/servers/ferretdb-<version>/bin/ferretdb`.
pub fn ferretdb_bin() -> PathBuf {
    paths::cache_root()
        .join("servers")
        .join(format!("ferretdb-{}", ferretdb_version()))
        .join("bin")
        .join("ferretdb")
}

fn ferretdb_built() -> bool {
    let bin = ferretdb_bin();
    let Some(dir) = bin.parent() else {
        return false;
    };
    let want = format!(
        "ferretdb={} layout={}",
        ferretdb_version(),
        pinned("CACHE_LAYOUT")
    );
    std::fs::read_to_string(dir.join(".complete")).is_ok_and(|s| s.trim() == want) && bin.is_file()
}

/// versitygw release `install.sh` builds, e.g. `v1.8.0`.
pub fn versitygw_version() -> &'static str {
    pinned("VERSITYGW_VERSION")
}

/// `<cache>/servers/versitygw-<version>/bin/versitygw`.
pub fn versitygw_bin() -> PathBuf {
    paths::cache_root()
        .join("servers")
        .join(format!("versitygw-{}", versitygw_version()))
        .join("bin")
        .join("versitygw")
}

fn versitygw_built() -> bool {
    let bin = versitygw_bin();
    let Some(dir) = bin.parent() else {
        return false;
    };
    let want = format!(
        "versitygw={} layout={}",
        versitygw_version(),
        pinned("VERSITYGW_LAYOUT")
    );
    std::fs::read_to_string(dir.join(".complete")).is_ok_and(|s| s.trim() == want) && bin.is_file()
}

/// The newest `/usr/lib/postgresql/<major>/bin` with the server and client
/// programs (initdb, postgres, pg_ctl, psql, pg_dump, pg_dumpall, pg_isready).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            let complete = [
                "initdb",
                "postgres",
                "pg_ctl",
                "psql",
                "pg_dump",
                "pg_dumpall",
                "pg_isready",
            ]
            .iter()
            .all(|b| bin.join(b).is_file());
            complete.then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The MariaDB server binary (`mariadbd`, usually `/usr/sbin/mariadbd`).
pub fn mariadbd_path() -> Option<PathBuf> {
    find_program("mariadbd", &["/usr/sbin", "/usr/local/sbin"])
}

/// `hack/servers/install.sh`'s `MYSQL_DIR`: MySQL from Debian sid,
/// unpacked beside the system, with wrappers in `bin/` (`mysqld`, `mysql`,
/// `mysqladmin`, `mysqldump`) that run each program with sid's loader.
pub fn mysql_dir() -> PathBuf {
    PathBuf::from(pinned("MYSQL_DIR"))
}

/// The wrappers' folder, once `install.sh` completed the MySQL install.
pub fn mysql_bin_dir() -> Option<PathBuf> {
    let bin = mysql_dir().join("bin");
    let want = format!("mysql layout={}", pinned("MYSQL_LAYOUT"));
    let complete = std::fs::read_to_string(bin.join(".complete"))
        .is_ok_and(|s| s.lines().next() == Some(want.as_str()));
    (complete && bin.join("mysqld").is_file()).then_some(bin)
}

/// Folder with the MariaDB client programs and `mariadb-install-db`
/// (mariadb/mysql, mysqladmin, mariadb-dump/mysqldump), usually `/usr/bin`.
pub fn mariadb_bin_dir() -> Option<PathBuf> {
    let install_db = find_program("mariadb-install-db", &["/usr/bin", "/usr/local/bin"])?;
    let dir = install_db.parent()?.to_owned();
    [
        "mariadb",
        "mysql",
        "mysqladmin",
        "mariadb-dump",
        "mysqldump",
    ]
    .iter()
    .all(|b| dir.join(b).is_file())
    .then_some(dir)
}

/// `(uid, gid)` of [`TEST_USER`] if the tests run as root, `None` when the
/// servers can run as the current user.
pub(crate) fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == TEST_USER {
            let uid = fields[2].parse().context("uid in /etc/passwd")?;
            let gid = fields[3].parse().context("gid in /etc/passwd")?;
            return Ok(Some((uid, gid)));
        }
    }
    bail!(
        "the tests run as root but user {TEST_USER} does not exist; run {}",
        install_script().display()
    )
}

fn test_user_ok() -> bool {
    server_user().is_ok()
}

/// What one server needs installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Postgres,
    Mariadb,
    Mysql,
    Ferretdb,
    Versitygw,
}

impl Component {
    fn installed(self) -> bool {
        match self {
            Component::Postgres => postgres_bin_dir().is_some() && test_user_ok(),
            Component::Mariadb => {
                mariadbd_path().is_some() && mariadb_bin_dir().is_some() && test_user_ok()
            }
            Component::Mysql => mysql_bin_dir().is_some() && test_user_ok(),
            Component::Ferretdb => ferretdb_built(),
            Component::Versitygw => versitygw_built(),
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Component::Postgres => {
                "PostgreSQL (/usr/lib/postgresql/<major>/bin/{initdb,postgres,...})".to_owned()
            }
            Component::Mariadb => "MariaDB (mariadbd, mariadb-install-db, clients)".to_owned(),
            Component::Mysql => format!("MySQL ({})", mysql_dir().join("bin").display()),
            Component::Ferretdb => format!("FerretDB ({})", ferretdb_bin().display()),
            Component::Versitygw => format!("versitygw ({})", versitygw_bin().display()),
        }
    }
}

/// The install script in this repository.
pub fn install_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/servers/install.sh")
}

const ALL: [Component; 5] = [
    Component::Postgres,
    Component::Mariadb,
    Component::Mysql,
    Component::Ferretdb,
    Component::Versitygw,
];

/// True if PostgreSQL, MariaDB, MySQL, FerretDB and versitygw (and, as root, the
/// test user) are all there.
pub fn is_installed() -> bool {
    ALL.iter().all(|c| c.installed())
}

/// Runs `hack/servers/install.sh` unless everything is installed already.
/// Installing the Debian packages needs root (or sudo); building FerretDB
/// and versitygw needs Go and takes about a minute each the first time.
pub fn ensure_installed() -> Result<()> {
    ensure(&ALL)
}

/// Runs `install.sh` if any of `components` is missing.
pub(crate) fn ensure(components: &[Component]) -> Result<()> {
    // One install per process even if several tests start servers at once.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<Component> = components
        .iter()
        .copied()
        .filter(|c| !c.installed())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let script = install_script();
    let names: Vec<String> = missing.iter().map(|c| c.describe()).collect();
    if !script.is_file() {
        bail!(
            "missing: {}; and install script {} not found: run hack/servers/install.sh from the repository",
            names.join(", "),
            script.display()
        );
    }
    eprintln!(
        "testkit: missing {}; running {}",
        names.join(", "),
        script.display()
    );
    let status = crate::processes::run_script(&script)?;
    let still: Vec<String> = missing
        .iter()
        .filter(|c| !c.installed())
        .map(|c| c.describe())
        .collect();
    if !still.is_empty() {
        bail!(
            "{} ({status}) did not install {}; run it by hand (as root) to see why",
            script.display(),
            still.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_install_script() {
        assert!(ferretdb_version().starts_with("v1.24."));
        assert!(ferretdb_bin().ends_with(format!("ferretdb-{}/bin/ferretdb", ferretdb_version())));
        assert!(!pinned("CACHE_LAYOUT").is_empty());
        assert!(versitygw_version().starts_with("v1."));
        assert!(
            versitygw_bin().ends_with(format!("versitygw-{}/bin/versitygw", versitygw_version()))
        );
        assert!(!pinned("VERSITYGW_LAYOUT").is_empty());
    }
}
