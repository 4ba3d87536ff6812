//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas of
//! the operator never reconcile at once. The rule is client-go's: whoever
//! holds an unexpired lease leads; a follower takes the lease once its
//! holder has not renewed it for `leaseDurationSeconds`; every write is a
//! replace with the read resourceVersion, so of two candidates only one wins.

use std::time::Duration;

use crate::error::is_conflict;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

/// What a candidate should do with the lease it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or its holder let it expire (or released it).
    Take,
    /// We hold it.
    Renew,
    /// Someone else holds it and renews it.
    Follow { holder: String },
}

/// The pure rule: who may write `spec` at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Take;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expired = spec
        .renew_time
        .as_ref()
        .is_none_or(|renewed| renewed.0.as_second() + duration < now.as_second());
    if expired {
        Decision::Take
    } else {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    }
}

/// This replica's name in the Lease: the pod's name (or the host's) and a
/// random suffix, so a restarted process never mistakes the lease of its
/// previous life for its own.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "database-operator".into());
    format!("{base}_{:08x}", rand::random::<u32>())
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            duration: Duration::from_secs(15),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, previous: Option<&LeaseSpec>, take: bool, now: Timestamp) -> LeaseSpec {
        let previous = previous.cloned().unwrap_or_default();
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: if take {
                Some(MicroTime(now))
            } else {
                previous.acquire_time.clone()
            },
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0)
                    + i32::from(take && previous.holder_identity.is_some()),
            ),
            ..previous
        }
    }

    /// One attempt to take or renew the lease: `Ok(true)` while we lead.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, true, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let take = match decide(lease.spec.as_ref(), &self.identity, now) {
            Decision::Follow { .. } => return Ok(false),
            Decision::Take => true,
            Decision::Renew => false,
        };
        lease.spec = Some(self.spec(lease.spec.as_ref(), take, now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Another candidate wrote first.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_lead().await {
                Ok(true) => {
                    info!(identity = %self.identity, lease = %self.name, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(error) => warn!(%error, "could not read or take the lease"),
            }
            tokio::time::sleep(self.duration / 5).await;
        }
    }

    /// Renews the lease while we lead; returns when leadership is lost: the
    /// lease went to another holder, or could not be renewed for two thirds
    /// of its duration — giving up before it expires, so we have stopped
    /// before another replica can take it (client-go's renew deadline).
    pub async fn keep(&self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_lead().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    warn!(%error, "could not renew the lease");
                    if renewed.elapsed() >= self.duration * 2 / 3 {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up on shutdown, so a follower takes over at once
    /// rather than after the lease expires.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(error) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(%error, "could not release the lease");
        } else {
            info!(lease = %self.name, "released the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now().as_second();
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(
                Timestamp::from_second(now - renewed_secs_ago).unwrap(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_live_lease_is_followed_an_expired_or_released_one_is_taken() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Decision::Take);
        assert_eq!(decide(Some(&held("a", 3, 15)), "a", now), Decision::Renew);
        assert_eq!(
            decide(Some(&held("b", 3, 15)), "a", now),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(decide(Some(&held("b", 20, 15)), "a", now), Decision::Take);
        let released = LeaseSpec {
            holder_identity: None,
            ..held("b", 0, 1)
        };
        assert_eq!(decide(Some(&released), "a", now), Decision::Take);
    }
}
