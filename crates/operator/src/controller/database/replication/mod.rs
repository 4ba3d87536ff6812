//! The replication step of the Database controller, for a streaming
//! Database (PostgreSQL, or MariaDB): the replication Secret, the role
//! labels on the pods, the replication login (and PostgreSQL's slots) on
//! the primary, each member's state, and failover. The decisions are
//! [`decide`]'s pure functions, the same for both engines, which report
//! themselves in the same terms ([`replication::Member`]); this file only
//! observes and acts, through [`Engine`].
//!
//! A failover promotes the most advanced replica (PostgreSQL: `pg_promote()`,
//! a new timeline; MariaDB: it applies what it received, forgets its source
//! and leaves `read_only`), records the new primary in
//! `status.replication.primary` before anything else, moves the role labels
//! (and so the Services), and deletes the old primary's pod: whatever its
//! server was doing, it restarts through the instance script, which starts
//! it as a replica of the new primary (PostgreSQL: rewound to its history;
//! MariaDB: copied afresh when the new primary refuses its GTID position).

pub(crate) mod decide;
mod mongodb;

use std::time::Duration;

use database_operator_api::v1::condition::{self, Condition, types};
use database_operator_api::v1::replication::{MemberState, ReplicationSpec, ReplicationStatus};
use database_operator_api::v1::{Database, Flavor};
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
use crate::replication::{self, CAUGHT_UP_LABEL, Member, ROLE_LABEL, mysql, postgresql};
use crate::users::{Password, Target, UserError};
use decide::{Decision, Pod as PodView, Seen};

/// How often a streaming Database with replicas is looked at when nothing
/// else wakes it: the failover delay is judged at this resolution.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);

/// How the Database's engine replicates, as this step drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Postgresql,
    /// The mysql engine in a flavor; only MariaDB's members stream yet.
    Mysql(Flavor),
}

impl Engine {
    fn of(db: &Database) -> Engine {
        match db.spec.mysql_flavor() {
            Some(flavor) => Engine::Mysql(flavor),
            None => Engine::Postgresql,
        }
    }

    /// How a member that cannot follow the primary `primary` comes back
    /// when restarted, for events.
    fn rejoins(self, primary: &str) -> String {
        match self {
            Engine::Postgresql => format!("rewound to {primary}'s history"),
            Engine::Mysql(_) => format!(
                "following {primary} by GTID, or copied afresh from it if it holds writes {primary} never had"
            ),
        }
    }

