//! MongoDB replica sets, as documents and decisions: the set's
//! configuration for the Database's pods (kept valid as members come and
//! go), the one-voter-at-a-time steps MongoDB accepts between two
//! configurations, the member `hello` says is primary, and the internal-auth
//! keyfile. MongoDB elects its own primary; the operator only keeps the
//! configuration and observes.
//!
//! No replica-set-capable server can be installed here (FerretDB, the
//! MongoDB stand-in, has no replica sets), so this module is proven by its
//! unit tests only, and is not yet driven by the Database controller
//! (README, Limitations).

use serde::{Deserialize, Serialize};

/// At most seven members of a replica set vote (MongoDB's limit).
pub const MAX_VOTERS: usize = 7;

/// The port every member listens on.
pub const PORT: u16 = 27017;

/// One member of a replica set configuration (`replSetGetConfig` /
/// `replSetReconfig`'s `members[]`), with the fields the operator keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberConfig {
    #[serde(rename = "_id")]
    pub id: i32,
    pub host: String,
    pub votes: i32,
    pub priority: f64,
}

/// A replica set configuration, with the fields the operator keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetConfig {
    #[serde(rename = "_id")]
    pub id: String,
    pub version: i64,
    pub members: Vec<MemberConfig>,
}

/// The address members know `pod` by: its stable name under the headless
/// Service.
pub fn host(pod: &str, database: &str, namespace: &str) -> String {
    format!("{pod}.{database}-headless.{namespace}.svc:{PORT}")
}

/// How many of `members` vote: an odd number, at most [`MAX_VOTERS`], at
/// least one. An even count of voters tolerates no more failures than one
/// fewer and needs a larger majority, so the last member votes only when
/// that makes the count odd. (Two members: one voter; when it is lost no
/// primary is elected, so two members give no automatic failover.)
pub fn voters(members: usize) -> usize {
    let odd = if members.is_multiple_of(2) {
        members.saturating_sub(1)
    } else {
        members
    };
    odd.clamp(1, MAX_VOTERS)
}

/// The configuration the set named `set` should have for `hosts` (in the
/// pods' ordinal order): the first [`voters`] vote with priority 1, the
/// rest neither vote nor become primary (a non-voting member must have
/// priority 0). Members already in `current` keep their `_id`; new ones
/// take the smallest free one. The version is `current`'s, raised by one
/// when anything changed.
pub fn desired(set: &str, hosts: &[String], current: Option<&SetConfig>) -> SetConfig {
    let voting = voters(hosts.len());
    let mut taken: Vec<i32> = current
        .map(|c| {
            c.members
                .iter()
                .filter(|m| hosts.contains(&m.host))
                .map(|m| m.id)
                .collect()
        })
        .unwrap_or_default();
    let members = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let id = current
                .and_then(|c| c.members.iter().find(|m| &m.host == host))
                .map_or_else(
                    || {
                        let free = (0..).find(|n| !taken.contains(n)).unwrap_or(0);
                        taken.push(free);
                        free
                    },
                    |m| m.id,
                );
            let votes = i32::from(i < voting);
            MemberConfig {
                id,
                host: host.clone(),
                votes,
                priority: f64::from(votes),
            }
        })
        .collect();
    let mut config = SetConfig {
        id: set.to_owned(),
        version: current.map_or(1, |c| c.version),
        members,
    };
    if let Some(current) = current
        && !same_members(current, &config)
    {
        config.version = current.version + 1;
    }
    config
}

fn same_members(a: &SetConfig, b: &SetConfig) -> bool {
    let key = |c: &SetConfig| {
        let mut m: Vec<(i32, String, i32, u64)> = c
            .members
            .iter()
            .map(|m| (m.id, m.host.clone(), m.votes, m.priority.to_bits()))
            .collect();
        m.sort_by_key(|x| x.0);
        m
    };
    a.id == b.id && key(a) == key(b)
}

