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
