//! Retention: `12h`, `7d`, `4w` (keep complete backups younger than that) or
//! `N` (keep the newest N complete backups), and the plan that applies it.
//!
//! Rules, whatever the retention says:
//! - the newest complete backup (by the manifest's completion time) is never
//!   deleted, so `0` and `0h` keep exactly one;
//! - a backup without a manifest (incomplete: a failed or running upload)
//!   is deleted only when its newest object is older than a day, so a
//!   backup still uploading is never touched;
//! - a manifest that cannot be read keeps its backup (reported, never
//!   guessed at).

pub use database_operator_api::v1::retention::Retention;
use database_operator_api::v1::retention::{INCOMPLETE_GRACE_SECS, Why};

use super::{AgentError, Result};

/// Parses `--retention` with the API's rule.
pub fn parse(text: &str) -> Result<Retention> {
    Retention::parse(text).ok_or_else(|| {
        AgentError::Usage(format!(
            "retention {text:?}: use a period such as 12h, 7d or 4w, or a count such as 10"
        ))
    })
}

/// One backup as listed in the bucket.
#[derive(Clone, Debug)]
pub struct Listed {
    pub key: String,
    /// Completion time from its manifest; `None` when it has no manifest.
    pub complete: Option<Completion>,
    /// Newest last-modified of its objects.
    pub last_modified: jiff::Timestamp,
}

#[derive(Clone, Debug)]
pub enum Completion {
    At(jiff::Timestamp),
    /// A manifest exists but could not be read or has no valid time.
    Unreadable(String),
}

/// Why a backup goes: part of the agent's report.
pub use database_operator_api::agent::PruneReason as Reason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub key: String,
    pub reason: Reason,
}

/// Which backups to delete, newest first in each group.
pub fn plan(backups: &[Listed], retention: Retention, now: jiff::Timestamp) -> Vec<Decision> {
    let complete: Vec<(String, i64)> = backups
        .iter()
        .filter_map(|b| match &b.complete {
            Some(Completion::At(t)) => Some((b.key.clone(), t.as_second())),
            _ => None,
        })
        .collect();
    let mut out: Vec<Decision> = retention
        .expired(&complete, now.as_second())
        .into_iter()
        .map(|(key, why)| Decision {
            key,
            reason: match why {
                Why::Expired => Reason::Expired,
                Why::BeyondCount => Reason::BeyondCount,
            },
        })
        .collect();
    let mut incomplete: Vec<&Listed> = backups.iter().filter(|b| b.complete.is_none()).collect();
    incomplete.sort_by_key(|b| std::cmp::Reverse(b.last_modified));
    for b in incomplete {
        if now.as_second() - b.last_modified.as_second() > INCOMPLETE_GRACE_SECS {
            out.push(Decision {
                key: b.key.clone(),
                reason: Reason::Incomplete,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn complete(key: &str, at: &str) -> Listed {
        Listed {
            key: key.into(),
            complete: Some(Completion::At(ts(at))),
            last_modified: ts(at),
        }
    }

    fn incomplete(key: &str, at: &str) -> Listed {
        Listed {
            key: key.into(),
            complete: None,
            last_modified: ts(at),
        }
    }

    fn keys(d: &[Decision]) -> Vec<&str> {
        d.iter().map(|d| d.key.as_str()).collect()
    }

    #[test]
    fn age_keeps_young_ones_and_always_the_newest() {
        let now = ts("2025-01-10T00:00:00Z");
        let backups = [
            complete("a", "2025-01-01T00:00:00Z"),
            complete("b", "2025-01-05T00:00:00Z"),
            complete("c", "2025-01-09T12:00:00Z"),
        ];
        let d = plan(&backups, parse("7d").unwrap(), now);
        assert_eq!(keys(&d), ["a"]);
        assert_eq!(d[0].reason, Reason::Expired);
        // Everything is older than 1h, but the newest stays.
        let d = plan(&backups, parse("1h").unwrap(), now);
        assert_eq!(keys(&d), ["b", "a"]);
        // Even when every backup is ancient.
        let d = plan(&backups, parse("1h").unwrap(), ts("2030-01-01T00:00:00Z"));
        assert_eq!(keys(&d), ["b", "a"]);
    }

    #[test]
    fn count_keeps_the_newest_n() {
        let now = ts("2025-01-10T00:00:00Z");
        let backups = [
            complete("k3", "2025-01-03T00:00:00Z"),
            complete("k1", "2025-01-01T00:00:00Z"),
            complete("k4", "2025-01-04T00:00:00Z"),
            complete("k2", "2025-01-02T00:00:00Z"),
        ];
        assert_eq!(
            keys(&plan(&backups, Retention::Count(2), now)),
            ["k2", "k1"]
        );
        assert_eq!(
            keys(&plan(&backups, Retention::Count(0), now)),
            ["k3", "k2", "k1"]
        );
        assert!(plan(&backups, Retention::Count(10), now).is_empty());
    }

    #[test]
    fn incomplete_ones_go_after_a_day_and_never_count() {
        let now = ts("2025-01-10T00:00:00Z");
        let backups = [
            complete("done", "2025-01-01T00:00:00Z"),
            incomplete("old-failed", "2025-01-08T00:00:00Z"),
            incomplete("uploading", "2025-01-09T23:00:00Z"),
            Listed {
                key: "unreadable".into(),
                complete: Some(Completion::Unreadable("bad json".into())),
                last_modified: ts("2024-01-01T00:00:00Z"),
            },
        ];
        let d = plan(&backups, Retention::Count(1), now);
        assert_eq!(keys(&d), ["old-failed"]);
        assert_eq!(d[0].reason, Reason::Incomplete);
        // An incomplete backup never protects itself as "the newest".
        let d = plan(&backups, parse("1h").unwrap(), now);
        assert_eq!(keys(&d), ["old-failed"]);
    }
}
