//! MongoDB replica sets, as documents and decisions: the set's
//! configuration for the Database's pods (kept valid as members come and
//! go), the one-voter-at-a-time steps MongoDB accepts between two
//! configurations, the member `hello` says is primary, and the internal-auth
//! keyfile. MongoDB elects its own primary; the operator only keeps the
//! configuration and observes.
//!
//! The Database controller drives it (`controller/database/replication/
//! mongodb.rs`): pods start through [`INSTANCE_SCRIPT`] as members of the
//! set named after the Database, the operator initiates the set on pod 0
//! ([`plan`], [`initiate`]), adds and removes members one voter at a time
//! ([`reconfig`]), steps a primary down before its pod is removed
//! ([`step_down`]), and labels the pod `hello` says is primary.
//!
//! No replica-set-capable server can be installed here (FerretDB, the
//! MongoDB stand-in, has no replica sets), so the documents and decisions
//! are proven by unit tests only, and the calls on a real set are not
//! (README, Limitations).

use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};

use crate::users::{Target, UserError};

/// The start of every member: the keyfile written for the server alone,
/// then the server as a member of the set (see the script's comments).
pub const INSTANCE_SCRIPT: &str = include_str!("../engine/scripts/mongodb-instance.sh");

/// The key in `<name>-replication` that holds the members' shared key.
pub const KEYFILE_KEY: &str = "keyfile";

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
    /// A server started as a member of a set (`--replSet`) that has no
    /// configuration yet says `isreplicaset: true`; a standalone server,
    /// started without `--replSet`, never does.
    #[serde(default, rename = "isreplicaset")]
    pub is_replica_set: bool,
}

impl Hello {
    /// Whether the server runs outside any replica set: it answers as a
    /// writable server of no set, and was not started as a member.
    pub fn standalone(&self) -> bool {
        self.set_name.is_none() && !self.is_replica_set && self.is_writable_primary
    }
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
/// from) answers as a member waiting for its configuration. A standalone
/// server (started without `--replSet`) cannot be initiated: see
/// [`standalone`].
pub fn needs_initiate(answers: &[(String, Option<Hello>)]) -> bool {
    answers
        .first()
        .is_some_and(|(_, h)| h.as_ref().is_some_and(|h| h.is_replica_set))
        && answers
            .iter()
            .filter_map(|(_, h)| h.as_ref())
            .all(|h| h.set_name.is_none())
}

/// The pods whose servers run standalone, outside any replica set: the
/// operator cannot make them members (their pods must start with
/// `--replSet`), so it says so instead of trying.
pub fn standalone(answers: &[(String, Option<Hello>)]) -> Vec<&str> {
    answers
        .iter()
        .filter(|(_, h)| h.as_ref().is_some_and(Hello::standalone))
        .map(|(pod, _)| pod.as_str())
        .collect()
}

/// A keyfile for the members' internal authentication from `random` bytes:
/// base64 characters, 6 to 1024 of them, as mongod requires.
pub fn keyfile(random: &[u8]) -> String {
    use base64::Engine as _;
    let mut text = base64::engine::general_purpose::STANDARD.encode(random);
    text.truncate(1024);
    text
}

/// What the operator does to the set in one pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing: the set has the configuration it should, or cannot take a
    /// new one now (no primary: an election runs).
    Nothing,
    /// Initiate the set on `pod` (pod 0) with `config`: that member alone,
    /// since MongoDB checks that every member of an initiated set answers.
    Initiate { pod: String, config: SetConfig },
    /// Send `config` to the primary `pod`.
    Reconfig { pod: String, config: SetConfig },
    /// The primary `pod`'s pod is about to be removed (scale down): it
    /// steps down, and is removed once another member is primary.
    StepDown { pod: String },
}

/// The next step for the set `set` of the Database `database` in
/// `namespace`, whose pods answered `answers` (every existing pod, in
/// ordinal order; `None`: it did not answer), whose configuration is
/// `current` (as the primary says; `None` before the set exists), and
/// which keeps the pods `kept` (`spec.replicas`).
///
/// The set holds the kept pods that are in it already or answer: a member
/// that stops answering stays in it (it may return), a new pod joins once
/// its server runs, and only a scale down removes members.
pub fn plan(
    set: &str,
    database: &str,
    namespace: &str,
    answers: &[(String, Option<Hello>)],
    current: Option<&SetConfig>,
    kept: &[String],
) -> Action {
    let host_of = |pod: &str| host(pod, database, namespace);
    if !standalone(answers).is_empty() {
        return Action::Nothing;
    }
    if needs_initiate(answers) {
        let Some((first, _)) = answers.first() else {
            return Action::Nothing;
        };
        return Action::Initiate {
            pod: first.clone(),
            config: desired(set, &[host_of(first)], None),
        };
    }
    let (Some(primary), Some(current)) = (primary(set, answers), current) else {
        return Action::Nothing;
    };
    if !kept.iter().any(|k| k == primary) {
        return Action::StepDown {
            pod: primary.to_owned(),
        };
    }
    let hosts: Vec<String> = kept
        .iter()
        .filter(|pod| {
            let in_set = current.members.iter().any(|m| m.host == host_of(pod));
            let answers = answers
                .iter()
                .any(|(p, hello)| p == *pod && hello.is_some());
            in_set || answers
        })
        .map(|pod| host_of(pod))
        .collect();
    let target = desired(set, &hosts, Some(current));
    next_step(current, &target).map_or(Action::Nothing, |config| Action::Reconfig {
        pod: primary.to_owned(),
        config,
    })
}

