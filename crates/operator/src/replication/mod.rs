//! Replication inside the engines: the replication login, the slots a
//! primary keeps for its replicas, promotion, and what each member says of
//! itself. The decisions (which pod is primary, when to fail over) are made
//! by the Database controller from what these functions observe; the code
//! that runs inside the pods is the engines' instance scripts, which the
//! operator ships in the Database's ConfigMap.
//!
//! Every function here talks to one server as the Database's admin login
//! ([`crate::users::Target`]); errors are [`crate::users::UserError`], with
//! passwords cut out.

pub mod mongodb;
pub mod mysql;
pub mod postgresql;

/// The login replicas (and, for PostgreSQL, `pg_rewind`) connect as. The
/// `dbop_` prefix is reserved, so no DatabaseUser can take or drop it.
pub const LOGIN: &str = "dbop_replication";

/// The pod label that says which pod is the primary. The operator keeps it
/// true; the Services select on it, and the instance scripts read it
/// through the downward API.
pub const ROLE_LABEL: &str = "example.com/role";
/// [`ROLE_LABEL`] of the primary.
pub const PRIMARY: &str = "primary";
/// [`ROLE_LABEL`] of every other member.
pub const REPLICA: &str = "replica";
/// The pod label that says a replica has caught up with the primary
/// (`"true"`): `<name>-readonly` selects only such replicas, so that a new
/// or lagging replica answers no reads.
pub const CAUGHT_UP_LABEL: &str = "example.com/caught-up";

/// What one member's server says of itself, in the terms the failover
/// decisions judge, whatever the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// It replicates from a primary: a PostgreSQL standby (in recovery); a
    /// MySQL-family server with a source configured.
    pub in_recovery: bool,
    /// The history it is on. PostgreSQL: its timeline. MySQL family: 1, or
    /// 0 for a replica whose source refused its GTID position (error 1236:
    /// it holds transactions the source never had, or needs binary logs
    /// the source no longer has), which can never follow it as it is.
    pub timeline: u32,
    /// Its position: written (primary) or applied (replica), comparable
    /// with the primary's and between replicas of the same primary.
    /// PostgreSQL: the WAL position in bytes. MySQL family: the primary's
    /// binary log coordinates, file number × 2³² + offset.
    pub lsn: u64,
    /// How far it received from the primary (replicas only).
    pub received_lsn: Option<u64>,
    /// Whether it receives and applies from a primary (replicas only).
    pub streaming: bool,
    /// It takes no writes: a primary fenced by a switchover
    /// (PostgreSQL: `default_transaction_read_only`; MySQL family:
    /// `read_only`).
    pub read_only: bool,
    /// PostgreSQL's `synchronous_standby_names` (empty elsewhere).
    pub synchronous_standby_names: String,
    /// MySQL family: semi-synchronous replication as the member has it
    /// (`None`: PostgreSQL).
    pub semi_sync: Option<SemiSync>,
}

/// A MySQL-family member's semi-synchronous replication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemiSync {
    /// The primary's side is on: its commits wait for a replica's
    /// acknowledgement.
    pub source: bool,
    /// The replica's side is on: it acknowledges what it receives.
    pub replica: bool,
    /// The primary's side waits now: false once it fell back to
    /// asynchronous commits after the timeout.
    pub waiting: bool,
}
