//! Tests of the testkit itself, against the real components it starts: the
//! control plane (one cluster per test, and one shared by a module's
//! tests), the `local-cluster` binary, the S3 server and the database
//! servers.

mod cluster;
mod helper;
mod local_cluster;
mod s3;
mod servers;
mod shared_cluster;
