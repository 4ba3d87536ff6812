//! The API of database-operator. Pure data, no I/O.
//!
//! - [`v1`]: the `example.com/v1` custom resources — `Database`,
//!   `DatabaseUser`, `DatabaseBackup`, `DatabaseMonitor` — with their
//!   defaults, CEL validation, conditions and labels; what `database-operator
//!   crd` prints.
//! - [`agent`]: the report the in-pod agent writes when it finishes, which
//!   the controllers read back.

// kube-derive takes one `printcolumn(...)` per column, and clippy reads the
// repeated `type_ = "string"` inside them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod agent;
pub mod v1;
