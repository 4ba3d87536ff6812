//! The replication step for a MongoDB Database: a replica set, which
//! elects its own primary. The operator initiates the set on pod 0, adds
//! members as their servers start and removes them on a scale down (one
//! voter at a time, [`replica_set::plan`]), steps a primary down before its
//! pod is removed, and only observes the rest: every member's `hello` says
//! which one is primary, and the role labels (and so the Services) follow.
//! No failover decision is the operator's.

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, types};
use database_operator_api::v1::replication::{MemberState, MemberStatus, ReplicationStatus};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{debug, info};

use super::decide::{self, Pod as PodView};
use super::{CHECK_EVERY, Report, label, set_label};
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::events::publish;
use crate::error::Result;
use crate::replication::mongodb::{self as replica_set, Action, Hello};
use crate::replication::{CAUGHT_UP_LABEL, PRIMARY, REPLICA};
use crate::users::Target;

/// The replica set of `db`, whose StatefulSet's pods are `pods` and whose
/// last status is `previous`; `target` reaches a pod's server as the admin.
pub(super) async fn reconcile(
    db: &Database,
    ctx: &Context,
    pods_api: &Api<Pod>,
    pods: &[PodView],
    previous: ReplicationStatus,
    target: impl Fn(&str) -> Target,
) -> Result<Report> {
    let name = db.name_any();
    let namespace = db.namespace().unwrap_or_default();
    let generation = db.metadata.generation;
    let answers: Vec<(String, Option<Hello>)> = join_all(pods.iter().map(|pod| {
        let target = target(&pod.name);
        async move {
            let answer = replica_set::hello(&target).await;
            if let Err(e) = &answer {
                debug!(pod = %pod.name, error = %e, "member did not answer");
            }
            (pod.name.clone(), answer.ok())
        }
    }))
    .await;
    // The pod hello says is primary; while none is (an election, or before
    // the set exists), the one labelled so stays, pod 0 at first.
    let elected = replica_set::primary(&name, &answers);
    let recorded = decide::primary(&name, previous.primary.as_deref(), pods);
    let primary = elected.map_or(recorded, ToOwned::to_owned);
    label(pods_api, pods, &primary).await?;

    let kept = decide::pod_names(&name, db.spec.replicas);
    let current = match elected {
        Some(pod) => replica_set::get_config(&target(pod)).await.ok(),
        None => None,
    };
    let action = replica_set::plan(&name, &name, &namespace, &answers, current.as_ref(), &kept);
    let acting = act(db, ctx, &name, &action, &target).await;

    let mut members: Vec<MemberStatus> = answers
        .iter()
        .map(|(pod, hello)| MemberStatus {
            pod: pod.clone(),
            role: if *pod == primary { PRIMARY } else { REPLICA }.to_owned(),
            state: replica_set::member_state(&name, hello.as_ref()),
            lag: None,
            since: None,
        })
        .collect();
    decide::stamp(&mut members, &previous.members, &now());
    for (pod, caught_up) in decide::caught_up(pods, &members) {
        set_label(
            pods_api,
            &pod,
            CAUGHT_UP_LABEL,
            if caught_up { "true" } else { "false" },
        )
        .await?;
    }
    let behind: Vec<String> = members
        .iter()
        .filter(|m| m.role == REPLICA && m.state != MemberState::Streaming)
        .map(|m| format!("{} is {:?}", m.pod, m.state))
        .collect();
    let standalone = replica_set::standalone(&answers);
    let condition = match (&acting, elected.is_some()) {
        _ if !standalone.is_empty() => Condition::new(
            types::REPLICATING,
            false,
            "StandaloneServers",
            format!(
                "{} answer as standalone servers, not members of the replica set {name} (started without --replSet): the operator cannot make them members",
                standalone.join(", ")
            ),
            generation,
        ),
        (Some(Ok(note)), _) => Condition::new(
            types::REPLICATING,
            false,
            "Reconfiguring",
            note.clone(),
            generation,
        ),
        (Some(Err(refused)), _) => Condition::new(
            types::REPLICATING,
            false,
            "ReplicaSetRefused",
            refused.clone(),
            generation,
        ),
        (None, false) => Condition::new(
            types::REPLICATING,
            false,
            "NoPrimary",
            format!(
                "no member of the replica set {name} says it is primary: MongoDB is electing one, or the set is not initiated yet"
            ),
            generation,
        ),
        (None, true) if behind.is_empty() => Condition::new(
            types::REPLICATING,
            true,
            "AllReplicasStreaming",
            format!("every member of the replica set {name} is a secondary of {primary}"),
            generation,
        ),
        (None, true) => Condition::new(
            types::REPLICATING,
            false,
            "ReplicasNotStreaming",
            behind.join("; "),
            generation,
        ),
    };
    Ok(Report {
        status: Some(ReplicationStatus {
            primary: Some(primary),
            primary_unreachable_since: None,
            members,
        }),
        condition: Some(condition),
        requeue: Some(if matches!(acting, Some(Ok(_))) {
            std::time::Duration::from_secs(2)
        } else {
            CHECK_EVERY
        }),
    })
}

/// Carries out `action` on the set of `db` (named `name`): `None` when
/// there was nothing to do, else what was done, or why the server refused
/// (for the condition: a set that cannot be initiated or reconfigured says
/// so in the status, and the rest of the Database's steps go on).
async fn act(
    db: &Database,
    ctx: &Context,
    name: &str,
    action: &Action,
    target: &impl Fn(&str) -> Target,
) -> Option<std::result::Result<String, String>> {
    let (pod, done, reason, note) = match action {
        Action::Nothing => return None,
        Action::Initiate { pod, config } => (
            pod,
            replica_set::initiate(&target(pod), config).await,
            "ReplicaSetInitiated",
            format!("initiated the replica set {name} on {pod}"),
        ),
        Action::Reconfig { pod, config } => {
            let members: Vec<String> = config
                .members
                .iter()
                .map(|m| format!("{} (votes {})", m.host, m.votes))
                .collect();
            (
                pod,
                replica_set::reconfig(&target(pod), config).await,
                "ReplicaSetReconfigured",
                format!(
                    "the replica set {name} now has the members {}",
                    members.join(", ")
                ),
            )
        }
        Action::StepDown { pod } => (
            pod,
            replica_set::step_down(&target(pod)).await,
            "SteppedDown",
            format!(
                "{pod} stepped down as primary: its pod is removed once another member is elected"
            ),
        ),
    };
    Some(match done {
        Ok(()) => {
            info!(database = %name, %note, "replica set");
            publish(ctx, db, EventType::Normal, reason, note.clone()).await;
            Ok(note)
        }
        Err(e) => {
            debug!(database = %name, %pod, error = %e, "replica set refused");
            Err(format!("{reason}: {pod} refused: {e}"))
        }
    })
}