    /// Why a replica is restarted, for events.
    fn stuck(self, why: decide::Stuck, pod: &str, primary: &str, seconds: u64) -> String {
        match (self, why) {
            (Engine::Postgresql, decide::Stuck::Diverged) => format!(
                "{pod} has not followed {primary}'s timeline for {seconds}s: it received WAL that {primary} never had; restarted, to be rewound to {primary}'s history"
            ),
            (Engine::Postgresql, decide::Stuck::Stalled) => format!(
                "{pod} has not streamed from {primary} for {seconds}s; restarted: it streams again, or, when {primary} no longer has the WAL it needs (its slot lost), it is copied afresh"
            ),
            (Engine::Mysql(_), decide::Stuck::Diverged) => format!(
                "{primary} has refused {pod}'s GTID position for {seconds}s: {pod} holds transactions {primary} never had, or needs binary logs {primary} no longer has; restarted, to be copied afresh (its data kept beside)"
            ),
            (Engine::Mysql(_), decide::Stuck::Stalled) => format!(
                "{pod} has not replicated from {primary} for {seconds}s; restarted: it replicates again, or is copied afresh when {primary} refuses its position"
            ),
        }
    }
}

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
    if db.spec.engine == database_operator_api::v1::Engine::Mongodb {
        // A replica set, even of one member (it takes no writes before it
        // is initiated): MongoDB elects its primary.
        let Some(admin) = admin_target(db, ctx, namespace).await? else {
            return Ok(Report {
                status: Some(previous),
                condition: None,
                requeue: Some(CHECK_EVERY),
            });
        };
        let at = |pod: &str| member_target(db, ctx, namespace, &admin, pod);
        return mongodb::reconcile(db, ctx, &pods_api, &pods, previous, at).await;
    }
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
    let engine = Engine::of(db);
    let members_of = Members {
        db,
        ctx,
        namespace,
        engine,
        admin: &admin,
        pods_api: &pods_api,
        pods: &pods,
        replication_password: tokio::sync::OnceCell::new(),
    };
    let seen: Vec<Seen> = join_all(pods.iter().map(|pod| {
        let members_of = &members_of;
        async move {
            let answer = members_of.member(&pod.name).await;
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
    match engine {
        Engine::Postgresql => keep_commit_mode(&members_of, &seen, &kept, spec.is_sync()).await?,
        Engine::Mysql(flavor) => {
            keep_semi_sync(&members_of, flavor, &primary, &seen, spec.is_sync()).await?;
        }
    }
    // Sync mode's guarantee holds only while the primary's commits wait for
    // a replica: a MariaDB primary falls back after its timeout.
    let fell_back = spec.is_sync()
        && seen
            .iter()
            .find(|s| s.pod == primary)
            .and_then(|s| s.answer.as_ref())
            .and_then(|m| m.semi_sync)
            .is_some_and(|semi| semi.source && !semi.waiting);
    let previous_reason = db
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, types::REPLICATING))
        .map(|c| c.reason.clone())
        .unwrap_or_default();
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
                members_of.ensure_login(&primary_target).await?;
            }
            for (pod, why) in decide::cannot_follow(&primary, &seen, &status.members, &pods, &now) {
                members_of.restart(&pod).await?;
                let note = engine.stuck(why, &pod, &primary, why.grace().as_secs());
                warn!(database = %name, %note, "restarting a replica that cannot follow");
                publish(ctx, db, EventType::Warning, "RewindingReplica", note).await;
            }
            if engine == Engine::Postgresql {
                let slots = postgresql::ensure_slots(&primary_target, &name, &replicas)
                    .await
                    .step("keeping the replication slots on", primary.clone())?;
                if !slots.created.is_empty() || !slots.dropped.is_empty() {
                    info!(database = %name, created = ?slots.created, dropped = ?slots.dropped, "replication slots");
                }
            }
            if fell_back {
                let message = format!(
                    "commits on {primary} do not wait for a replica: no replica acknowledged one within {}s, so semi-synchronous replication fell back to asynchronous; until a replica catches up (the primary then waits again by itself, from its next commit), a failover may lose acknowledged writes",
                    mysql::SEMI_SYNC_TIMEOUT.as_secs()
                );
                if previous_reason != FELL_BACK {
                    warn!(database = %name, %message, "sync mode fell back");
                    publish(ctx, db, EventType::Warning, FELL_BACK, message.clone()).await;
                }
                Condition::new(types::REPLICATING, false, FELL_BACK, message, generation)
            } else if lagging.is_empty() {
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
            let guarantee = match (spec.is_sync(), previous_reason == FELL_BACK) {
                (false, _) => Guarantee::Async,
                (true, false) => Guarantee::Sync,
                (true, true) => Guarantee::FellBack,
            };
            members_of
                .fail_over(&primary, &pod, lag.as_deref(), guarantee)
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
                "{} took writes beside the primary {primary}: restarted as replicas, {}",
                extra.join(", "),
                engine.rejoins(&primary)
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

/// The reason of the `Replicating` condition (and the event) when a MariaDB
/// primary's commits stopped waiting for a replica in sync mode.
const FELL_BACK: &str = "SemiSyncFellBack";

/// What a failover guarantees, for its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guarantee {
    Async,
    /// Sync mode, and every replica answered.
    Sync,
    /// Sync mode, but the primary had fallen back to asynchronous commits.
    FellBack,
}

/// Gives every MariaDB member that answered the sides of semi-synchronous
/// replication it needs ([`mysql::wanted_semi_sync`]), where they differ.
/// The primary's side goes on once a replica streams, and stays: before,
/// its commits (the replication login's among them) would wait for a
/// replica that cannot exist yet.
async fn keep_semi_sync(
    members: &Members<'_>,
    flavor: Flavor,
    primary: &str,
    seen: &[Seen],
    sync: bool,
) -> Result<()> {
    let replica_streams = seen
        .iter()
        .filter_map(|s| s.answer.as_ref())
        .any(|m| m.in_recovery && m.streaming);
    for s in seen {
        let Some(answer) = &s.answer else { continue };
        let have = answer.semi_sync.unwrap_or_default();
        let (source, replica) = mysql::wanted_semi_sync(sync, s.pod == primary);
        let wanted = (source && (have.source || replica_streams), replica);
        if (have.source, have.replica) == wanted {
            continue;
        }
        let restart_receiver = answer.in_recovery && have.replica != replica;
        mysql::set_semi_sync(flavor, &members.target(&s.pod), wanted, restart_receiver)
            .await
            .step("setting semi-synchronous replication on", s.pod.clone())?;
        info!(pod = %s.pod, source = wanted.0, replica = wanted.1, "commit mode");
    }
    Ok(())
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

/// The admin login `admin` at `pod`'s own address:
/// `<pod>.<name>-headless.<namespace>` (through `--resolve` in tests).
fn member_target(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    admin: &Target,
    pod: &str,
) -> Target {
    let port = u16::try_from(driver_of(&db.spec).port()).expect("engine ports fit in u16");
    let (host, port) = ctx.settings.resolver.resolve(
        &format!("{pod}.{}", Names(&db.name_any()).headless()),
        namespace,
        port,
    );
    Target {
        host,
        port,
        ..admin.clone()
    }
}

/// What the acting steps need: the Database, its pods, and the admin login
/// to reach each member's server.
struct Members<'a> {
    db: &'a Database,
    ctx: &'a Context,
    namespace: &'a str,
    engine: Engine,
    admin: &'a Target,
    pods_api: &'a Api<Pod>,
    pods: &'a [PodView],
    /// The replication login's password, read from `<name>-replication` at
    /// most once per pass (`None`: the Secret holds none yet).
    replication_password: tokio::sync::OnceCell<Option<Password>>,
}

impl Members<'_> {
    /// The admin login at `pod`'s own address.
    fn target(&self, pod: &str) -> Target {
        member_target(self.db, self.ctx, self.namespace, self.admin, pod)
    }

    /// The login that drives replication at `pod`: the admin login, but
    /// on MariaDB the replication login, since the admin login gave up the
    /// `READ_ONLY ADMIN` that switching `read_only` needs.
    async fn control(&self, pod: &str) -> Result<Target> {
        let target = self.target(pod);
        let Engine::Mysql(flavor) = self.engine else {
            return Ok(target);
        };
        if mysql::control_login(flavor) == mysql::ControlLogin::Admin {
            return Ok(target);
        }
        let password =
            self.replication_password()
                .await?
                .ok_or(crate::error::Error::MissingField(
                    "the replication Secret's password",
                ))?;
        Ok(Target {
            admin_user: replication::LOGIN.to_owned(),
            admin_password: password,
            ..target
        })
    }

    /// The password of `<name>-replication`, read once per pass.
    async fn replication_password(&self) -> Result<Option<Password>> {
        let password = self
            .replication_password
            .get_or_try_init(|| async {
                let name = Names(&self.db.name_any()).replication();
                let secret = Api::<Secret>::namespaced(self.ctx.client.clone(), self.namespace)
                    .get_opt(&name)
                    .await
                    .step("reading the replication Secret", name)?;
                Ok::<_, crate::error::Error>(
                    secret
                        .as_ref()
                        .and_then(|s| secret_value(s, PASSWORD_KEY))
                        .map(Password::new),
                )
            })
            .await?;
        Ok(password.clone())
    }

    /// Creates or updates the replication login on the primary `primary`
    /// with the password of `<name>-replication` (none yet: nothing to do).
    async fn ensure_login(&self, primary: &Target) -> Result<()> {
        let Some(password) = self.replication_password().await? else {
            return Ok(());
        };
        let kept = match self.engine {
            Engine::Postgresql => postgresql::ensure_login(primary, &password).await,
            Engine::Mysql(flavor) => mysql::ensure_login(flavor, primary, &password).await,
        };
        kept.step("keeping the replication login on", primary.host.clone())
    }

    /// What `pod`'s server says of itself.
    async fn member(&self, pod: &str) -> std::result::Result<Member, UserError> {
        let target = self.target(pod);
        match self.engine {
            Engine::Postgresql => postgresql::member(&target).await,
            Engine::Mysql(flavor) => mysql::member(flavor, &target).await,
        }
    }

    async fn promote(&self, pod: &str) -> Result<()> {
        let promoted = match self.engine {
            Engine::Postgresql => postgresql::promote(&self.target(pod)).await,
            Engine::Mysql(flavor) => {
                let promoted = mysql::promote(flavor, &self.control(pod).await?).await;
                let sync = self
                    .db
                    .spec
                    .replication
                    .as_ref()
                    .is_some_and(ReplicationSpec::is_sync);
                if promoted.is_ok() && sync {
                    // A replica's primary side is off (or, turned on by
                    // hand, not waiting for anyone): switched off and on,
                    // the new primary's commits wait for a replica from its
                    // first one.
                    mysql::restart_semi_sync_source(flavor, &self.target(pod))
                        .await
                        .step("turning on semi-synchronous replication on", pod.to_owned())?;
                }
                promoted
            }
        };
        promoted.step("promoting", pod.to_owned())
    }

    /// Stops writes on the primary `old` and waits until `new` has applied
    /// everything `old` acknowledged. If `new` does not in time, `old`
    /// takes writes again.
    async fn drain(&self, old: &str, new: &str) -> Result<()> {
        let timeout = Duration::from_secs(60);
        let new_target = self.target(new);
        let (caught_up, unfence) = match self.engine {
            Engine::Postgresql => {
                let old_target = self.target(old);
                let lsn = postgresql::fence(&old_target)
                    .await
                    .step("stopping writes on", old.to_owned())?;
                (
                    postgresql::wait_replayed(&new_target, lsn, timeout).await,
                    Box::pin(async move { postgresql::unfence(&old_target).await })
                        as futures::future::BoxFuture<'_, _>,
                )
            }
            Engine::Mysql(flavor) => {
                let old_control = self.control(old).await?;
                let position = mysql::fence(flavor, &old_control)
                    .await
                    .step("stopping writes on", old.to_owned())?;
                (
                    mysql::wait_applied(flavor, &new_target, &position, timeout).await,
                    Box::pin(async move { mysql::unfence(flavor, &old_control).await })
                        as futures::future::BoxFuture<'_, _>,
                )
            }
        };
        if let Err(e) = caught_up {
            let _ = unfence.await;
            return Err(e).step("waiting for the switchover target", new.to_owned());
        }
        Ok(())
    }

    /// The planned move of the primary from `old` to `new`: writes on `old`
    /// stop, `new` replays everything `old` wrote, and only then is it
    /// promoted; then as a failover: recorded, relabelled, the old pod
    /// restarted as a replica. If `new` does not catch up in time, `old`
    /// takes writes again and nothing changed.
    async fn switch_over(&self, old: &str, new: &str) -> Result<()> {
        info!(database = %self.db.name_any(), old, new, "switching over");
        self.drain(old, new).await?;
        self.promote(new).await?;
        self.record_and_fence(old, new).await?;
        let note = format!(
            "moved the primary from {old} to {new}: {new} applied every write {old} acknowledged before it was promoted; {old} restarts as a replica"
        );
        publish(self.ctx, self.db, EventType::Normal, "SwitchedOver", note).await;
        Ok(())
    }

    /// Promotes `new`, records it as the primary, moves the labels and
    /// deletes the old primary's pod, which restarts as a rewound replica.
    async fn fail_over(
        &self,
        old: &str,
        new: &str,
        lag: Option<&str>,
        guarantee: Guarantee,
    ) -> Result<()> {
        warn!(database = %self.db.name_any(), old, new, "failing over");
        self.promote(new).await?;
        self.record_and_fence(old, new).await?;
        let lagged = lag.unwrap_or("an unknown amount");
        let loss = match guarantee {
            Guarantee::Sync => "in sync mode every replica answered, and the most advanced one holds every acknowledged write: none is lost (writes the old primary had not acknowledged may be)".to_owned(),
            Guarantee::FellBack => format!(
                "which lagged {lagged} behind it: sync mode had fallen back to asynchronous replication when the old primary was last seen, so acknowledged writes in that lag are lost"
            ),
            Guarantee::Async => format!(
                "which lagged {lagged} behind it: with asynchronous replication the writes in that lag are lost"
            ),
        };
        let note = format!(
            "the primary {old} stopped answering; promoted {new}, {loss}. {old} restarts as a replica, {}",
            self.engine.rejoins(new)
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
