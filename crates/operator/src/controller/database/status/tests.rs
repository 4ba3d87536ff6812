//! Status transitions: Pending → Creating → Running, Scaling, Updating, Failed,
//! and conditions whose transition time moves only on a transition.

use database_operator_api::v1;
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::{ConditionStatus, Engine};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Failure, desired_status, progress_only};
use crate::fixtures::database;

fn at(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(seconds).unwrap())
}

fn sts(spec_replicas: i32, pods: i32, ready: i32, rolled_out: bool) -> StatefulSet {
    let mut sts = StatefulSet::default();
    sts.metadata.generation = Some(2);
    sts.spec.replicas = Some(spec_replicas);
    sts.status = Some(StatefulSetStatus {
        observed_generation: Some(2),
        replicas: pods,
        ready_replicas: Some(ready),
        updated_replicas: Some(if rolled_out { pods } else { 0 }),
        current_revision: Some("a".into()),
        update_revision: Some(if rolled_out { "a" } else { "b" }.into()),
        ..Default::default()
    });
    sts
}

fn condition(status: &v1::DatabaseStatus, type_: &str) -> v1::Condition {
    v1::condition::find(&status.conditions, type_)
        .unwrap()
        .clone()
}

#[test]
fn a_new_database_is_pending_until_its_statefulset_exists_then_creating_then_running() {
    let mut db = database("db", Engine::Postgresql, "13.8", 1);
    let pending = desired_status(&db, None, None, None, &at(1));
    assert_eq!(pending.phase, Some(Phase::Pending));
    db.status = Some(pending.clone());

    // The StatefulSet exists, its pod not yet: Creating already, so the
    // pod appearing is progress.
    let no_pods = desired_status(&db, Some(&sts(1, 0, 0, true)), None, None, &at(2));
    assert_eq!(no_pods.phase, Some(Phase::Creating));
    assert!(!progress_only(&pending, &no_pods), "a phase change");
    db.status = Some(no_pods.clone());

    let creating = desired_status(&db, Some(&sts(1, 1, 0, true)), None, None, &at(2));
    assert_eq!(creating.phase, Some(Phase::Creating));
    assert!(
        progress_only(&no_pods, &creating),
        "a pod appearing is progress"
    );
    assert_eq!(condition(&creating, "Ready").status, ConditionStatus::False);
    assert_eq!(
        condition(&creating, "Progressing").status,
        ConditionStatus::True
    );
    db.status = Some(creating);

    let running = desired_status(&db, Some(&sts(1, 1, 1, true)), None, None, &at(3));
    assert_eq!(running.phase, Some(Phase::Running));
    assert!(
        !progress_only(db.status.as_ref().unwrap(), &running),
        "Running is written at once"
    );
    assert_eq!(condition(&running, "Ready").status, ConditionStatus::True);
    assert_eq!(
        condition(&running, "Ready").last_transition_time,
        Some(at(3))
    );
    assert_eq!(
        condition(&running, "Progressing").status,
        ConditionStatus::False
    );
    assert_eq!(
        condition(&running, "Degraded").status,
        ConditionStatus::False
    );
    assert_eq!(running.current_version.as_deref(), Some("13.8"));
    assert_eq!(running.observed_generation, Some(1));
    assert_eq!(
        running.endpoints.as_ref().unwrap().primary.as_deref(),
        Some("db-primary.default.svc:5432")
    );
    assert!(running.endpoints.as_ref().unwrap().readonly.is_empty());
}

#[test]
fn a_resync_of_a_running_database_produces_the_identical_status() {
    let mut db = database("db", Engine::Mysql, "8.4", 1);
    db.status = Some(desired_status(
        &db,
        Some(&sts(1, 1, 1, true)),
        None,
        None,
        &at(10),
    ));
    let again = desired_status(&db, Some(&sts(1, 1, 1, true)), None, None, &at(99));
    assert_eq!(
        Some(again),
        db.status,
        "a resync must not change status, so it writes nothing"
    );
}

