//! Tests that need no server and no control plane: what the pure builders
//! produce (snapshots per engine), the generated CRDs against the seed's
//! contract and `deploy/crds`, status transitions, the admin Secret against
//! a mock API server, and the generated alert rules and dashboards (checked
//! by promtool, a tool rather than a server).

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

mod admin_secret;
mod builders;
mod crds;
mod monitoring_builders;
mod monitoring_rules;
mod restore_builders;
mod status;
