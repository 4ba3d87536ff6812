//! Tests that need no server and no control plane, of what the operator
//! produces as a whole: the pure builders' children (snapshots per engine),
//! the generated CRDs against the seed's contract and `deploy/crds`, and
//! the generated alert rules and dashboards (checked by promtool, a tool
//! rather than a server). Unit tests of one module's logic live beside it
//! (`cargo test -p database-operator-core`).

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

mod builders;
mod crds;
mod docs;
mod helm;
mod monitoring_builders;
mod monitoring_rules;
mod network;
mod olm;
mod restore_builders;