#[test]
fn scaling_up_passes_through_scaling_and_returns_to_running() {
    let mut db = database("db", Engine::Postgresql, "13.8", 1);
    db.status = Some(desired_status(
        &db,
        Some(&sts(1, 1, 1, true)),
        None,
        None,
        &at(1),
    ));
    db.spec.replicas = 3;
    db.metadata.generation = Some(2);

    let before_sts_update = desired_status(&db, Some(&sts(1, 1, 1, true)), None, None, &at(2));
    assert_eq!(before_sts_update.phase, Some(Phase::Scaling));
    db.status = Some(before_sts_update);
    let midway = desired_status(&db, Some(&sts(3, 3, 2, true)), None, None, &at(3));
    assert_eq!(midway.phase, Some(Phase::Scaling));
    assert_eq!(
        condition(&midway, "Degraded").status,
        ConditionStatus::False
    );
    db.status = Some(midway);
    let done = desired_status(&db, Some(&sts(3, 3, 3, true)), None, None, &at(4));
    assert_eq!(done.phase, Some(Phase::Running));
    assert_eq!(done.ready_replicas, Some(3));
    assert_eq!(
        done.endpoints.unwrap().readonly,
        vec!["db-readonly.default.svc:5432".to_string()]
    );
}

#[test]
fn a_version_change_is_updating_until_rolled_out() {
    let mut db = database("db", Engine::Postgresql, "13.8", 2);
    db.status = Some(desired_status(
        &db,
        Some(&sts(2, 2, 2, true)),
        None,
        None,
        &at(1),
    ));
    db.spec.version = "13.9".into();
    let updating = desired_status(&db, Some(&sts(2, 2, 2, false)), None, None, &at(2));
    assert_eq!(updating.phase, Some(Phase::Updating));
    assert_eq!(updating.current_version.as_deref(), Some("13.8"));
    db.status = Some(updating);
    let done = desired_status(&db, Some(&sts(2, 2, 2, true)), None, None, &at(3));
    assert_eq!(done.phase, Some(Phase::Running));
    assert_eq!(done.current_version.as_deref(), Some("13.9"));
}

#[test]
fn losing_a_replica_without_a_change_is_degraded() {
    let mut db = database("db", Engine::Mongodb, "7.0", 3);
    db.status = Some(desired_status(
        &db,
        Some(&sts(3, 3, 3, true)),
        None,
        None,
        &at(1),
    ));
    let lost = desired_status(&db, Some(&sts(3, 3, 2, true)), None, None, &at(2));
    assert_eq!(lost.phase, Some(Phase::Scaling));
    assert_eq!(condition(&lost, "Degraded").status, ConditionStatus::True);
    assert_eq!(condition(&lost, "Ready").status, ConditionStatus::False);
}

#[test]
fn a_refused_spec_is_failed_with_reason_and_message() {
    let db = database("db", Engine::Postgresql, "13.8", 1);
    let failure = Failure {
        reason: "InvalidSpec".into(),
        message: "the cluster refused a child object: storage class".into(),
    };
    let failed = desired_status(&db, None, Some(&failure), None, &at(1));
    assert_eq!(failed.phase, Some(Phase::Failed));
    let degraded = condition(&failed, "Degraded");
    assert_eq!(degraded.status, ConditionStatus::True);
    assert_eq!(degraded.reason, "InvalidSpec");
    assert!(degraded.message.contains("storage class"));
}

#[test]
fn only_counts_and_messages_on_the_way_count_as_progress() {
    let mut db = database("db", Engine::Postgresql, "13.8", 3);
    db.status = Some(desired_status(
        &db,
        Some(&sts(3, 3, 3, true)),
        None,
        None,
        &at(1),
    ));
    db.spec.replicas = 5;
    let scaling = desired_status(&db, Some(&sts(5, 3, 3, true)), None, None, &at(2));
    assert_eq!(scaling.phase, Some(Phase::Scaling));
    db.status = Some(scaling.clone());
    let more = desired_status(&db, Some(&sts(5, 4, 3, true)), None, None, &at(3));
    assert!(progress_only(&scaling, &more));

    // A condition that changes its reason or status is news, and so is a
    // failure, whatever the counts.
    let failed = desired_status(
        &db,
        Some(&sts(5, 4, 3, true)),
        Some(&Failure {
            reason: "InvalidSpec".into(),
            message: "refused".into(),
        }),
        None,
        &at(3),
    );
    assert!(!progress_only(&scaling, &failed));
    let mut renamed = more.clone();
    renamed.conditions[0].reason = "Other".into();
    assert!(!progress_only(&scaling, &renamed));
    // A Running Database's counts do not change without a phase change;
    // anything that does change there is written at once.
    let running = desired_status(&db, Some(&sts(5, 5, 5, true)), None, None, &at(4));
    let mut recounted = running.clone();
    recounted.ready_replicas = Some(4);
    assert!(!progress_only(&running, &recounted));
}
