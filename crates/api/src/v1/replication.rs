//! `spec.replication`: how the members of a Database fail over, and how a
//! Database created before the operator replicated joins in.
//!
//! Replication itself needs no setting: a PostgreSQL Database with
//! `replicas > 1` streams from its primary to every other member.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The default of `failoverDelay`.
pub const DEFAULT_FAILOVER_DELAY: Duration = Duration::from_secs(30);
/// The default of `maxFailoverLag`: 16 MiB of WAL, a few seconds of a busy
/// primary's writes.
pub const DEFAULT_MAX_FAILOVER_LAG: &str = "16Mi";

/// How the members of a Database fail over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// How long the primary's server may be unreachable before the most
    /// advanced healthy replica is promoted, as a duration from 5s to 1h
    /// (default 30s). The operator judges the server itself, not only its
    /// pod: a Ready pod whose server does not answer counts as down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"), length(max = 16))]
    #[x_kube(validation = Rule::new("self != '' && duration(self) >= duration('5s') && duration(self) <= duration('1h')")
        .message("failoverDelay must be a duration from 5s to 1h, such as 30s or 2m"))]
    pub failover_delay: Option<String>,

    /// The most WAL a replica may lag behind the old primary and still be
    /// promoted by a failover, as a quantity of bytes (default 16Mi). The
    /// writes in that lag are lost. When every candidate lags further, no
    /// failover happens (the Database says so) unless allowLaggingFailover
    /// is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi)?$"), length(max = 16))]
    pub max_failover_lag: Option<String>,

    /// `async` (the default): a commit returns once the primary has it; a
    /// failover may lose the writes a promoted replica had not received
    /// (at most maxFailoverLag). `sync`: a commit returns only once at
    /// least one replica has it on disk as well (PostgreSQL
    /// `synchronous_standby_names = 'ANY 1 (…)'`), so a failover loses no
    /// acknowledged write. PostgreSQL never falls back to asynchronous
    /// commits: while no replica confirms, commits wait (the Replicating
    /// condition says so). A failover in sync mode waits until every
    /// replica answers, since only one of them may hold the latest
    /// acknowledged writes, unless allowLaggingFailover is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ReplicationMode>,

    /// Promote the most advanced replica even when it lags beyond
    /// maxFailoverLag (or, in sync mode, while a replica that may hold the
    /// latest writes does not answer): availability over the writes in
    /// that lag.
    #[serde(default)]
    pub allow_lagging_failover: bool,

    /// The pod that should be the primary, such as `orders-1`. Setting it to
    /// a streaming replica moves the primary there in a planned switchover:
    /// writes on the old primary stop (its open sessions end), the replica
    /// replays everything the old primary acknowledged, and only then is it
    /// promoted, so no acknowledged write is lost. The old primary rejoins
    /// as a replica. While this is set, the operator keeps the primary there
    /// and switches back to it after a failover once it streams again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub primary: Option<String>,

    /// A Database created before the operator replicated runs its members
    /// beyond the first as independent servers, each with its own data.
    /// Setting this re-seeds them as replicas of the first, which
    /// discards what they hold (PostgreSQL keeps it beside the new data
    /// directory as `<PGDATA>.replaced`). Until then the Database says so
    /// in its Replicating condition, and its pods are left as they are.
    #[serde(default)]
    pub reseed_independent_replicas: bool,
}

/// How a commit waits for replicas: see [`ReplicationSpec::mode`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// A commit waits for the primary only.
    #[default]
    Async,
    /// A commit waits for one replica as well.
    Sync,
}

impl ReplicationSpec {
    /// `mode`, or its default.
    pub fn mode(&self) -> ReplicationMode {
        self.mode.unwrap_or_default()
    }

    /// Whether commits wait for a replica.
    pub fn is_sync(&self) -> bool {
        self.mode() == ReplicationMode::Sync
    }

    /// `failoverDelay`, or its default.
    pub fn failover_delay(&self) -> Duration {
        self.failover_delay
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_FAILOVER_DELAY)
    }

    /// `maxFailoverLag` in bytes, or its default.
    pub fn max_failover_lag_bytes(&self) -> u64 {
        let text = self
            .max_failover_lag
            .as_deref()
            .unwrap_or(DEFAULT_MAX_FAILOVER_LAG);
        super::quantity::bytes(text).unwrap_or(16 << 20)
    }
}

