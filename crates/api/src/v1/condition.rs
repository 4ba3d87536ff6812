//! Standard Kubernetes conditions and the one rule that keeps them honest:
//! `lastTransitionTime` moves only when `status` changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The well-known condition types the operator reports.
pub mod types {
    /// The database accepts connections on every desired replica.
    pub const READY: &str = "Ready";
    /// Every replica of a streaming Database streams from the primary.
    pub const REPLICATING: &str = "Replicating";
    /// The operator is moving the world towards the spec (creating, scaling, updating).
    pub const PROGRESSING: &str = "Progressing";
    /// The database cannot reach or keep the desired state.
    pub const DEGRADED: &str = "Degraded";
    /// Cleanup on deletion could not finish; the message names what was left behind.
    pub const CLEANUP_FAILED: &str = "CleanupFailed";
    /// spec.restore has filled the database (False while it runs or when it failed).
    pub const RESTORED: &str = "Restored";
    /// The latest restore drill restored the newest backup and found the data intact.
    pub const BACKUP_VERIFIED: &str = "BackupVerified";
    /// Whether the backup method's schedule is in place (reported for method velero).
    pub const BACKUP_CONFIGURED: &str = "BackupConfigured";
    /// A new operator version builds another pod template for the same
    /// spec; the pods keep theirs until the update is approved.
    pub const UPDATE_PENDING: &str = "UpdatePending";
}

/// Whether a condition holds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell.
    #[default]
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// One observation about an object, following Kubernetes API conventions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition, e.g. Ready, Progressing, Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: True, False or Unknown.
    pub status: ConditionStatus,
    /// Last time the condition's status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Unique, one-word, CamelCase reason for the condition's last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable message with details about the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The object's generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition without a transition time; [`set_condition`] stamps it.
    pub fn new(
        type_: &str,
        status: impl Into<ConditionStatus>,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status: status.into(),
            last_transition_time: None,
            reason: reason.to_owned(),
            message: message.into(),
            observed_generation,
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Puts `new` into `conditions`, replacing the one of the same type.
///
/// The transition time is taken from the existing condition when the status is
/// unchanged, and is `now` otherwise, so a resync never moves it.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: &Time) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            new.last_transition_time = if existing.status == new.status {
                existing
                    .last_transition_time
                    .clone()
                    .or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            };
            *existing = new;
        }
        None => {
            new.last_transition_time = Some(now.clone());
            conditions.push(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_new_condition_is_stamped_now() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Creating", "", Some(1)),
            &at(10),
        );
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
    }

    #[test]
    fn same_status_keeps_the_transition_time_but_takes_the_new_message() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Creating", "0/1", Some(1)),
            &at(10),
        );
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Creating", "0/3", Some(2)),
            &at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(at(10)));
        assert_eq!(conditions[0].message, "0/3");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn a_status_change_moves_the_transition_time() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Creating", "", None),
            &at(10),
        );
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "Running", "", None),
            &at(30),
        );
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(conditions[0].last_transition_time, Some(at(30)));
    }

    #[test]
    fn conditions_of_other_types_are_left_alone() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "A", "", None),
            &at(1),
        );
        set_condition(
            &mut conditions,
            Condition::new("Degraded", false, "B", "", None),
            &at(2),
        );
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "C", "", None),
            &at(3),
        );
        assert_eq!(
            find(&conditions, "Degraded").unwrap().last_transition_time,
            Some(at(2))
        );
    }
}