/// A member's role and state for `status.replication`, from its `hello`.
pub fn member_state(
    set: &str,
    hello: Option<&Hello>,
) -> database_operator_api::v1::replication::MemberState {
    use database_operator_api::v1::replication::MemberState;
    match hello {
        None => MemberState::Unreachable,
        Some(h) if h.is_writable_primary && h.set_name.as_deref() == Some(set) => {
            MemberState::Primary
        }
        Some(h) if h.secondary && h.set_name.as_deref() == Some(set) => MemberState::Streaming,
        // A standalone server takes writes of its own.
        Some(h) if h.standalone() => MemberState::Primary,
        // Starting, in its initial sync, recovering, or not in the set yet.
        Some(_) => MemberState::CatchingUp,
    }
}

/// How long the connections of [`hello`] and the set's commands may take
/// to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A client of the one server `target` (no discovery of the set).
fn client(target: &Target, authenticate: bool) -> Result<mongodb::Client, UserError> {
    let options = crate::users::mongodb::client_options(target, authenticate, CONNECT_TIMEOUT);
    mongodb::Client::with_options(options).map_err(|e| UserError::Unreachable(redact(&e, target)))
}

fn redact(e: &mongodb::error::Error, target: &Target) -> String {
    crate::users::redact(
        &format!("{}:{}: {e}", target.host, target.port),
        &[target.admin_password.expose()],
    )
}

/// Runs `command` in `admin` on `target`.
async fn admin_command(
    target: &Target,
    authenticate: bool,
    command: Document,
) -> Result<Document, UserError> {
    crate::users::mongodb::reachable(target).await?;
    let client = client(target, authenticate)?;
    client
        .database("admin")
        .run_command(command)
        .await
        .map_err(|e| match e.kind.as_ref() {
            mongodb::error::ErrorKind::Command(_) => UserError::Refused(redact(&e, target)),
            _ => UserError::Unreachable(redact(&e, target)),
        })
}

/// What the member `target` says of itself. `hello` needs no login, so a
/// member in its initial sync, which has no logins yet, answers too.
pub async fn hello(target: &Target) -> Result<Hello, UserError> {
    let answer = admin_command(target, false, doc! { "hello": 1 }).await?;
    mongodb::bson::from_document(answer)
        .map_err(|e| UserError::Refused(format!("{}:{}: hello: {e}", target.host, target.port)))
}

/// The set's configuration, as the member `target` has it.
pub async fn get_config(target: &Target) -> Result<SetConfig, UserError> {
    let answer = admin_command(target, true, doc! { "replSetGetConfig": 1 }).await?;
    let config = answer
        .get_document("config")
        .map_err(|e| UserError::Refused(format!("replSetGetConfig: {e}")))?;
    mongodb::bson::from_document(config.clone())
        .map_err(|e| UserError::Refused(format!("replSetGetConfig: {e}")))
}

/// Initiates the set on `target` (pod 0) with `config`.
pub async fn initiate(target: &Target, config: &SetConfig) -> Result<(), UserError> {
    let config = mongodb::bson::to_document(config)
        .map_err(|e| UserError::Refused(format!("replSetInitiate: {e}")))?;
    admin_command(target, true, doc! { "replSetInitiate": config })
        .await
        .map(drop)
}

/// Sends `config` to the primary `target`.
pub async fn reconfig(target: &Target, config: &SetConfig) -> Result<(), UserError> {
    let config = mongodb::bson::to_document(config)
        .map_err(|e| UserError::Refused(format!("replSetReconfig: {e}")))?;
    admin_command(target, true, doc! { "replSetReconfig": config })
        .await
        .map(drop)
}

/// How long a primary that stepped down may not be elected again: longer
/// than the operator needs to remove it from the set.
pub const STEP_DOWN_SECONDS: i64 = 120;

