//! When a primary must stop by itself: the decisions of the instance
//! supervisor ([`super`]), without clocks or I/O.
//!
//! The operator promotes a replica once the primary has been gone or
//! unreachable for `spec.replication.failoverDelay`. A primary that the
//! operator cannot see may still be running and taking writes (its node cut
//! off from the rest of the cluster): were it to go on, two servers would
//! take writes. So a primary that has had no answer from the Kubernetes API
//! for half the failover delay stops its server, before the operator can
//! have promoted another; it starts again only once the API answers and
//! says what its role is by then. This is the same rule Patroni applies on
//! Kubernetes (a primary that cannot renew its leader lock demotes itself):
//! a control plane that is down longer than half the failover delay stops
//! the primaries of replicated Databases, which is the price of never
//! having two.
//!
//! A Database of one member has nobody to fail over to: its primary never
//! stops for want of the API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::replication::{PRIMARY, ROLE_LABEL};

/// What the API said about this pod and its Database.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The pod's labels, the role among them.
    pub labels: BTreeMap<String, String>,
    /// The Database's `spec.replicas`.
    pub replicas: i32,
    /// The Database's failover delay.
    pub failover_delay: Duration,
}

impl Observed {
    /// The pod's role label.
    pub fn role(&self) -> Option<&str> {
        self.labels.get(ROLE_LABEL).map(String::as_str)
    }
}

/// What one check of the API found.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The API answered with the pod and its Database.
    Observed(Observed),
    /// The API answered, but not with both (refused, or the Database is
    /// gone): it is reachable, and the role is as last seen.
    Answered,
    /// No answer in time.
    Silent,
}

/// What the supervisor does after a check.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The server goes on.
    Keep,
    /// The server stops, for the reason given; it starts again once the API
    /// answers.
    Stop(String),
}

/// A running server's view of the API.
#[derive(Clone, Debug)]
pub struct Watch {
    primary: bool,
    replicas: i32,
    failover_delay: Duration,
    last_answer: Instant,
}

impl Watch {
    /// A server started at `now` as the API described it.
    pub fn new(observed: &Observed, now: Instant) -> Self {
        Self {
            primary: observed.role() == Some(PRIMARY),
            replicas: observed.replicas,
            failover_delay: observed.failover_delay,
            last_answer: now,
        }
    }

    /// How long a primary goes without an answer before it stops: half the
    /// failover delay, so that it has stopped before the operator promotes
    /// another member.
    pub fn isolated_after(&self) -> Duration {
        self.failover_delay / 2
    }

    /// How often the API is asked: four times within [`Self::isolated_after`],
    /// from once a second to once every five seconds. Each check is two GETs
    /// and no write.
    pub fn check_every(&self) -> Duration {
        (self.isolated_after() / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
    }

    /// Takes in the check made at `now`.
    pub fn observe(&mut self, now: Instant, reply: Reply) -> Verdict {
        match reply {
            Reply::Observed(observed) => {
                // A replica the operator promoted is a primary from now on.
                self.primary = observed.role() == Some(PRIMARY);
                self.replicas = observed.replicas;
                self.failover_delay = observed.failover_delay;
                self.last_answer = now;
                Verdict::Keep
            }
            Reply::Answered => {
                self.last_answer = now;
                Verdict::Keep
            }
            Reply::Silent => {
                let silent = now.saturating_duration_since(self.last_answer);
                if self.primary && self.replicas > 1 && silent >= self.isolated_after() {
                    Verdict::Stop(format!(
                        "this primary has had no answer from the Kubernetes API for {}s (half the failover delay of {}s): the operator may promote another member, so the server stops until the API answers",
                        silent.as_secs(),
                        self.failover_delay.as_secs()
                    ))
                } else {
                    Verdict::Keep
                }
            }
        }
    }
}

/// The pod's labels as the downward API writes them into a file
/// (`key="value"` lines, sorted), which the instance script reads its role
/// from: the supervisor writes the labels the API just confirmed.
pub fn labels_file(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{key}=\"{escaped}\"\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(role: &str, replicas: i32, delay_secs: u64) -> Observed {
        Observed {
            labels: BTreeMap::from([
                (ROLE_LABEL.to_owned(), role.to_owned()),
                ("app.kubernetes.io/instance".to_owned(), "orders".to_owned()),
            ]),
            replicas,
            failover_delay: Duration::from_secs(delay_secs),
        }
    }

