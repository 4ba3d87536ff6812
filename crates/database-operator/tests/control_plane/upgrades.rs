//! Upgrading the operator never restarts a database. A new release runs
//! with another image (`--agent-image`, which replicated members copy
//! their supervisor from): restarted that way, the operator writes nothing
//! to any StatefulSet. A release that builds another pod template for an
//! unchanged spec holds it back, says `UpdatePending` with the template's
//! hash, and rolls it out once the Database's `example.com/approve-update`
//! annotation names that hash. Runs with its own cluster and operator.

use std::collections::BTreeMap;
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{self, types};
use database_operator_api::v1::database::APPROVE_UPDATE_ANNOTATION;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use testkit::fixtures::sample_in;
use testkit::harness::{self, env, eventually};

const WAIT: Duration = Duration::from_secs(90);
const TEMPLATE_HASH: &str = "example.com/template-hash";

/// Every StatefulSet's resourceVersion: any write moves it.
async fn versions(statefulsets: &Api<StatefulSet>) -> BTreeMap<String, String> {
    statefulsets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap()))
        .collect()
}

/// Waits until no StatefulSet has changed for `quiet`; returns their versions.
async fn settled(statefulsets: &Api<StatefulSet>, quiet: Duration) -> BTreeMap<String, String> {
    let mut last = versions(statefulsets).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = versions(statefulsets).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Makes the operator reconcile every Database in `dbs` once more and
/// waits until it has.
async fn reconcile_all(env: &harness::Env, dbs: &Api<Database>, round: u32) {
    const RECONCILES: &str = "database_operator_reconciliations_total";
    let names: Vec<String> = dbs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let before = env.metric(RECONCILES).await;
    for name in &names {
        let poke =
            serde_json::json!({"metadata": {"annotations": {"test/poke": round.to_string()}}});
        dbs.patch(name, &PatchParams::default(), &Patch::Merge(poke))
            .await
            .unwrap();
    }
    eventually(env, "a reconcile of every Database", WAIT, || async {
        (env.metric(RECONCILES).await >= before + names.len() as f64).then_some(())
    })
    .await;
}

fn template_annotation(sts: &StatefulSet, key: &str) -> Option<String> {
    sts.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

#[tokio::test]
async fn a_new_operator_version_writes_no_statefulset_and_a_new_template_waits_for_approval() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    let ns = env.namespace("upgrades").await;
    let dbs = Api::<Database>::namespaced(client.clone(), &ns);
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let single = sample_in("postgresql-sample.yaml", &ns);
    // Its members run the supervisor copied from the agent image.
    let mut replicated = sample_in("postgresql-sample.yaml", &ns);
    replicated.metadata.name = Some("replicated".into());
    replicated.spec.replicas = 2;
    let mongo = sample_in("mongodb-sample.yaml", &ns);
    for db in [&single, &replicated, &mongo] {
        dbs.create(&PostParams::default(), db).await.unwrap();
    }
    eventually(env, "three StatefulSets", WAIT, || async {
        (versions(&statefulsets).await.len() == 3).then_some(())
    })
    .await;
    let before = settled(&statefulsets, Duration::from_secs(5)).await;

    // --- A new release, another image: no StatefulSet is written ------
    env.restart_operator_with(&[
        "--agent-image",
        "registry.example.com/database-operator:9.9.9",
    ])
    .await;
    reconcile_all(env, &dbs, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(&statefulsets).await,
        before,
        "the new release wrote a StatefulSet\n{}",
        env.operator_log_tail()
    );

    // --- A release whose template differs for the same spec -----------
    // What an older operator wrote: another template, stamped with the
    // hash of what it built, by the operator's own field manager.
    let mut older = statefulsets.get("postgresql-sample").await.unwrap();
    older.metadata.managed_fields = None;
    older.metadata.resource_version = None;
    older.status = None;
    older
        .spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert("example.com/built-by".into(), "an older operator".into());
    older
        .annotations_mut()
        .insert(TEMPLATE_HASH.into(), "0123456789abcdef".into());
    statefulsets
        .patch(
            "postgresql-sample",
            &PatchParams::apply("database-operator").force(),
            &Patch::Apply(&older),
        )
        .await
        .unwrap();
    let pending = eventually(env, "UpdatePending", WAIT, || async {
        let db = dbs.get("postgresql-sample").await.ok()?;
        let status = db.status?;
        condition::find(&status.conditions, types::UPDATE_PENDING).cloned()
    })
    .await;
    assert_eq!(pending.reason, "OperatorUpdate");
    let hash = pending
        .message
        .split("hash ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_owned();
    assert!(
        pending.message.contains(APPROVE_UPDATE_ANNOTATION),
        "{}",
        pending.message
    );
    // Held: the pods keep the older template, and nothing is written.
    let held = settled(&statefulsets, Duration::from_secs(3)).await;
    reconcile_all(env, &dbs, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        versions(&statefulsets).await,
        held,
        "a held template was written"
    );
    let live = statefulsets.get("postgresql-sample").await.unwrap();
    assert_eq!(
        template_annotation(&live, "example.com/built-by").as_deref(),
        Some("an older operator")
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let said = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("UpdatePending"))
        .count();
    assert_eq!(said, 1, "said once");

    // Approving another hash changes nothing; approving this one rolls out.
    let approve = |value: &str| serde_json::json!({"metadata": {"annotations": {APPROVE_UPDATE_ANNOTATION: value}}});
    dbs.patch(
        "postgresql-sample",
        &PatchParams::default(),
        &Patch::Merge(approve("fedcba9876543210")),
    )
    .await
    .unwrap();
    reconcile_all(env, &dbs, 3).await;
    assert_eq!(versions(&statefulsets).await, held);
    dbs.patch(
        "postgresql-sample",
        &PatchParams::default(),
        &Patch::Merge(approve(&hash)),
    )
    .await
    .unwrap();
    let rolled = eventually(env, "the approved template", WAIT, || async {
        let sts = statefulsets.get("postgresql-sample").await.ok()?;
        (sts.annotations().get(TEMPLATE_HASH) == Some(&hash)).then_some(sts)
    })
    .await;
    assert_eq!(template_annotation(&rolled, "example.com/built-by"), None);
    eventually(env, "UpdatePending cleared", WAIT, || async {
        let status = dbs.get("postgresql-sample").await.ok()?.status?;
        condition::find(&status.conditions, types::UPDATE_PENDING)
            .is_none()
            .then_some(())
    })
    .await;
}
