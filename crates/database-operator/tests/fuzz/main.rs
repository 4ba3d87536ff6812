//! Hostile input, fuzzed. For each of the four kinds, a property-based
//! generator (proptest, repeatable by seed) mutates the samples: it sets
//! paths of the kind's own schema (walked from the generated CRD, so every
//! field is reached) to hostile or plausible values — SQL and shell
//! metacharacters, path traversal, control characters, huge and negative
//! numbers, wrong types, nulls — or removes them. Every case goes to the
//! real API server (a dry-run create, so admission and the CRD's validation
//! judge it) and then to the operator's code:
//!
//! - refused: the refusal must name the field (`spec.…` or `metadata.…`);
//! - accepted: the object must parse into the operator's Rust type, the
//!   builders must not panic, and every child they build must be accepted
//!   by the API server too (a server-side dry-run create).
//!
//! `FUZZ_CASES` (default 2,000 per kind) runs more on demand; `FUZZ_SEED`
//! picks another sequence. A failure prints the seed and the case's JSON.
//! Its own binary: its thousands of requests do not load the timing-bound
//! tests of `tests/control_plane`.

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

mod admission;
