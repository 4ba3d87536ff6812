//! The replication decisions of a streaming Database, as pure functions of
//! what the operator observed: which pod is the primary, which role labels
//! pods need, what each member is doing, and whether to fail over.
//!
//! The primary is the operator's decision, recorded in
//! `status.replication.primary` and followed by the pods' role labels (and
//! so by the Services). Before any decision it is pod 0, labelled from the
//! first reconcile that sees it, before any server answers. It changes only
//! by a failover.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use database_operator_api::v1::replication::{
    MemberState, MemberStatus, ReplicationSpec, lag_bound, lag_step,
};

use crate::builders::topology::pod_name;
use crate::controller::shared::clock::elapsed;
use crate::replication::Member;
use crate::replication::{PRIMARY, REPLICA};

/// A pod of the Database, as its labels say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pod {
    pub name: String,
    /// Its `example.com/role` label.
    pub role: Option<String>,
    /// Its `example.com/caught-up` label is `"true"`.
    pub caught_up: bool,
    /// When the pod was created.
    pub created: Option<Time>,
}

/// What a member's server said of itself (`None`: it did not answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub pod: String,
    pub answer: Option<Member>,
}

/// The primary: the recorded decision; else the pod labelled primary (a
/// Database from before the decision was recorded); else pod 0.
pub(crate) fn primary(database: &str, recorded: Option<&str>, pods: &[Pod]) -> String {
    if let Some(recorded) = recorded {
        return recorded.to_owned();
    }
    pods.iter()
        .filter(|p| p.role.as_deref() == Some(PRIMARY))
        .map(|p| p.name.clone())
        .min()
        .unwrap_or_else(|| pod_name(database, 0))
}

/// The pods of the Database `database` with `replicas` members, in ordinal
/// order: `<database>-0` …
pub(crate) fn pod_names(database: &str, replicas: i32) -> Vec<String> {
    (0..replicas).map(|n| pod_name(database, n)).collect()
}

/// The labels pods need so that exactly `primary` is labelled primary:
/// (pod, role) for each pod whose label differs.
pub(crate) fn relabel(pods: &[Pod], primary: &str) -> Vec<(String, &'static str)> {
    pods.iter()
        .filter_map(|pod| {
            let want = if pod.name == primary {
                PRIMARY
            } else {
                REPLICA
            };
            (pod.role.as_deref() != Some(want)).then(|| (pod.name.clone(), want))
        })
        .collect()
}

/// The replicas whose `example.com/caught-up` label must change: (pod,
/// caught up) for each replica that is streaming within 16Mi of the primary
/// but not labelled so, or labelled so but no longer streaming. The
/// primary's label does not matter: the read-only Service selects replicas.
pub(crate) fn caught_up(pods: &[Pod], members: &[MemberStatus]) -> Vec<(String, bool)> {
    members
        .iter()
        .filter(|m| m.role == REPLICA)
        .filter_map(|m| {
            let want = m.state == MemberState::Streaming;
            let pod = pods.iter().find(|p| p.name == m.pod)?;
            (pod.caught_up != want).then(|| (m.pod.clone(), want))
        })
        .collect()
}

/// Each member's status: the primary's position is what replicas lag
/// behind. Without an answer from the primary a replica's lag is the one
/// last recorded in `previous` (it cannot be measured, and is what a
/// failover judges).
pub(crate) fn members(
    primary: &str,
    seen: &[Seen],
    previous: &[MemberStatus],
) -> Vec<MemberStatus> {
    let head = seen
        .iter()
        .find(|s| s.pod == primary)
        .and_then(|s| s.answer.as_ref())
        .filter(|m| !m.in_recovery)
        .map(|m| m.lsn);
    seen.iter()
        .map(|s| {
            let role = if s.pod == primary { PRIMARY } else { REPLICA };
            let recorded = || {
                previous
                    .iter()
                    .find(|p| p.pod == s.pod)
                    .and_then(|p| p.lag.clone())
            };
            let (state, lag) = match (&s.answer, head) {
                (None, _) => (
                    MemberState::Unreachable,
                    (role == REPLICA).then(recorded).flatten(),
                ),
                (Some(m), _) if !m.in_recovery => (MemberState::Primary, None),
                (Some(m), Some(head)) => {
                    let lag = head.saturating_sub(m.received_lsn.unwrap_or(m.lsn));
                    let state = if m.streaming && lag < 16 << 20 {
                        MemberState::Streaming
                    } else {
                        MemberState::CatchingUp
                    };
                    (state, Some(lag_step(lag).to_owned()))
                }
                (Some(m), None) => {
                    let state = if m.streaming {
                        MemberState::Streaming
                    } else {
                        MemberState::CatchingUp
                    };
                    (state, recorded())
                }
            };
            MemberStatus {
                pod: s.pod.clone(),
                role: role.to_owned(),
                state,
                lag,
                since: None,
            }
        })
        .collect()
}

