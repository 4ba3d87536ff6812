//! `spec.backup.retention`: how many backups, or how old, to keep.

use std::fmt;

/// A parsed retention: a period (`12h`, `7d`, `4w`) or a count (`10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep backups younger than this many seconds.
    Period(i64),
    /// Keep this many of the newest backups.
    Count(usize),
}

/// One backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<K> {
    pub key: K,
    /// Seconds since the epoch when the backup was taken.
    pub taken_at: i64,
    /// Whether it completed successfully.
    pub complete: bool,
}

impl Retention {
    /// Parses the API's form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (digits, unit) = match text.char_indices().last()? {
            (i, c) if c.is_ascii_alphabetic() => (&text[..i], Some(c)),
            _ => (text, None),
        };
        let n: i64 = digits.parse().ok().filter(|n| *n > 0)?;
        Some(match unit {
            None => Self::Count(usize::try_from(n).ok()?),
            Some('h') => Self::Period(n.checked_mul(3_600)?),
            Some('d') => Self::Period(n.checked_mul(86_400)?),
            Some('w') => Self::Period(n.checked_mul(604_800)?),
            Some(_) => return None,
        })
    }

    /// The backups to delete at `now`: older than the period, or beyond the
    /// newest `Count`. The newest complete backup is never among them, so
    /// there is always one to restore from.
    pub fn expired<K: Clone>(&self, backups: &[Candidate<K>], now: i64) -> Vec<K> {
        let mut newest_first: Vec<&Candidate<K>> = backups.iter().collect();
        newest_first.sort_by_key(|b| std::cmp::Reverse(b.taken_at));
        let keep_always = newest_first.iter().position(|b| b.complete);
        newest_first
            .iter()
            .enumerate()
            .filter(|(i, b)| {
                let expired = match *self {
                    Self::Period(seconds) => now - b.taken_at > seconds,
                    Self::Count(n) => *i >= n,
                };
                expired && Some(*i) != keep_always
            })
            .map(|(_, b)| b.key.clone())
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

    fn backup(key: &str, hours_ago: i64, complete: bool) -> Candidate<String> {
        Candidate {
            key: key.into(),
            taken_at: 1_000_000 - hours_ago * 3_600,
            complete,
        }
    }

    #[test]
    fn parses_periods_and_counts() {
        assert_eq!(Retention::parse("12h"), Some(Retention::Period(43_200)));
        assert_eq!(Retention::parse("7d"), Some(Retention::Period(604_800)));
        assert_eq!(Retention::parse("4w"), Some(Retention::Period(2_419_200)));
        assert_eq!(Retention::parse("10"), Some(Retention::Count(10)));
        for bad in [
            "",
            "0",
            "0d",
            "7x",
            "d",
            "-1",
            "7 d",
            "99999999999999999999",
        ] {
            assert_eq!(Retention::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_period_deletes_what_is_older() {
        let backups = [
            backup("new", 1, true),
            backup("day", 23, true),
            backup("old", 30, true),
        ];
        assert_eq!(
            Retention::Period(86_400).expired(&backups, 1_000_000),
            vec!["old".to_string()]
        );
    }

    #[test]
    fn a_count_keeps_the_newest_n() {
        let backups = [
            backup("a", 1, true),
            backup("b", 2, true),
            backup("c", 3, true),
            backup("d", 4, false),
        ];
        assert_eq!(
            Retention::Count(2).expired(&backups, 1_000_000),
            vec!["c".to_string(), "d".to_string()]
        );
    }

    #[test]
    fn the_newest_complete_backup_is_never_deleted() {
        // Every backup is past the period, and the newest ones failed.
        let backups = [
            backup("failed-new", 50, false),
            backup("good", 60, true),
            backup("older", 70, true),
        ];
        let expired = Retention::Period(3_600).expired(&backups, 1_000_000);
        assert_eq!(expired, vec!["failed-new".to_string(), "older".to_string()]);
        let expired = Retention::Count(1).expired(&backups, 1_000_000);
        assert_eq!(expired, vec!["older".to_string()]);
    }
}