/// The next configuration to send on the way from `current` to `target`,
/// or `None` when they agree. MongoDB accepts a reconfiguration that adds
/// or removes at most one voter at a time, so voting changes go one member
/// per step: first a new voter (or a member gaining its vote), else a
/// voter removed (or losing its vote); non-voting changes ride along.
pub fn next_step(current: &SetConfig, target: &SetConfig) -> Option<SetConfig> {
    if same_members(current, target) {
        return None;
    }
    let votes_in = |c: &SetConfig, host: &str| {
        c.members
            .iter()
            .find(|m| m.host == host)
            .map_or(0, |m| m.votes)
    };
    let gaining: Vec<&MemberConfig> = target
        .members
        .iter()
        .filter(|m| m.votes > votes_in(current, &m.host))
        .collect();
    let losing: Vec<&MemberConfig> = current
        .members
        .iter()
        .filter(|m| m.votes > votes_in(target, &m.host))
        .collect();
    if gaining.len() + losing.len() <= 1 {
        return Some(SetConfig {
            version: current.version + 1,
            ..target.clone()
        });
    }
    // One voting change now: the rest of the members as they are, with
    // non-voting additions and removals of non-voters applied.
    let mut members: Vec<MemberConfig> = current
        .members
        .iter()
        .filter(|m| m.votes > 0 || target.members.iter().any(|t| t.host == m.host))
        .cloned()
        .collect();
    for m in &target.members {
        if !members.iter().any(|c| c.host == m.host) {
            members.push(MemberConfig {
                votes: 0,
                priority: 0.0,
                ..m.clone()
            });
        }
    }
    if let Some(first) = gaining.first() {
        if let Some(m) = members.iter_mut().find(|m| m.host == first.host) {
            m.votes = first.votes;
            m.priority = first.priority;
        }
    } else if let Some(first) = losing.first() {
        match target.members.iter().find(|t| t.host == first.host) {
            Some(kept) => {
                if let Some(m) = members.iter_mut().find(|m| m.host == first.host) {
                    m.votes = kept.votes;
                    m.priority = kept.priority;
                }
            }
            None => members.retain(|m| m.host != first.host),
        }
    }
    members.sort_by_key(|m| m.id);
    Some(SetConfig {
        id: current.id.clone(),
        version: current.version + 1,
        members,
    })
}

/// What `hello` says of a member, with the fields the operator reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The replica set it belongs to (absent before the set is initiated).
    pub set_name: Option<String>,
    #[serde(default)]
    pub is_writable_primary: bool,
    #[serde(default)]
    pub secondary: bool,
}

/// The pod that is the primary: the one member whose `hello` says it takes
/// writes in set `set`. `None` while none does (an election) or, briefly,
/// when two claim it (the old one steps down by itself; labelling either
/// could send writes to the one that loses).
pub fn primary<'a>(set: &str, answers: &'a [(String, Option<Hello>)]) -> Option<&'a str> {
    let mut writable = answers.iter().filter(|(_, hello)| {
        hello
            .as_ref()
            .is_some_and(|h| h.is_writable_primary && h.set_name.as_deref() == Some(set))
    });
    let first = writable.next()?;
    writable.next().is_none().then_some(first.0.as_str())
}

/// Whether the set must be initiated: no member that answers belongs to a
/// set yet, and pod 0 (the first of `answers`, whose data the set starts
/// from) answers.
pub fn needs_initiate(answers: &[(String, Option<Hello>)]) -> bool {
    answers.first().is_some_and(|(_, h)| h.is_some())
        && answers
            .iter()
            .filter_map(|(_, h)| h.as_ref())
            .all(|h| h.set_name.is_none())
}