/// Records since when each replica that is not streaming has been in its
/// state: the time recorded in `previous` while the state is the same, else
/// `now`. The primary and streaming replicas carry none, so a healthy
/// cluster's status does not change with time.
pub(crate) fn stamp(members: &mut [MemberStatus], previous: &[MemberStatus], now: &Time) {
    for member in members {
        member.since =
            (member.role == REPLICA && member.state != MemberState::Streaming).then(|| {
                previous
                    .iter()
                    .find(|p| p.pod == member.pod && p.state == member.state)
                    .and_then(|p| p.since.clone())
                    .unwrap_or_else(|| now.clone())
            });
    }
}

/// How long a replica on an older timeline than the primary's may go
/// without streaming before it is restarted: following a promotion takes
/// a standby a few seconds (it reconnects and reads the new timeline's
/// history); one that has not after this received WAL the new primary never
/// had, and cannot follow until it is rewound.
pub(crate) const FOLLOW_GRACE: Duration = Duration::from_secs(30);

/// How long a replica on the primary's timeline may answer without
/// streaming before it is restarted. A replica reconnects by itself within
/// seconds; one that has not for this long cannot (the primary gave up its
/// slot, and the WAL it needs is gone), and the instance script copies the
/// primary afresh when it finds its slot lost.
pub(crate) const STALLED_GRACE: Duration = Duration::from_secs(120);

/// Why a replica is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stuck {
    /// On an older timeline than the primary's for [`FOLLOW_GRACE`].
    Diverged,
    /// On the primary's timeline, not streaming for [`STALLED_GRACE`].
    Stalled,
}

impl Stuck {
    pub(crate) fn grace(self) -> Duration {
        match self {
            Stuck::Diverged => FOLLOW_GRACE,
            Stuck::Stalled => STALLED_GRACE,
        }
    }
}

/// The replicas that cannot follow the primary and why: they answer as
/// standbys but have not streamed, on an older timeline than the primary's
/// for [`FOLLOW_GRACE`], or on its timeline for [`STALLED_GRACE`].
/// Restarting one runs the instance script, which rewinds it to the
/// primary's history, or copies the primary afresh. A pod younger than the
/// grace is left alone: its server may be the one the last restart is still
/// stopping.
pub(crate) fn cannot_follow(
    primary: &str,
    seen: &[Seen],
    members: &[MemberStatus],
    pods: &[Pod],
    now: &Time,
) -> Vec<(String, Stuck)> {
    let Some(timeline) = seen
        .iter()
        .find(|s| s.pod == primary)
        .and_then(|s| s.answer.as_ref())
        .filter(|m| !m.in_recovery)
        .map(|m| m.timeline)
    else {
        return Vec::new();
    };
    let at_least = |t: Option<&Time>, grace: Duration| t.is_some_and(|t| elapsed(t, now) >= grace);
    members
        .iter()
        .filter(|m| m.role == REPLICA && m.state == MemberState::CatchingUp)
        .filter_map(|m| {
            let answer = seen
                .iter()
                .find(|s| s.pod == m.pod)?
                .answer
                .as_ref()
                .filter(|a| a.in_recovery && !a.streaming)?;
            let why = if answer.timeline < timeline {
                Stuck::Diverged
            } else {
                Stuck::Stalled
            };
            let created = pods.iter().find(|p| p.name == m.pod)?.created.as_ref();
            (at_least(m.since.as_ref(), why.grace()) && at_least(created, why.grace()))
                .then(|| (m.pod.clone(), why))
        })
        .collect()
}