/// What the operator observed of a streaming Database's members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// The pod that is the primary: the operator's decision, which the pods'
    /// example.com/role labels and so the Services follow
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,

    /// Since when the primary's server has not answered (absent while it does)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_unreachable_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// Each member, by pod
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

/// One member's replication, as the operator last observed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The pod
    pub pod: String,
    /// primary or replica
    pub role: String,
    /// What the member is doing
    pub state: MemberState,
    /// How far the replica's received WAL is behind the primary's, in coarse
    /// steps (0, <1Mi, <16Mi, <256Mi, <4Gi, >=4Gi), so that a healthy
    /// cluster at rest writes nothing
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// Since when the member is in this state, for a replica that is not
    /// streaming (absent for the primary and for streaming replicas)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// What a member is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MemberState {
    /// The primary, taking writes.
    Primary,
    /// A replica streaming from the primary, within 16Mi of it.
    Streaming,
    /// A replica that answers but is not streaming, or lags by 16Mi or more
    /// (a new replica copying the primary, one reconnecting).
    CatchingUp,
    /// The member's server does not answer (its pod may be starting).
    Unreachable,
}

/// The coarse steps of [`MemberStatus::lag`], as (upper bound in bytes, text).
pub const LAG_STEPS: [(u64, &str); 5] = [
    (0, "0"),
    (1 << 20, "<1Mi"),
    (16 << 20, "<16Mi"),
    (256 << 20, "<256Mi"),
    (4 << 30, "<4Gi"),
];

/// The step a lag of `bytes` falls in.
pub fn lag_step(bytes: u64) -> &'static str {
    LAG_STEPS
        .iter()
        .find(|(bound, text)| bytes < *bound || (*text == "0" && bytes == 0))
        .map_or(">=4Gi", |(_, text)| text)
}

/// The most bytes a [`lag_step`] text stands for (`None`: unbounded or
/// unknown).
pub fn lag_bound(step: &str) -> Option<u64> {
    LAG_STEPS
        .iter()
        .find(|(_, text)| *text == step)
        .map(|(bound, _)| bound.saturating_sub(u64::from(*bound > 0)))
}

/// Parses the API's durations (`1h`, `2m30s`, `45s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut units = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let factor = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        // Each unit once, in order.
        if number.is_empty()
            || units.contains(c)
            || units.chars().any(|u| "hms".find(u) > "hms".find(c))
        {
            return None;
        }
        units.push(c);
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(factor)?)?;
        number.clear();
    }
    (number.is_empty() && !units.is_empty()).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m30s"), Some(Duration::from_secs(150)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "30", "s", "1s1m", "1m1m", "-1s", "1d", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lag_steps() {
        assert_eq!(lag_step(0), "0");
        assert_eq!(lag_step(1), "<1Mi");
        assert_eq!(lag_step((1 << 20) - 1), "<1Mi");
        assert_eq!(lag_step(1 << 20), "<16Mi");
        assert_eq!(lag_step(5 << 30), ">=4Gi");
        assert_eq!(lag_bound("0"), Some(0));
        assert_eq!(lag_bound("<16Mi"), Some((16 << 20) - 1));
        assert_eq!(lag_bound(">=4Gi"), None);
        for bytes in [0, 1, 1 << 20, 300 << 20] {
            assert!(lag_bound(lag_step(bytes)).unwrap() >= bytes);
        }
    }

    #[test]
    fn defaults() {
        let spec = ReplicationSpec::default();
        assert_eq!(spec.failover_delay(), DEFAULT_FAILOVER_DELAY);
        assert_eq!(spec.max_failover_lag_bytes(), 16 << 20);
        let spec = ReplicationSpec {
            failover_delay: Some("10s".into()),
            max_failover_lag: Some("1Gi".into()),
            ..ReplicationSpec::default()
        };
        assert_eq!(spec.failover_delay(), Duration::from_secs(10));
        assert_eq!(spec.max_failover_lag_bytes(), 1 << 30);
    }
}