    fn after(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_primary_without_answers_stops_at_half_the_failover_delay() {
        let start = Instant::now();
        let mut watch = Watch::new(&observed(PRIMARY, 3, 30), start);
        assert_eq!(watch.isolated_after(), Duration::from_secs(15));
        assert_eq!(watch.check_every(), Duration::from_millis(3750));
        assert_eq!(watch.observe(after(start, 5), Reply::Silent), Verdict::Keep);
        assert_eq!(
            watch.observe(after(start, 14), Reply::Silent),
            Verdict::Keep
        );
        let Verdict::Stop(reason) = watch.observe(after(start, 15), Reply::Silent) else {
            panic!("a primary without answers kept running")
        };
        assert!(reason.contains("for 15s"), "{reason}");
        assert!(reason.contains("failover delay of 30s"), "{reason}");
    }

    #[test]
    fn any_answer_restarts_the_clock() {
        let start = Instant::now();
        let mut watch = Watch::new(&observed(PRIMARY, 2, 10), start);
        assert_eq!(watch.observe(after(start, 4), Reply::Silent), Verdict::Keep);
        // A refusal is an answer: the API is there.
        assert_eq!(
            watch.observe(after(start, 4), Reply::Answered),
            Verdict::Keep
        );
        assert_eq!(watch.observe(after(start, 8), Reply::Silent), Verdict::Keep);
        assert!(matches!(
            watch.observe(after(start, 9), Reply::Silent),
            Verdict::Stop(_)
        ));
    }

    #[test]
    fn replicas_and_lone_primaries_never_stop() {
        let start = Instant::now();
        let mut replica = Watch::new(&observed("replica", 3, 10), start);
        assert_eq!(
            replica.observe(after(start, 600), Reply::Silent),
            Verdict::Keep
        );
        // Nobody to fail over to.
        let mut alone = Watch::new(&observed(PRIMARY, 1, 10), start);
        assert_eq!(
            alone.observe(after(start, 600), Reply::Silent),
            Verdict::Keep
        );
    }

    #[test]
    fn a_promoted_replica_is_watched_as_a_primary_and_settings_follow_the_database() {
        let start = Instant::now();
        let mut watch = Watch::new(&observed("replica", 3, 30), start);
        assert_eq!(
            watch.observe(after(start, 1), Reply::Observed(observed(PRIMARY, 3, 6))),
            Verdict::Keep
        );
        assert_eq!(watch.isolated_after(), Duration::from_secs(3));
        // The shortest delay (5s) still checks once a second.
        assert_eq!(watch.check_every(), Duration::from_secs(1));
        assert!(matches!(
            watch.observe(after(start, 4), Reply::Silent),
            Verdict::Stop(_)
        ));
        // Scaled down to one member: nothing to fence against.
        let mut watch = Watch::new(&observed(PRIMARY, 3, 30), start);
        watch.observe(after(start, 1), Reply::Observed(observed(PRIMARY, 1, 30)));
        assert_eq!(
            watch.observe(after(start, 100), Reply::Silent),
            Verdict::Keep
        );
        // A long delay checks every five seconds at most.
        let slow = Watch::new(&observed(PRIMARY, 3, 3600), start);
        assert_eq!(slow.check_every(), Duration::from_secs(5));
    }

    #[test]
    fn the_labels_file_reads_as_the_downward_api_writes_it() {
        let text = labels_file(&observed(PRIMARY, 3, 30).labels);
        assert_eq!(
            text,
            "app.kubernetes.io/instance=\"orders\"\nexample.com/role=\"primary\"\n"
        );
        // The instance scripts' own reading of it.
        let role = std::process::Command::new("sed")
            .args(["-n", r#"s/^example\.com\/role="\(.*\)"$/\1/p"#])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut sed| {
                use std::io::Write;
                sed.stdin.take().unwrap().write_all(text.as_bytes())?;
                sed.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8(role.stdout).unwrap(), "primary\n");
    }
}
