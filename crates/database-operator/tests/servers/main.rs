//! Code that talks to databases and object storage, against real servers on
//! loopback (PostgreSQL and MariaDB from Debian, FerretDB and versitygw from
//! their Go modules, started by `testkit::servers`): the agent's backup,
//! restore, verify and prune; the users machinery per engine; the probe
//! scripts; the pinned exporters.

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

mod agent_mongodb;
mod agent_mysql;
mod agent_postgresql;
mod agent_prune;
mod exporter_metrics;
mod probes;
mod replication_gtid;
mod replication_mysql;
mod replication_postgresql;
mod users_fixture;
mod users_mongodb;
mod users_mysql;
mod users_postgresql;
