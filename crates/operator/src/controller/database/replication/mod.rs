//! The replication step of the Database controller, for a streaming
//! Database: the replication Secret, the role labels on the pods, the
//! replication login and slots on the primary, each member's state, and
//! failover. The decisions are [`decide`]'s pure functions; this file only
//! observes and acts.
//!
//! A failover promotes the most advanced replica (`pg_promote()`, a new
//! timeline), records the new primary in `status.replication.primary`
//! before anything else, moves the role labels (and so the Services), and
//! deletes the old primary's pod: whatever its server was doing, it
//! restarts through the instance script, which rewinds it to the new
//! primary's history and starts it as a replica.

pub(crate) mod decide;

use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, types};
use database_operator_api::v1::replication::{MemberState, ReplicationStatus};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::apply::patch_params;
use crate::builders::meta::{Names, selector_string};
use crate::builders::secret::{generate_password, replication_secret};
use crate::builders::topology::Topology;
use crate::controller::Context;
use crate::controller::database::admin_secret::create_once;
use crate::controller::shared::clock::{elapsed, now};
use crate::controller::shared::events::publish;
use crate::controller::user::{admin_target, secret_value};
use crate::engine::{PASSWORD_KEY, driver_of};
use crate::error::{Result, StepContext};
use crate::replication::{self, CAUGHT_UP_LABEL, ROLE_LABEL, postgresql};
use crate::users::{Password, Target};
use decide::{Decision, Pod as PodView, Seen};

/// How often a streaming Database with replicas is looked at when nothing
/// else wakes it: the failover delay is judged at this resolution.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);

/// What the replication step found, for the status step.
pub(crate) struct Report {
    pub status: Option<ReplicationStatus>,
    pub condition: Option<Condition>,
    /// When to look again at the latest.
    pub requeue: Option<Duration>,
}