/// A keyfile for the members' internal authentication from `random` bytes:
/// base64 characters, 6 to 1024 of them, as mongod requires.
pub fn keyfile(random: &[u8]) -> String {
    use base64::Engine as _;
    let mut text = base64::engine::general_purpose::STANDARD.encode(random);
    text.truncate(1024);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| host(&format!("db-{i}"), "db", "ns"))
            .collect()
    }

    fn voting(c: &SetConfig) -> usize {
        c.members.iter().filter(|m| m.votes == 1).count()
    }

    #[test]
    fn votes_stay_odd_and_at_most_seven() {
        let counts: Vec<usize> = (1..=10).map(voters).collect();
        assert_eq!(counts, [1, 1, 3, 3, 5, 5, 7, 7, 7, 7]);
        let config = desired("db", &hosts(9), None);
        assert_eq!(config.members.len(), 9);
        assert_eq!(voting(&config), 7);
        for m in &config.members[7..] {
            assert_eq!(
                (m.votes, m.priority),
                (0, 0.0),
                "a non-voter never becomes primary"
            );
        }
        assert_eq!(config.members[0].host, "db-0.db-headless.ns.svc:27017");
        assert_eq!(config.version, 1);
        let ids: Vec<i32> = config.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn members_keep_their_ids_and_the_version_moves_only_on_change() {
        let three = desired("db", &hosts(3), None);
        assert_eq!(
            desired("db", &hosts(3), Some(&three)),
            three,
            "nothing to change"
        );
        let five = desired("db", &hosts(5), Some(&three));
        assert_eq!(five.version, 2);
        assert_eq!(
            &five.members[..3].iter().map(|m| m.id).collect::<Vec<_>>(),
            &[0, 1, 2]
        );
        // A member removed frees nothing it still needs; a new one takes the
        // smallest free id.
        let mut custom = three.clone();
        custom.members[1].id = 7;
        let grown = desired("db", &hosts(4), Some(&custom));
        let ids: Vec<i32> = grown.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, [0, 7, 2, 1]);
    }

    #[test]
    fn reconfiguration_changes_one_voter_at_a_time() {
        // Scaling 3 -> 5 -> 2: every step MongoDB is sent changes at most
        // one vote, and the path ends at the target.
        let mut current = desired("db", &hosts(3), None);
        for n in [5, 2, 9, 1] {
            let target = desired("db", &hosts(n), Some(&current));
            let mut steps = 0;
            while let Some(next) = next_step(&current, &target) {
                let changed = current
                    .members
                    .iter()
                    .chain(next.members.iter())
                    .map(|m| m.host.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|host| {
                        let votes = |c: &SetConfig| {
                            c.members
                                .iter()
                                .find(|m| &m.host == host)
                                .map_or(0, |m| m.votes)
                        };
                        votes(&current) != votes(&next)
                    })
                    .count();
                assert!(changed <= 1, "{n}: {changed} votes changed in one step");
                assert_eq!(next.version, current.version + 1);
                assert!(voting(&next) >= 1 && voting(&next) <= MAX_VOTERS);
                current = next;
                steps += 1;
                assert!(steps < 20, "no end");
            }
            assert!(
                same_members(&current, &target),
                "{n}: did not reach the target"
            );
        }
        assert_eq!(current.members.len(), 1);
    }

    #[test]
    fn the_primary_is_the_one_writable_member_of_the_set() {
        let hello = |primary: bool, set: Option<&str>| {
            Some(Hello {
                set_name: set.map(Into::into),
                is_writable_primary: primary,
                secondary: !primary,
            })
        };
        let answers = vec![
            ("db-0".to_owned(), hello(false, Some("db"))),
            ("db-1".to_owned(), hello(true, Some("db"))),
            ("db-2".to_owned(), None),
        ];
        assert_eq!(primary("db", &answers), Some("db-1"));
        // Another set's primary does not count; two claiming is an election.
        assert_eq!(primary("other", &answers), None);
        let two = vec![
            ("db-0".to_owned(), hello(true, Some("db"))),
            ("db-1".to_owned(), hello(true, Some("db"))),
        ];
        assert_eq!(primary("db", &two), None);
        // Initiate only when pod 0 answers and nobody is in a set.
        let fresh = vec![
            ("db-0".to_owned(), hello(true, None)),
            ("db-1".to_owned(), None),
        ];
        assert!(needs_initiate(&fresh));
        assert!(!needs_initiate(&answers));
        assert!(!needs_initiate(&[("db-0".to_owned(), None)]));
        // hello's own field names.
        let parsed: Hello = serde_json::from_value(serde_json::json!({
            "setName": "db", "isWritablePrimary": true, "secondary": false, "hosts": []
        }))
        .unwrap();
        assert_eq!(
            parsed,
            Hello {
                set_name: Some("db".into()),
                is_writable_primary: true,
                secondary: false
            }
        );
    }

    #[test]
    fn keyfiles_are_base64_of_the_allowed_length() {
        let key = keyfile(&[7u8; 756]);
        assert_eq!(key.len(), 1008);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        );
        assert_eq!(keyfile(&[0u8; 2000]).len(), 1024);
        assert!(keyfile(&[1u8; 6]).len() >= 6);
    }
}
