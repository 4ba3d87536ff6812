//! Real database servers for tests: [`Postgres`], [`Mariadb`] and [`Ferret`]
//! (FerretDB, our stand-in for MongoDB), and an S3-compatible object store,
//! [`S3`] (versitygw), for backups.
//!
//! Each fixture runs one server on `127.0.0.1` on a free port, with its data,
//! socket and log in its own temporary folder (`$TMPDIR/testkit-db-<kind>-*`),
//! and `start` returns once the server accepts an authenticated connection
//! with the generated admin password (polling; no fixed sleeps). On failure
//! the error quotes the end of the server's log.
//!
//! The binaries come from `hack/servers/install.sh`: PostgreSQL and MariaDB
//! from Debian's packages, FerretDB and versitygw built from their Go
//! modules into `~/.cache/database-operator/servers/<name>-<version>/bin`.
//! When one is missing, `start` runs that script itself (root or sudo needed
//! for apt-get; about a minute for each Go build) and fails naming the
//! script if it could not install it.
//!
//! When the tests run as root, PostgreSQL and MariaDB run as the system user
//! [`TEST_USER`] (`dbtest`, created by the script), which owns their folder.
//!
//! Servers are forked by a dedicated thread per fixture with
//! `PR_SET_PDEATHSIG`, in their own process group (like the control plane's
//! components, see [`crate::processes`]): dropping the fixture kills the
//! group and removes the folder (`TESTKIT_KEEP_DIR=1` keeps it), and if the
//! test process dies the servers die with it; the next fixture removes
//! folders whose owner process is gone.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use database_operator_testkit::servers::{Ferret, Mariadb, Postgres};
//! let pg = Postgres::start().await?;
//! let client = pg.connect().await?;
//! client.simple_query("CREATE TABLE t (id int)").await?;
//! let url = pg.url(); // postgres://postgres:<password>@127.0.0.1:<port>/postgres
//! let maria = Mariadb::start().await?; // maria.url(): mysql://root:...
//! let ferret = Ferret::start().await?; // ferret.uri(): mongodb://admin:...
//! let s3 = database_operator_testkit::servers::S3::start().await?;
//! s3.create_bucket("backups").await?;
//! let store = s3.store("backups")?; // object_store::aws::AmazonS3
//! # let _ = (url, maria, ferret, store); Ok(()) }
//! ```

mod ferret;
mod install;
mod mariadb;
mod postgres;
mod process;
mod s3;

pub use ferret::Ferret;
pub use install::{
    TEST_USER, ensure_installed, ferretdb_bin, ferretdb_version, install_script, is_installed,
    mariadb_bin_dir, mariadbd_path, mysql_bin_dir, postgres_bin_dir,
};
pub use mariadb::{Mariadb, Mysql};
pub use postgres::{Member, Postgres};
pub use process::Instance;
pub use s3::S3;
