//! `spec.backup.retention`: how many backups, or how old, to keep. One rule
//! for both the stored objects (the agent's `prune`) and the DatabaseBackup
//! records (the operator), so the two never disagree.
//!
//! Whatever the retention says, the newest complete backup is never
//! deleted, so `0` and `0h` keep exactly one. Incomplete backups never count
//! towards `N` and never protect themselves as "the newest"; callers remove
//! them once they are older than [`INCOMPLETE_GRACE_SECS`].

use std::cmp::Reverse;
use std::fmt;

/// How long an incomplete backup (no manifest, or a failed record) is left
/// alone, so a backup still uploading is never touched.
pub const INCOMPLETE_GRACE_SECS: i64 = 24 * 3600;

/// A parsed retention: a period (`12h`, `7d`, `4w`) or a count (`10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep complete backups younger than this many seconds.
    Period(i64),
    /// Keep this many of the newest complete backups.
    Count(usize),
}

/// Why a backup goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Completed longer ago than the period.
    Expired,
    /// Beyond the newest N complete backups.
    BeyondCount,
}

impl Retention {
    /// Parses the API's form (`^[0-9]+[hdw]?$`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (digits, unit) = match text.char_indices().last()? {
            (i, c) if c.is_ascii_alphabetic() => (&text[..i], Some(c)),
            _ => (text, None),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: i64 = digits.parse().ok()?;
        Some(match unit {
            None => Self::Count(usize::try_from(n).ok()?),
            Some('h') => Self::Period(n.checked_mul(3_600)?),
            Some('d') => Self::Period(n.checked_mul(86_400)?),
            Some('w') => Self::Period(n.checked_mul(604_800)?),
            Some(_) => return None,
        })
    }

    /// Of the complete backups `(key, completed at, in epoch seconds)`, the
    /// ones to delete at `now`, newest first. The newest is always kept.
    pub fn expired<K: Clone + Ord>(&self, complete: &[(K, i64)], now: i64) -> Vec<(K, Why)> {
        let mut newest_first: Vec<&(K, i64)> = complete.iter().collect();
        // Ties broken by key, so the answer does not depend on listing order.
        newest_first.sort_by_key(|(key, at)| (Reverse(*at), Reverse(key.clone())));
        newest_first
            .into_iter()
            .enumerate()
            .skip(1)
            .filter_map(|(i, (key, at))| {
                let why = match *self {
                    Self::Count(n) => (i >= n.max(1)).then_some(Why::BeyondCount),
                    Self::Period(seconds) => (now - at > seconds).then_some(Why::Expired),
                };
                why.map(|why| (key.clone(), why))
            })
            .collect()
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Period(s) => write!(f, "{s}s"),
            Self::Count(n) => write!(f, "{n} backups"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn hours_ago(key: &str, hours: i64) -> (String, i64) {
        (key.to_owned(), NOW - hours * 3_600)
    }

    fn keys(expired: Vec<(String, Why)>) -> Vec<String> {
        expired.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn parses_periods_and_counts() {
        assert_eq!(Retention::parse("12h"), Some(Retention::Period(43_200)));
        assert_eq!(Retention::parse("7d"), Some(Retention::Period(604_800)));
        assert_eq!(Retention::parse("4w"), Some(Retention::Period(2_419_200)));
        assert_eq!(Retention::parse("10"), Some(Retention::Count(10)));
        assert_eq!(Retention::parse("0"), Some(Retention::Count(0)));
        for bad in [
            "",
            "d",
            "7x",
            "7D",
            "-1",
            "1.5d",
            "7 d",
            "7dd",
            "h7",
            "99999999999999999999w",
        ] {
            assert_eq!(Retention::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_period_deletes_what_is_older_but_never_the_newest() {
        let backups = [
            hours_ago("new", 1),
            hours_ago("day", 23),
            hours_ago("old", 30),
        ];
        assert_eq!(
            keys(Retention::Period(86_400).expired(&backups, NOW)),
            ["old"]
        );
        assert_eq!(
            keys(Retention::Period(60).expired(&backups, NOW)),
            ["day", "old"]
        );
        assert_eq!(
            Retention::Period(60).expired(&backups, NOW)[0].1,
            Why::Expired
        );
    }

    #[test]
    fn a_count_keeps_the_newest_n_and_zero_keeps_one() {
        let backups = [
            hours_ago("a", 1),
            hours_ago("c", 3),
            hours_ago("b", 2),
            hours_ago("d", 4),
        ];
        assert_eq!(keys(Retention::Count(2).expired(&backups, NOW)), ["c", "d"]);
        assert_eq!(
            keys(Retention::Count(0).expired(&backups, NOW)),
            ["b", "c", "d"]
        );
        assert!(Retention::Count(10).expired(&backups, NOW).is_empty());
    }

    #[test]
    fn ties_are_broken_by_key() {
        let backups = [("b".to_string(), NOW), ("a".to_string(), NOW)];
        assert_eq!(keys(Retention::Count(1).expired(&backups, NOW)), ["a"]);
    }
}
