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

use std::time::Duration;

use serde::Serialize;

use super::{AgentError, Result};

/// How long an incomplete backup is left alone.
pub const INCOMPLETE_GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep complete backups completed within this period.
    Age(Duration),
    /// Keep this many of the newest complete backups.
    Count(usize),
}

impl std::str::FromStr for Retention {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Retention> {
        let bad = || {
            AgentError::Usage(format!(
                "retention {s:?}: use a period such as 12h, 7d or 4w, or a count such as 10"
            ))
        };
        let s = s.trim();
        let (digits, unit) = match s.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], Some(c)),
            Some(_) => (s, None),
            None => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let hours = match unit {
            None => return Ok(Retention::Count(usize::try_from(n).map_err(|_| bad())?)),
            Some('h') => n,
            Some('d') => n.checked_mul(24).ok_or_else(bad)?,
            Some('w') => n.checked_mul(24 * 7).ok_or_else(bad)?,
            Some(_) => return Err(bad()),
        };
        let secs = hours.checked_mul(3600).ok_or_else(bad)?;
        Ok(Retention::Age(Duration::from_secs(secs)))
    }
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// Completed longer ago than the retention period.
    Expired,
    /// Beyond the newest N complete backups.
    BeyondCount,
    /// No manifest and untouched for more than a day.
    Incomplete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub key: String,
    pub reason: Reason,
}

/// Which backups to delete, newest first in each group.
pub fn plan(backups: &[Listed], retention: Retention, now: jiff::Timestamp) -> Vec<Decision> {
    let mut complete: Vec<(&Listed, jiff::Timestamp)> = backups
        .iter()
        .filter_map(|b| match &b.complete {
            Some(Completion::At(t)) => Some((b, *t)),
            _ => None,
        })
        .collect();
    // Newest first; ties broken by key so the plan is deterministic.
    complete.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.key.cmp(&a.0.key)));

    let mut out = Vec::new();
    for (i, (b, done)) in complete.iter().enumerate() {
        if i == 0 {
            continue; // the newest complete backup is always kept
        }
        let reason = match retention {
            Retention::Count(n) => (i >= n.max(1)).then_some(Reason::BeyondCount),
            Retention::Age(period) => {
                let age = now.duration_since(*done);
                (age.is_positive() && age.unsigned_abs() > period).then_some(Reason::Expired)
            }
        };
        if let Some(reason) = reason {
            out.push(Decision {
                key: b.key.clone(),
                reason,
            });
        }
    }
    let mut incomplete: Vec<&Listed> = backups.iter().filter(|b| b.complete.is_none()).collect();
    incomplete.sort_by_key(|b| std::cmp::Reverse(b.last_modified));
    for b in incomplete {
        let age = now.duration_since(b.last_modified);
        if age.is_positive() && age.unsigned_abs() > INCOMPLETE_GRACE {
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
    fn parses_periods_and_counts() {
        let h = |n: u64| Retention::Age(Duration::from_secs(n * 3600));
        assert_eq!("12h".parse::<Retention>().unwrap(), h(12));
        assert_eq!("7d".parse::<Retention>().unwrap(), h(7 * 24));
        assert_eq!("4w".parse::<Retention>().unwrap(), h(4 * 7 * 24));
        assert_eq!("10".parse::<Retention>().unwrap(), Retention::Count(10));
        assert_eq!("0".parse::<Retention>().unwrap(), Retention::Count(0));
        for bad in [
            "",
            "d",
            "7x",
            "-1",
            "1.5d",
            "7 d",
            "7dd",
            "h7",
            "99999999999999999999w",
            "7D",
        ] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn age_keeps_young_ones_and_always_the_newest() {
        let now = ts("2025-01-10T00:00:00Z");
        let backups = [
            complete("a", "2025-01-01T00:00:00Z"),
            complete("b", "2025-01-05T00:00:00Z"),
            complete("c", "2025-01-09T12:00:00Z"),
        ];
        let d = plan(&backups, "7d".parse().unwrap(), now);
        assert_eq!(keys(&d), ["a"]);
        assert_eq!(d[0].reason, Reason::Expired);
        // Everything is older than 1h, but the newest stays.
        let d = plan(&backups, "1h".parse().unwrap(), now);
        assert_eq!(keys(&d), ["b", "a"]);
        // Even when every backup is ancient.
        let d = plan(&backups, "1h".parse().unwrap(), ts("2030-01-01T00:00:00Z"));
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
        let d = plan(&backups, "1h".parse().unwrap(), now);
        assert_eq!(keys(&d), ["old-failed"]);
    }
}