/// The replication step of `db`, whose pods run as `topology`.
pub(crate) async fn reconcile(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    topology: Topology,
) -> Result<Report> {
    let generation = db.metadata.generation;
    if !topology.is_streaming() {
        // An engine that replicates, on a Database from before it did.
        let independent = db.spec.replicas > 1 && driver_of(&db.spec).streaming().is_some();
        return Ok(Report {
            status: None,
            condition: independent.then(|| {
                Condition::new(
                    types::REPLICATING,
                    false,
                    "IndependentMembers",
                    "this Database was created before the operator replicated: its members beyond the first are servers of their own, with their own data, and the Services send every client to the first; set spec.replication.reseedIndependentReplicas to re-seed them as replicas, which discards what they hold",
                    generation,
                )
            }),
            requeue: None,
        });
    }
    let name = db.name_any();
    let names = Names(&name);
    create_once(
        &ctx.client,
        &ctx.stores.secrets,
        namespace,
        &names.replication(),
        || replication_secret(db, generate_password()),
    )
    .await
    .step("creating the replication Secret", names.replication())?;

    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), namespace);
    let mut pods: Vec<PodView> = pods_api
        // The StatefulSet's pods only: the backup, restore and drill Jobs'
        // pods carry the Database's selector labels too.
        .list_metadata(&ListParams::default().labels(&format!(
            "{},{}={}",
            selector_string(db),
            database_operator_api::v1::labels::COMPONENT,
            crate::builders::statefulset::COMPONENT
        )))
        .await?
        .items
        .into_iter()
        .map(|p| PodView {
            role: p.labels().get(ROLE_LABEL).cloned(),
            caught_up: p.labels().get(CAUGHT_UP_LABEL).map(String::as_str) == Some("true"),
            created: p.metadata.creation_timestamp.clone(),
            name: p.name_any(),
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let previous = db
        .status
        .as_ref()
        .and_then(|s| s.replication.clone())
        .unwrap_or_default();
    let primary = decide::primary(&name, previous.primary.as_deref(), &pods);
    label(&pods_api, &pods, &primary).await?;

    if db.spec.replicas < 2 && pods.len() < 2 {
        return Ok(Report {
            status: Some(ReplicationStatus {
                primary: Some(primary),
                ..ReplicationStatus::default()
            }),
            condition: None,
            requeue: None,
        });
    }

    // What each member's server says of itself, asked as the admin login
    // (found at the primary Service; `Members::target` points it at each pod).
    let Some(admin) = admin_target(db, ctx, namespace).await? else {
        return Ok(Report {
            status: Some(ReplicationStatus {
                primary: Some(primary),
                ..previous
            }),
            condition: None,
            requeue: Some(CHECK_EVERY),
        });
    };
    let members_of = Members {
        db,
        ctx,
        namespace,
        admin: &admin,
        pods_api: &pods_api,
        pods: &pods,
    };
    let seen: Vec<Seen> = join_all(pods.iter().map(|pod| {
        let target = members_of.target(&pod.name);
        async move {
            let answer = postgresql::member(&target).await;
            if let Err(e) = &answer {
                // Every check: the state is in status.replication, not the log.
                tracing::debug!(pod = %pod.name, error = %e, "member did not answer");
            }
            Seen {
                pod: pod.name.clone(),
                answer: answer.ok(),
            }
        }
    }))
    .await;
    let spec = db.spec.replication.clone().unwrap_or_default();
    let kept = decide::pod_names(&name, db.spec.replicas);
    keep_commit_mode(&members_of, &seen, &kept, spec.is_sync()).await?;
    let now = now();
    let mut members = decide::members(&primary, &seen, &previous.members);
    decide::stamp(&mut members, &previous.members, &now);
    for (pod, caught_up) in decide::caught_up(&pods, &members) {
        let value = if caught_up { "true" } else { "false" };
        set_label(&pods_api, &pod, CAUGHT_UP_LABEL, value).await?;
    }
    let answered = seen.iter().any(|s| s.pod == primary && s.answer.is_some());
    let since = (!answered).then(|| {
        previous
            .primary_unreachable_since
            .clone()
            .unwrap_or(now.clone())
    });
    let unanswered_for = since.as_ref().map(|s| elapsed(s, &now));
    let decision = decide::decide(&primary, &seen, &members, unanswered_for, &spec, &kept);

    let mut status = ReplicationStatus {
        primary: Some(primary.clone()),
        primary_unreachable_since: since,
        members,
    };
    let mut requeue = CHECK_EVERY;
    let condition = match decision {
        Decision::Healthy => {
            let primary_target = members_of.target(&primary);
            let replicas: Vec<String> = pods
                .iter()
                .filter(|p| p.name != primary)
                .map(|p| p.name.clone())
                .collect();
            let lagging: Vec<String> = status
                .members
                .iter()
                .filter(|m| m.role == replication::REPLICA && m.state != MemberState::Streaming)
                .map(|m| format!("{} is {:?}", m.pod, m.state))
                .collect();
            if !lagging.is_empty() {
                // A replica that cannot stream may be waiting for its login.
                ensure_login(ctx, namespace, &names, &primary_target).await?;
            }
            for (pod, why) in decide::cannot_follow(&primary, &seen, &status.members, &pods, &now) {
                members_of.restart(&pod).await?;
                let seconds = why.grace().as_secs();
                let note = match why {
                    decide::Stuck::Diverged => format!(
                        "{pod} has not followed {primary}'s timeline for {seconds}s: it received WAL that {primary} never had; restarted, to be rewound to {primary}'s history"
                    ),
                    decide::Stuck::Stalled => format!(
                        "{pod} has not streamed from {primary} for {seconds}s; restarted: it streams again, or, when {primary} no longer has the WAL it needs (its slot lost), it is copied afresh"
                    ),
                };
                warn!(database = %name, %note, "rewinding a replica");
                publish(ctx, db, EventType::Warning, "RewindingReplica", note).await;
            }
            let slots = postgresql::ensure_slots(&primary_target, &name, &replicas)
                .await
                .step("keeping the replication slots on", primary.clone())?;
            if !slots.created.is_empty() || !slots.dropped.is_empty() {
                info!(database = %name, created = ?slots.created, dropped = ?slots.dropped, "replication slots");
            }
            if lagging.is_empty() {
                Condition::new(
                    types::REPLICATING,
                    true,
                    "AllReplicasStreaming",
                    format!("every replica streams from {primary}"),
                    generation,
                )
            } else {
                let mut message = lagging.join("; ");
                let streaming = status
                    .members
                    .iter()
                    .any(|m| m.state == MemberState::Streaming);
                if spec.is_sync() && !streaming {
                    message.push_str(
                        "; in sync mode commits wait until a replica confirms them, and none streams",
                    );
                }
                Condition::new(
                    types::REPLICATING,
                    false,
                    "ReplicasNotStreaming",
                    message,
                    generation,
                )
            }
        }
        Decision::Switchover { to } => {
            members_of.switch_over(&primary, &to).await?;
            status.primary = Some(to.clone());
            requeue = Duration::from_secs(2);
            Condition::new(
                types::REPLICATING,
                false,
                "SwitchedOver",
                format!(
                    "moved the primary from {primary} to {to}, as spec.replication.primary asks"
                ),
                generation,
            )
        }
        Decision::Finish => {
            members_of.promote(&primary).await?;
            requeue = Duration::from_secs(2);
            Condition::new(
                types::REPLICATING,
                false,
                "Promoting",
                format!("promoting {primary}, the chosen primary"),
                generation,
            )
        }
        Decision::Waiting {
            unanswered_for,
            delay,
        } => {
            requeue = requeue.min(
                delay
                    .saturating_sub(unanswered_for)
                    .max(Duration::from_secs(1)),
            );
            // No running count in the message: the status stays as it is
            // while the delay runs.
            let since = status
                .primary_unreachable_since
                .as_ref()
                .map_or_else(String::new, |t| format!(" since {}", t.0));
            Condition::new(
                types::REPLICATING,
                false,
                "PrimaryUnreachable",
                format!(
                    "the primary {primary} has not answered{since}; the most advanced replica is promoted once it has not for {}s",
                    delay.as_secs()
                ),
                generation,
            )
        }
        Decision::Promote { pod, lag } => {
            members_of
                .fail_over(&primary, &pod, lag.as_deref(), spec.is_sync())
                .await?;
            status.primary = Some(pod.clone());
            status.primary_unreachable_since = None;
            requeue = Duration::from_secs(2);
            Condition::new(
                types::REPLICATING,
                false,
                "FailedOver",
                format!("{primary} stopped answering; promoted {pod}"),
                generation,
            )
        }
        Decision::Fence { pods: extra } => {
            for pod in &extra {
                members_of.restart(pod).await?;
            }
            let note = format!(
                "{} took writes beside the primary {primary}: restarted as replicas, rewound to {primary}'s history",
                extra.join(", ")
            );
            warn!(database = %name, %note, "fencing");
            publish(ctx, db, EventType::Warning, "Fenced", note.clone()).await;
            requeue = Duration::from_secs(2);
            Condition::new(types::REPLICATING, false, "Fenced", note, generation)
        }
        Decision::Stuck(why) => Condition::new(
            types::REPLICATING,
            false,
            "NoFailoverCandidate",
            format!("the primary {primary} does not answer and {why}"),
            generation,
        ),
    };
    Ok(Report {
        status: Some(status),
        condition: Some(condition),
        requeue: Some(requeue),
    })
}

/// Gives every member that answered the `synchronous_standby_names` of a
/// Database that keeps the pods `kept` where it differs: the standbys keep
/// it for when one of them is promoted.
async fn keep_commit_mode(
    members: &Members<'_>,
    seen: &[Seen],
    kept: &[String],
    sync: bool,
) -> Result<()> {
    let wanted = postgresql::synchronous_standby_names(kept, sync);
    for s in seen {
        let Some(answer) = &s.answer else { continue };
        if answer.synchronous_standby_names == wanted {
            continue;
        }
        postgresql::set_synchronous_standby_names(&members.target(&s.pod), &wanted)
            .await
            .step("setting synchronous_standby_names on", s.pod.clone())?;
        info!(pod = %s.pod, synchronous_standby_names = %wanted, "commit mode");
    }
    Ok(())
}

/// Sets the role label of every pod whose label differs.
async fn label(pods_api: &Api<Pod>, pods: &[PodView], primary: &str) -> Result<()> {
    for (pod, role) in decide::relabel(pods, primary) {
        set_label(pods_api, &pod, ROLE_LABEL, role).await?;
    }
    Ok(())
}

/// Sets one label on `pod`; a pod gone meanwhile is left to its successor,
/// which the next pass labels.
async fn set_label(pods_api: &Api<Pod>, pod: &str, key: &str, value: &str) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "labels": { key: value } } });
    if crate::apply::patch_metadata(pods_api, pod, &patch)
        .await
        .step("labelling pod", pod.to_owned())?
    {
        info!(pod, label = key, value, "labelled");
    }
    Ok(())
}