/// Asks the primary `target` to step down, so that another member is
/// elected before its pod is removed. The server closes its connections as
/// it steps down: a connection lost then is the step down done.
pub async fn step_down(target: &Target) -> Result<(), UserError> {
    match admin_command(
        target,
        true,
        doc! { "replSetStepDown": STEP_DOWN_SECONDS, "secondaryCatchUpPeriodSecs": 30 },
    )
    .await
    {
        Ok(_) | Err(UserError::Unreachable(_)) => Ok(()),
        Err(e) => Err(e),
    }
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
                is_replica_set: set.is_some(),
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
        // Initiate only when pod 0 answers as a member waiting for its
        // configuration and nobody is in a set.
        let fresh = vec![("db-0".to_owned(), waiting()), ("db-1".to_owned(), None)];
        assert!(needs_initiate(&fresh));
        assert!(!needs_initiate(&answers));
        assert!(!needs_initiate(&[("db-0".to_owned(), None)]));
        // A standalone server (started without --replSet) is never initiated.
        let alone = vec![("db-0".to_owned(), standalone_server())];
        assert!(!needs_initiate(&alone));
        assert_eq!(standalone(&alone), ["db-0"]);
        assert!(standalone(&fresh).is_empty() && standalone(&answers).is_empty());
        // hello's own field names, as a member, a member waiting for its
        // configuration and a standalone server answer.
        let parse = |v| serde_json::from_value::<Hello>(v).unwrap();
        assert_eq!(
            parse(serde_json::json!({
                "setName": "db", "isWritablePrimary": true, "secondary": false, "hosts": []
            })),
            Hello {
                set_name: Some("db".into()),
                is_writable_primary: true,
                secondary: false,
                is_replica_set: false,
            }
        );
        assert_eq!(
            parse(serde_json::json!({
                "isWritablePrimary": false, "secondary": false, "isreplicaset": true,
                "info": "Does not have a valid replica set config", "ok": 1.0
            })),
            waiting().unwrap()
        );
        assert_eq!(
            parse(serde_json::json!({"isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0})),
            standalone_server().unwrap()
        );
    }

    fn answer(primary: bool, secondary: bool, set: Option<&str>) -> Option<Hello> {
        Some(Hello {
            set_name: set.map(Into::into),
            is_writable_primary: primary,
            secondary,
            is_replica_set: false,
        })
    }

    /// A server started with `--replSet` before the set has a configuration.
    fn waiting() -> Option<Hello> {
        Some(Hello {
            is_replica_set: true,
            ..Hello::default()
        })
    }

    /// A server started without `--replSet`.
    fn standalone_server() -> Option<Hello> {
        Some(Hello {
            is_writable_primary: true,
            ..Hello::default()
        })
    }

    fn pods(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("db-{i}")).collect()
    }

    #[test]
    fn a_new_set_is_initiated_on_pod_0_alone_then_grows_as_members_start() {
        let kept = pods(3);
        // Pod 0's server runs, not in a set yet; the others start later.
        let fresh = vec![
            ("db-0".to_owned(), waiting()),
            ("db-1".to_owned(), None),
            ("db-2".to_owned(), None),
        ];
        let Action::Initiate { pod, config } = plan("db", "db", "ns", &fresh, None, &kept) else {
            panic!("not initiated")
        };
        assert_eq!(pod, "db-0");
        assert_eq!(config.id, "db");
        assert_eq!(config.version, 1);
        assert_eq!(config.members.len(), 1);
        assert_eq!(config.members[0].host, "db-0.db-headless.ns.svc:27017");
        assert_eq!(
            (config.members[0].votes, config.members[0].priority),
            (1, 1.0)
        );
        // Before pod 0 answers, nothing.
        let silent = vec![("db-0".to_owned(), None), ("db-1".to_owned(), None)];
        assert_eq!(
            plan("db", "db", "ns", &silent, None, &kept),
            Action::Nothing
        );

        // Pod 0 is primary of a one-member set; pods 1 and 2 run: both join,
        // one voter per step, the other as a non-voter meanwhile.
        let one = config;
        let running = vec![
            ("db-0".to_owned(), answer(true, false, Some("db"))),
            ("db-1".to_owned(), waiting()),
            ("db-2".to_owned(), waiting()),
        ];
        let Action::Reconfig { pod, config: step } =
            plan("db", "db", "ns", &running, Some(&one), &kept)
        else {
            panic!("not reconfigured")
        };
        assert_eq!(pod, "db-0");
        assert_eq!(step.version, 2);
        let votes: Vec<i32> = step.members.iter().map(|m| m.votes).collect();
        assert_eq!(votes, [1, 1, 0]);
        // A non-voter is never electable.
        assert!(
            step.members
                .iter()
                .all(|m| m.votes > 0 || m.priority == 0.0)
        );
        let Action::Reconfig { config: last, .. } =
            plan("db", "db", "ns", &running, Some(&step), &kept)
        else {
            panic!("not reconfigured")
        };
        assert_eq!(last.version, 3);
        let votes: Vec<i32> = last.members.iter().map(|m| m.votes).collect();
        assert_eq!(votes, [1, 1, 1]);
        assert_eq!(
            plan("db", "db", "ns", &running, Some(&last), &kept),
            Action::Nothing
        );

        // A member whose server stops answering stays in the set.
        let blip = vec![
            ("db-0".to_owned(), answer(true, false, Some("db"))),
            ("db-1".to_owned(), None),
            ("db-2".to_owned(), answer(false, true, Some("db"))),
        ];
        assert_eq!(
            plan("db", "db", "ns", &blip, Some(&last), &kept),
            Action::Nothing
        );
        // During an election (no primary) the configuration waits.
        let electing = vec![
            ("db-0".to_owned(), None),
            ("db-1".to_owned(), answer(false, true, Some("db"))),
            ("db-2".to_owned(), answer(false, true, Some("db"))),
        ];
        assert_eq!(
            plan("db", "db", "ns", &electing, Some(&last), &kept),
            Action::Nothing
        );
    }

    #[test]
    fn a_scale_down_removes_members_and_steps_a_removed_primary_down_first() {
        let three = desired("db", &hosts(3), None);
        // 3 -> 2 while db-2 is primary: it steps down first.
        let answers = vec![
            ("db-0".to_owned(), answer(false, true, Some("db"))),
            ("db-1".to_owned(), answer(false, true, Some("db"))),
            ("db-2".to_owned(), answer(true, false, Some("db"))),
        ];
        assert_eq!(
            plan("db", "db", "ns", &answers, Some(&three), &pods(2)),
            Action::StepDown { pod: "db-2".into() }
        );
        // Once db-0 is primary, db-2 leaves; two members keep one voter
        // (an even count adds no tolerance), one change per step.
        let answers = vec![
            ("db-0".to_owned(), answer(true, false, Some("db"))),
            ("db-1".to_owned(), answer(false, true, Some("db"))),
            ("db-2".to_owned(), answer(false, true, Some("db"))),
        ];
        let mut config = three;
        let mut steps = 0;
        while let Action::Reconfig { pod, config: next } =
            plan("db", "db", "ns", &answers, Some(&config), &pods(2))
        {
            assert_eq!(pod, "db-0");
            assert_eq!(next.version, config.version + 1);
            let change = |c: &SetConfig| {
                c.members
                    .iter()
                    .filter(|m| m.votes == 1)
                    .map(|m| m.host.clone())
                    .collect::<std::collections::BTreeSet<_>>()
            };
            assert!(
                change(&config).symmetric_difference(&change(&next)).count() <= 1,
                "{config:?} -> {next:?}"
            );
            config = next;
            steps += 1;
            assert!(steps < 5, "no end");
        }
        let left: Vec<(&str, i32)> = config
            .members
            .iter()
            .map(|m| (m.host.as_str(), m.votes))
            .collect();
        assert_eq!(
            left,
            [
                ("db-0.db-headless.ns.svc:27017", 1),
                ("db-1.db-headless.ns.svc:27017", 0)
            ]
        );
    }

    #[test]
    fn states_come_from_hello() {
        use database_operator_api::v1::replication::MemberState;
        assert_eq!(member_state("db", None), MemberState::Unreachable);
        assert_eq!(
            member_state("db", answer(true, false, Some("db")).as_ref()),
            MemberState::Primary
        );
        assert_eq!(
            member_state("db", answer(false, true, Some("db")).as_ref()),
            MemberState::Streaming
        );
        // In its initial sync, or not added yet.
        assert_eq!(
            member_state("db", answer(false, false, Some("db")).as_ref()),
            MemberState::CatchingUp
        );
        assert_eq!(
            member_state("db", waiting().as_ref()),
            MemberState::CatchingUp
        );
        // A standalone server takes writes of its own.
        assert_eq!(
            member_state("db", standalone_server().as_ref()),
            MemberState::Primary
        );
    }

    #[test]
    fn standalone_servers_are_left_alone() {
        // FerretDB, or a server whose pod started without --replSet: the
        // operator neither initiates nor reconfigures.
        let answers = vec![
            ("db-0".to_owned(), standalone_server()),
            ("db-1".to_owned(), waiting()),
        ];
        assert_eq!(
            plan("db", "db", "ns", &answers, None, &pods(2)),
            Action::Nothing
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