/// What to do about the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It answers and takes writes.
    Healthy,
    /// It answers, and `spec.replication.primary` names `to`, a streaming
    /// replica: move the primary there.
    Switchover { to: String },
    /// It answers as a standby: the operator's choice has not been promoted
    /// (an interrupted failover). Promote it.
    Finish,
    /// It has not answered since `since` (seconds, as the caller counts
    /// them); look again at `since + delay`.
    Waiting {
        unanswered_for: Duration,
        delay: Duration,
    },
    /// Promote `pod`, the most advanced replica; `lag` is how far behind
    /// the old primary it last was.
    Promote { pod: String, lag: Option<String> },
    /// A failover is due but no replica may be promoted: why.
    Stuck(String),
    /// The primary answers, and so do these other members as primaries
    /// (they take writes): restart them as replicas.
    Fence { pods: Vec<String> },
}

/// Whether and whom to promote, with the primary unanswered for
/// `unanswered_for` (`None`: it answered), for a Database whose
/// `spec.replicas` keep the pods `kept` ([`pod_names`]).
pub(crate) fn decide(
    primary: &str,
    seen: &[Seen],
    members: &[MemberStatus],
    unanswered_for: Option<Duration>,
    spec: &ReplicationSpec,
    kept: &[String],
) -> Decision {
    // Members other than the primary that take writes: a promotion the
    // operator made and could not record, or a server that was never fenced.
    // A primary fenced by a switchover (read-only, its pod restarting) takes
    // none.
    let mut promoted: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.pod != primary)
        .filter(|s| {
            s.answer
                .as_ref()
                .is_some_and(|m| !m.in_recovery && !m.read_only)
        })
        .collect();
    promoted.sort_by_key(|s| std::cmp::Reverse(s.answer.as_ref().map_or(0, |m| m.lsn)));
    let recorded_lag = |pod: &str| {
        members
            .iter()
            .find(|m| m.pod == pod)
            .and_then(|m| m.lag.clone())
    };
    match seen
        .iter()
        .find(|s| s.pod == primary)
        .and_then(|s| s.answer.as_ref())
    {
        // Chosen, not promoted yet; unless another member already was, which
        // must then stay the only one.
        Some(m) if m.in_recovery => {
            return match promoted.first() {
                Some(other) => Decision::Promote {
                    pod: other.pod.clone(),
                    lag: recorded_lag(&other.pod),
                },
                None => Decision::Finish,
            };
        }
        Some(_) if !promoted.is_empty() => {
            return Decision::Fence {
                pods: promoted.iter().map(|s| s.pod.clone()).collect(),
            };
        }
        Some(_) => {
            // A switchover only to a replica that streams: it can catch up.
            let streams = |to: &str| {
                members
                    .iter()
                    .any(|m| m.pod == to && m.state == MemberState::Streaming)
            };
            // A scale-down that removes the primary's pod moves the primary
            // to the most advanced remaining replica first.
            let leaving = !kept.iter().any(|pod| pod == primary);
            let remaining = || {
                seen.iter()
                    .filter(|s| kept.contains(&s.pod))
                    .filter(|s| streams(&s.pod))
                    .filter_map(|s| Some((s.answer.as_ref()?.received_lsn?, &s.pod)))
                    .max_by_key(|(lsn, pod)| (*lsn, std::cmp::Reverse((*pod).clone())))
                    .map(|(_, pod)| pod.clone())
            };
            let wanted = match spec.primary.as_deref() {
                Some(w) if w != primary => Some(w.to_owned()),
                _ if leaving => remaining(),
                _ => None,
            };
            return match wanted {
                Some(to) if streams(&to) => Decision::Switchover { to },
                _ => Decision::Healthy,
            };
        }
        None => {}
    }
    // A member promoted already is the new primary, whatever its lag and
    // however short the wait: any other choice would make two.
    if let Some(done) = promoted.first() {
        return Decision::Promote {
            pod: done.pod.clone(),
            lag: recorded_lag(&done.pod),
        };
    }
    let delay = spec.failover_delay();
    let unanswered_for = unanswered_for.unwrap_or_default();
    if unanswered_for < delay {
        return Decision::Waiting {
            unanswered_for,
            delay,
        };
    }
    // The most advanced replica that answers as a standby.
    let best = seen
        .iter()
        .filter(|s| s.pod != primary)
        .filter_map(|s| Some((s, s.answer.as_ref().filter(|m| m.in_recovery)?)))
        .max_by_key(|(s, m)| {
            (
                m.received_lsn.unwrap_or(m.lsn).max(m.lsn),
                std::cmp::Reverse(s.pod.clone()),
            )
        });
    let Some((best, _)) = best else {
        return Decision::Stuck("no replica answers".into());
    };
    // In sync mode each acknowledged write is on at least one replica, not
    // necessarily on every one: the most advanced of them holds them all
    // only when every replica answered.
    if spec.is_sync() && !spec.allow_lagging_failover {
        let silent: Vec<&str> = kept
            .iter()
            .filter(|pod| *pod != primary)
            .filter(|pod| {
                !seen
                    .iter()
                    .any(|s| &s.pod == *pod && s.answer.as_ref().is_some_and(|m| m.in_recovery))
            })
            .map(String::as_str)
            .collect();
        if !silent.is_empty() {
            return Decision::Stuck(format!(
                "in sync mode a failover waits until every replica answers, since only one of them may hold the latest acknowledged writes: {} does not; set spec.replication.allowLaggingFailover to promote {} anyway",
                silent.join(", "),
                best.pod
            ));
        }
    }
    let lag = members
        .iter()
        .find(|m| m.pod == best.pod)
        .and_then(|m| m.lag.clone());
    let within = lag
        .as_deref()
        .and_then(lag_bound)
        .is_some_and(|bound| bound <= spec.max_failover_lag_bytes());
    if within || spec.allow_lagging_failover {
        Decision::Promote {
            pod: best.pod.clone(),
            lag,
        }
    } else {
        Decision::Stuck(format!(
            "the most advanced replica, {}, lagged {} behind the primary, beyond maxFailoverLag ({} bytes); set spec.replication.allowLaggingFailover to promote it anyway",
            best.pod,
            lag.as_deref().unwrap_or("an unknown amount"),
            spec.max_failover_lag_bytes()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use database_operator_api::v1::replication::ReplicationMode;

    fn pod(name: &str, role: Option<&str>) -> Pod {
        Pod {
            name: name.into(),
            role: role.map(Into::into),
            caught_up: false,
            created: Some(at(-3600)),
        }
    }

    fn primary_at(lsn: u64) -> Option<Member> {
        Some(Member {
            in_recovery: false,
            timeline: 1,
            lsn,
            received_lsn: None,
            streaming: false,
            read_only: false,
            synchronous_standby_names: String::new(),
            semi_sync: None,
        })
    }

    fn standby(received: u64, streaming: bool) -> Option<Member> {
        Some(Member {
            in_recovery: true,
            timeline: 1,
            lsn: received.saturating_sub(100),
            received_lsn: Some(received),
            streaming,
            read_only: false,
            synchronous_standby_names: String::new(),
            semi_sync: None,
        })
    }

    fn answer(pod: &str, answer: Option<Member>) -> Seen {
        Seen {
            pod: pod.into(),
            answer,
        }
    }

    #[test]
    fn pod_0_is_the_first_primary_and_a_recorded_decision_wins() {
        let pods = [pod("db-0", None), pod("db-1", None)];
        assert_eq!(primary("db", None, &pods), "db-0");
        assert_eq!(primary("db", None, &[]), "db-0", "before any pod exists");
        let labelled = [pod("db-0", Some(REPLICA)), pod("db-1", Some(PRIMARY))];
        assert_eq!(primary("db", None, &labelled), "db-1");
        // A recreated primary pod has lost its label: the record stands.
        let recreated = [pod("db-0", Some(REPLICA)), pod("db-1", None)];
        assert_eq!(primary("db", Some("db-1"), &recreated), "db-1");
    }

    #[test]
    fn only_labels_that_differ_are_written() {
        let pods = [
            pod("db-0", Some(PRIMARY)),
            pod("db-1", None),
            pod("db-2", Some(REPLICA)),
        ];
        assert_eq!(relabel(&pods, "db-0"), [("db-1".to_owned(), REPLICA)]);
        assert_eq!(
            relabel(&pods, "db-2"),
            [
                ("db-0".to_owned(), REPLICA),
                ("db-1".to_owned(), REPLICA),
                ("db-2".to_owned(), PRIMARY)
            ]
        );
        let settled = [pod("db-0", Some(PRIMARY)), pod("db-1", Some(REPLICA))];
        assert!(relabel(&settled, "db-0").is_empty());
    }

    #[test]
    fn only_streaming_replicas_serve_reads() {
        let seen = [
            answer("db-0", primary_at(100 << 20)),
            answer("db-1", standby(100 << 20, true)),
            answer("db-2", standby(1, false)),
            answer("db-3", standby(100 << 20, true)),
        ];
        let status = members("db-0", &seen, &[]);
        let mut pods: Vec<Pod> = ["db-0", "db-1", "db-2", "db-3"]
            .iter()
            .map(|n| pod(n, None))
            .collect();
        pods[3].caught_up = true;
        // A new replica copying the primary is not labelled; one already
        // labelled keeps its label (no write).
        assert_eq!(caught_up(&pods, &status), [("db-1".to_owned(), true)]);
        pods[2].caught_up = true;
        assert_eq!(
            caught_up(&pods, &status),
            [("db-1".to_owned(), true), ("db-2".to_owned(), false)]
        );
    }

    #[test]
    fn member_states_and_coarse_lag() {
        let seen = [
            answer("db-0", primary_at(100 << 20)),
            answer("db-1", standby(100 << 20, true)),
            answer("db-2", standby(50 << 20, true)),
            answer("db-3", standby(100 << 20, false)),
            answer("db-4", None),
        ];
        let got = members("db-0", &seen, &[]);
        let states: Vec<_> = got.iter().map(|m| (m.state, m.lag.as_deref())).collect();
        assert_eq!(
            states,
            [
                (MemberState::Primary, None),
                (MemberState::Streaming, Some("0")),
                (MemberState::CatchingUp, Some("<256Mi")),
                (MemberState::CatchingUp, Some("0")),
                (MemberState::Unreachable, None),
            ]
        );
        // Small movements keep the same text: no status write at rest.
        let moved = [
            answer("db-0", primary_at((100 << 20) + 4096)),
            answer("db-1", standby(100 << 20, true)),
        ];
        assert_eq!(members("db-0", &moved, &[])[1].lag.as_deref(), Some("<1Mi"));
        // With the primary gone, a replica keeps its recorded lag.
        let gone = [answer("db-0", None), answer("db-1", standby(1, true))];
        assert_eq!(members("db-0", &gone, &got)[1].lag.as_deref(), Some("0"));
    }

    fn spec() -> ReplicationSpec {
        ReplicationSpec::default()
    }

    #[test]
    fn a_primary_that_answers_is_kept() {
        let seen = [
            answer("db-0", primary_at(10)),
            answer("db-1", standby(10, true)),
        ];
        assert_eq!(
            decide("db-0", &seen, &[], None, &spec(), &pod_names("db", 3)),
            Decision::Healthy
        );
        // Chosen but not promoted yet (the operator stopped half-way).
        let seen = [answer("db-1", standby(10, false))];
        assert_eq!(
            decide("db-1", &seen, &[], None, &spec(), &pod_names("db", 3)),
            Decision::Finish
        );
    }

    #[test]
    fn a_switchover_goes_to_the_named_replica_once_it_streams() {
        let seen = [
            answer("db-0", primary_at(10)),
            answer("db-1", standby(10, true)),
            answer("db-2", standby(10, false)),
        ];
        let status = members("db-0", &seen, &[]);
        let to = |pod: &str| ReplicationSpec {
            primary: Some(pod.into()),
            ..spec()
        };
        assert_eq!(
            decide(
                "db-0",
                &seen,
                &status,
                None,
                &to("db-1"),
                &pod_names("db", 3)
            ),
            Decision::Switchover { to: "db-1".into() }
        );
        // Not streaming: wait (the primary stays, and is kept healthy).
        assert_eq!(
            decide(
                "db-0",
                &seen,
                &status,
                None,
                &to("db-2"),
                &pod_names("db", 3)
            ),
            Decision::Healthy
        );
        // Already there.
        assert_eq!(
            decide(
                "db-0",
                &seen,
                &status,
                None,
                &to("db-0"),
                &pod_names("db", 3)
            ),
            Decision::Healthy
        );
        // A switchover never replaces a failover: with the primary gone the
        // most advanced replica wins, named or not.
        let gone = [
            answer("db-0", None),
            answer("db-1", standby(5, false)),
            answer("db-2", standby(9, false)),
        ];
        let recorded = members("db-0", &seen, &[]);
        let decision = decide(
            "db-0",
            &gone,
            &recorded,
            Some(Duration::from_secs(60)),
            &to("db-1"),
            &pod_names("db", 3),
        );
        assert_eq!(
            decision,
            Decision::Promote {
                pod: "db-2".into(),
                lag: Some("0".into())
            }
        );
    }

    #[test]
    fn a_scale_down_moves_the_primary_off_a_leaving_pod_first() {
        // Scaling from 3 to 2 with the primary on db-2.
        let seen = [
            answer("db-0", standby(90, true)),
            answer("db-1", standby(100, true)),
            answer("db-2", primary_at(100)),
        ];
        let status = members("db-2", &seen, &[]);
        assert_eq!(
            decide("db-2", &seen, &status, None, &spec(), &pod_names("db", 2)),
            Decision::Switchover { to: "db-1".into() }
        );
        // Staying at 3: nothing moves.
        assert_eq!(
            decide("db-2", &seen, &status, None, &spec(), &pod_names("db", 3)),
            Decision::Healthy
        );
        // No remaining replica streams: the primary stays (and its pod too,
        // see topology::statefulset_replicas) until one does.
        let lagging = [
            answer("db-0", standby(1, false)),
            answer("db-1", None),
            answer("db-2", primary_at(100)),
        ];
        let status = members("db-2", &lagging, &[]);
        assert_eq!(
            decide(
                "db-2",
                &lagging,
                &status,
                None,
                &spec(),
                &pod_names("db", 2)
            ),
            Decision::Healthy
        );
    }

    #[test]
    fn failover_waits_for_the_delay_then_promotes_the_most_advanced_replica() {
        let before = [
            answer("db-0", primary_at(500)),
            answer("db-1", standby(400, true)),
            answer("db-2", standby(500, true)),
        ];
        let recorded = members("db-0", &before, &[]);
        let now = [
            answer("db-0", None),
            answer("db-1", standby(400, false)),
            answer("db-2", standby(500, false)),
        ];
        let status = members("db-0", &now, &recorded);
        let wait = decide(
            "db-0",
            &now,
            &status,
            Some(Duration::from_secs(10)),
            &spec(),
            &pod_names("db", 3),
        );
        assert_eq!(
            wait,
            Decision::Waiting {
                unanswered_for: Duration::from_secs(10),
                delay: Duration::from_secs(30)
            }
        );
        assert_eq!(
            decide(
                "db-0",
                &now,
                &status,
                Some(Duration::from_secs(30)),
                &spec(),
                &pod_names("db", 3)
            ),
            Decision::Promote {
                pod: "db-2".into(),
                lag: Some("0".into())
            }
        );
    }

    #[test]
    fn a_ready_pod_whose_server_is_dead_counts_as_down() {
        // Only the servers' answers count: pods are not even an input.
        let now = [answer("db-0", None), answer("db-1", standby(5, false))];
        let decision = decide(
            "db-0",
            &now,
            &[],
            Some(Duration::from_secs(31)),
            &spec(),
            &pod_names("db", 3),
        );
        assert!(
            matches!(decision, Decision::Stuck(_)),
            "{decision:?}: lag unknown"
        );
    }

    #[test]
    fn lagging_replicas_are_not_promoted_unless_allowed() {
        let before = [
            answer("db-0", primary_at(1 << 30)),
            answer("db-1", standby(1 << 20, true)),
        ];
        let recorded = members("db-0", &before, &[]);
        assert_eq!(recorded[1].lag.as_deref(), Some("<4Gi"));
        let now = [
            answer("db-0", None),
            answer("db-1", standby(1 << 20, false)),
        ];
        let status = members("db-0", &now, &recorded);
        let after = Some(Duration::from_secs(60));
        let Decision::Stuck(why) =
            decide("db-0", &now, &status, after, &spec(), &pod_names("db", 3))
        else {
            panic!("a replica 1 GiB behind was promoted");
        };
        assert!(
            why.contains("maxFailoverLag") && why.contains("db-1"),
            "{why}"
        );
        let allow = ReplicationSpec {
            allow_lagging_failover: true,
            ..spec()
        };
        assert!(matches!(
            decide("db-0", &now, &status, after, &allow, &pod_names("db", 3)),
            Decision::Promote { .. }
        ));
        let generous = ReplicationSpec {
            max_failover_lag: Some("4Gi".into()),
            ..spec()
        };
        assert!(matches!(
            decide("db-0", &now, &status, after, &generous, &pod_names("db", 3)),
            Decision::Promote { .. }
        ));
    }

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    #[test]
    fn a_replica_that_cannot_follow_a_new_timeline_is_restarted_after_a_grace() {
        let on = |timeline: u32, member: Option<Member>| member.map(|m| Member { timeline, ..m });
        // db-2 received WAL of timeline 1 that db-1, promoted on timeline 2,
        // never had: it answers, but does not stream.
        let seen = [
            answer("db-0", on(1, standby(1 << 20, true))),
            answer("db-1", on(2, primary_at(2 << 20))),
            answer("db-2", on(1, standby(1 << 20, false))),
        ];
        let mut pods: Vec<Pod> = ["db-0", "db-1", "db-2"]
            .iter()
            .map(|n| pod(n, None))
            .collect();
        let mut first = members("db-1", &seen, &[]);
        stamp(&mut first, &[], &at(0));
        assert_eq!(first[2].since, Some(at(0)));
        assert_eq!(first[1].since, None, "the primary carries no time");
        assert!(
            cannot_follow("db-1", &seen, &first, &pods, &at(5)).is_empty(),
            "within the grace"
        );
        // Later passes keep the first time (no status write while nothing changes).
        let mut later = members("db-1", &seen, &first);
        stamp(&mut later, &first, &at(40));
        assert_eq!(later, first);
        assert_eq!(
            cannot_follow("db-1", &seen, &later, &pods, &at(40)),
            [("db-2".to_owned(), Stuck::Diverged)]
        );
        // Its pod, just recreated by that restart, is not restarted again
        // while its old server may still be stopping.
        pods[2].created = Some(at(39));
        assert!(cannot_follow("db-1", &seen, &later, &pods, &at(40)).is_empty());
        pods[2].created = Some(at(-3600));
        // db-0, streaming on the old timeline a moment after the promotion,
        // is following: it is never restarted. A replica on the primary's
        // timeline that does not stream (its slot lost) is, after a longer
        // grace.
        let same = [
            answer("db-1", on(2, primary_at(2 << 20))),
            answer("db-2", on(2, standby(1 << 20, false))),
        ];
        let mut status = members("db-1", &same, &[]);
        stamp(&mut status, &[], &at(0));
        assert!(cannot_follow("db-1", &same, &status, &pods, &at(100)).is_empty());
        assert_eq!(
            cannot_follow("db-1", &same, &status, &pods, &at(120)),
            [("db-2".to_owned(), Stuck::Stalled)]
        );
        // Without a primary that answers, nothing is judged.
        let headless = [answer("db-2", on(1, standby(1 << 20, false)))];
        assert!(cannot_follow("db-1", &headless, &later, &pods, &at(100)).is_empty());
        // Once it streams, its time is gone.
        let streaming = [
            answer("db-1", on(2, primary_at(2 << 20))),
            answer("db-2", on(2, standby(2 << 20, true))),
        ];
        let mut healed = members("db-1", &streaming, &later);
        stamp(&mut healed, &later, &at(60));
        assert_eq!(healed[1].since, None);
    }

    #[test]
    fn in_sync_mode_a_failover_waits_for_every_replica() {
        let sync = ReplicationSpec {
            mode: Some(ReplicationMode::Sync),
            ..spec()
        };
        let before = [
            answer("db-0", primary_at(1 << 20)),
            answer("db-1", standby(1 << 20, true)),
            answer("db-2", standby(1 << 20, true)),
        ];
        let recorded = members("db-0", &before, &[]);
        let after = Some(Duration::from_secs(60));
        // db-2 may be the one replica that confirmed the last commits.
        let now = [
            answer("db-0", None),
            answer("db-1", standby(1 << 20, false)),
            answer("db-2", None),
        ];
        let status = members("db-0", &now, &recorded);
        let Decision::Stuck(why) = decide("db-0", &now, &status, after, &sync, &pod_names("db", 3))
        else {
            panic!("promoted while a replica that may hold acknowledged writes was silent");
        };
        assert!(why.contains("db-2") && why.contains("sync"), "{why}");
        // Async mode promotes db-1 (its lag is within the bound).
        assert!(matches!(
            decide("db-0", &now, &status, after, &spec(), &pod_names("db", 3)),
            Decision::Promote { pod, .. } if pod == "db-1"
        ));
        // A pod that does not exist is as silent as one that does not answer.
        let gone = [
            answer("db-0", None),
            answer("db-1", standby(1 << 20, false)),
        ];
        assert!(matches!(
            decide("db-0", &gone, &status, after, &sync, &pod_names("db", 3)),
            Decision::Stuck(_)
        ));
        // Once every replica answers, the most advanced one holds every
        // acknowledged write.
        let all = [
            answer("db-0", None),
            answer("db-1", standby(1 << 20, false)),
            answer("db-2", standby((1 << 20) + 10, false)),
        ];
        let status = members("db-0", &all, &recorded);
        assert!(matches!(
            decide("db-0", &all, &status, after, &sync, &pod_names("db", 3)),
            Decision::Promote { pod, .. } if pod == "db-2"
        ));
        // The user may choose availability.
        let allow = ReplicationSpec {
            allow_lagging_failover: true,
            ..sync
        };
        assert!(matches!(
            decide("db-0", &now, &status, after, &allow, &pod_names("db", 3)),
            Decision::Promote { pod, .. } if pod == "db-1"
        ));
    }

    #[test]
    fn a_promotion_that_was_not_recorded_is_adopted_never_repeated() {
        // The operator promoted db-1 and stopped before recording it: the
        // next pass must not promote db-2 as well.
        let now = [
            answer("db-0", None),
            answer("db-1", primary_at(900)),
            answer("db-2", standby(950, false)),
        ];
        let after = Some(Duration::from_secs(60));
        assert_eq!(
            decide("db-0", &now, &[], after, &spec(), &pod_names("db", 3)),
            Decision::Promote {
                pod: "db-1".into(),
                lag: None
            }
        );
        // However short the wait so far.
        assert!(matches!(
            decide("db-0", &now, &[], Some(Duration::from_secs(1)), &spec(), &pod_names("db", 3)),
            Decision::Promote { pod, .. } if pod == "db-1"
        ));
    }

    #[test]
    fn a_second_member_taking_writes_is_fenced() {
        let now = [
            answer("db-0", primary_at(900)),
            answer("db-1", primary_at(100)),
            answer("db-2", standby(900, true)),
        ];
        assert_eq!(
            decide("db-0", &now, &[], None, &spec(), &pod_names("db", 3)),
            Decision::Fence {
                pods: vec!["db-1".into()]
            }
        );
    }

    #[test]
    fn a_primary_fenced_by_a_switchover_is_left_to_restart() {
        let mut fenced = primary_at(100);
        fenced.as_mut().unwrap().read_only = true;
        let now = [
            answer("db-0", primary_at(200)),
            answer("db-1", fenced),
            answer("db-2", standby(200, true)),
        ];
        assert_eq!(
            decide("db-0", &now, &[], None, &spec(), &pod_names("db", 3)),
            Decision::Healthy
        );
    }

    #[test]
    fn nobody_is_promoted_when_no_replica_answers() {
        let now = [answer("db-0", None), answer("db-1", None)];
        assert_eq!(
            decide(
                "db-0",
                &now,
                &[],
                Some(Duration::from_secs(600)),
                &spec(),
                &pod_names("db", 3)
            ),
            Decision::Stuck("no replica answers".into())
        );
    }
}