/// What the acting steps need: the Database, its pods, and the admin login
/// to reach each member's server.
struct Members<'a> {
    db: &'a Database,
    ctx: &'a Context,
    namespace: &'a str,
    admin: &'a Target,
    pods_api: &'a Api<Pod>,
    pods: &'a [PodView],
}

impl Members<'_> {
    /// The admin login at `pod`'s own address:
    /// `<pod>.<name>-headless.<namespace>`.
    fn target(&self, pod: &str) -> Target {
        let port = u16::try_from(driver_of(&self.db.spec).port()).expect("engine ports fit in u16");
        let name = self.db.name_any();
        let (host, port) = self.ctx.settings.resolver.resolve(
            &format!("{pod}.{}", Names(&name).headless()),
            self.namespace,
            port,
        );
        Target {
            host,
            port,
            ..self.admin.clone()
        }
    }

    async fn promote(&self, pod: &str) -> Result<()> {
        postgresql::promote(&self.target(pod))
            .await
            .step("promoting", pod.to_owned())
    }

    /// The planned move of the primary from `old` to `new`: writes on `old`
    /// stop, `new` replays everything `old` wrote, and only then is it
    /// promoted; then as a failover: recorded, relabelled, the old pod
    /// restarted as a replica. If `new` does not catch up in time, `old`
    /// takes writes again and nothing changed.
    async fn switch_over(&self, old: &str, new: &str) -> Result<()> {
        info!(database = %self.db.name_any(), old, new, "switching over");
        let old_target = self.target(old);
        let lsn = postgresql::fence(&old_target)
            .await
            .step("stopping writes on", old.to_owned())?;
        let new_target = self.target(new);
        let caught_up = postgresql::wait_replayed(&new_target, lsn, Duration::from_secs(60));
        if let Err(e) = caught_up.await {
            let _ = postgresql::unfence(&old_target).await;
            return Err(e).step("waiting for the switchover target", new.to_owned());
        }
        self.promote(new).await?;
        self.record_and_fence(old, new).await?;
        let note = format!(
            "moved the primary from {old} to {new}: {new} replayed every write {old} acknowledged before it was promoted; {old} restarts as a replica"
        );
        publish(self.ctx, self.db, EventType::Normal, "SwitchedOver", note).await;
        Ok(())
    }

    /// Promotes `new`, records it as the primary, moves the labels and
    /// deletes the old primary's pod, which restarts as a rewound replica.
    async fn fail_over(&self, old: &str, new: &str, lag: Option<&str>, sync: bool) -> Result<()> {
        warn!(database = %self.db.name_any(), old, new, "failing over");
        self.promote(new).await?;
        self.record_and_fence(old, new).await?;
        let loss = if sync {
            "in sync mode every replica answered, and the most advanced one holds every acknowledged write: none is lost (writes the old primary had not acknowledged may be)".to_owned()
        } else {
            format!(
                "which lagged {} behind it: with asynchronous replication the writes in that lag are lost",
                lag.unwrap_or("an unknown amount")
            )
        };
        let note = format!(
            "the primary {old} stopped answering; promoted {new}, {loss}. {old} restarts as a replica, rewound to {new}'s history"
        );
        publish(self.ctx, self.db, EventType::Warning, "FailedOver", note).await;
        Ok(())
    }

    /// Records `new` as the primary, moves the labels, and deletes `old`'s
    /// pod so that its server restarts as a replica, rewound to `new`'s
    /// history.
    async fn record_and_fence(&self, old: &str, new: &str) -> Result<()> {
        let name = self.db.name_any();
        // The decision first: labels and Services follow it, even if the
        // operator stops right here.
        let patch = serde_json::json!({
            "status": { "replication": { "primary": new, "primaryUnreachableSince": null } }
        });
        Api::<Database>::namespaced(self.ctx.client.clone(), self.namespace)
            .patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await
            .step("recording the new primary of", name.clone())?;
        label(self.pods_api, self.pods, new).await?;
        self.restart(old).await
    }

    /// Deletes `pod`, whose server then restarts through the instance script
    /// as what its label says.
    async fn restart(&self, pod: &str) -> Result<()> {
        crate::apply::delete(self.pods_api, pod)
            .await
            .step("restarting pod", pod.to_owned())?;
        Ok(())
    }
}

/// Creates or updates the replication login on the primary, with the
/// password of `<name>-replication`.
async fn ensure_login(
    ctx: &Context,
    namespace: &str,
    names: &Names<'_>,
    primary: &Target,
) -> Result<()> {
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&names.replication())
        .await?;
    let Some(password) = secret.as_ref().and_then(|s| secret_value(s, PASSWORD_KEY)) else {
        return Ok(());
    };
    postgresql::ensure_login(primary, &Password::new(password))
        .await
        .step("keeping the replication login on", primary.host.clone())
}
