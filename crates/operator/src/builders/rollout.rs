//! Which pod template a Database's StatefulSet gets: the one built from
//! the spec, or — when only the operator changed — the running one, until
//! the user approves the new one.
//!
//! A new pod template restarts every member. A change of the spec is the
//! user asking for one; a new operator version building another template
//! for the same spec (another exporter, a new probe) is not, and users want
//! to choose when their databases restart for it (CloudNativePG #5950). So
//! the StatefulSet carries two stamps: the hash of the template as the
//! operator built it, and the Database generation it was built for. Then:
//!
//! - built hash = stamped hash: nothing changed in what the operator wants;
//!   any difference in the live object is someone's edit, and repaired;
//! - the generation moved: the user changed the spec; the new template
//!   rolls out, with whatever else the operator changed;
//! - the same generation, another hash: the operator changed. With
//!   `spec.updatePolicy: Automatic`, or the annotation
//!   `example.com/approve-update` set to the new hash, it rolls out;
//!   otherwise the live template stays and the Database says
//!   `UpdatePending`, naming the hash to approve.

use database_operator_api::v1::Database;
use database_operator_api::v1::database::{APPROVE_UPDATE_ANNOTATION, UpdatePolicy};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use super::hash_of;

/// On the StatefulSet: the hash of the pod template as the operator built it.
pub const TEMPLATE_HASH: &str = "example.com/template-hash";
/// On the StatefulSet: the Database generation that template was built for.
pub const SPEC_GENERATION: &str = "example.com/spec-generation";

/// A pod template the operator built for an unchanged spec and holds back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpdate {
    /// The hash to approve (`example.com/approve-update`).
    pub hash: String,
}

impl PendingUpdate {
    /// What the `UpdatePending` condition says.
    pub fn message(&self) -> String {
        format!(
            "this operator version builds another pod template (hash {hash}) for the unchanged spec; the pods keep theirs. Rolling it out restarts every member: annotate the Database with {APPROVE_UPDATE_ANNOTATION}={hash}, or set spec.updatePolicy: Automatic. A change to the spec rolls it out too",
            hash = self.hash
        )
    }
}

/// Stamps `desired` with its template's hash and `db`'s generation, and
/// keeps `live`'s template (and stamps) when only the operator changed and
/// the user has not approved: then returns what is pending.
pub fn hold_operator_changes(
    desired: &mut StatefulSet,
    live: Option<&StatefulSet>,
    db: &Database,
) -> Option<PendingUpdate> {
    let built = hash_of(&desired.spec.template);
    let generation = db.metadata.generation.unwrap_or_default().to_string();
    let annotations = desired.annotations_mut();
    annotations.insert(TEMPLATE_HASH.to_owned(), built.clone());
    annotations.insert(SPEC_GENERATION.to_owned(), generation.clone());
    let live = live?;
    let stamp = |key: &str| live.annotations().get(key).map(String::as_str);
    let (Some(live_hash), Some(live_generation)) = (stamp(TEMPLATE_HASH), stamp(SPEC_GENERATION))
    else {
        // Not stamped: built before the operator stamped templates. Its
        // template rolls out as it always did.
        return None;
    };
    if live_hash == built || live_generation != generation {
        return None;
    }
    let approved = db.spec.update_policy == UpdatePolicy::Automatic
        || db.annotations().get(APPROVE_UPDATE_ANNOTATION) == Some(&built);
    if approved {
        return None;
    }
    desired.spec.template = live.spec.template.clone();
    desired
        .annotations_mut()
        .insert(TEMPLATE_HASH.to_owned(), live_hash.to_owned());
    Some(PendingUpdate { hash: built })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::Desired;
    use crate::fixtures;
    use database_operator_api::v1::Engine;
    use k8s_openapi::api::core::v1::Container;

    fn db(generation: i64) -> Database {
        let mut db = fixtures::database("db", Engine::Postgresql, "16.4", 1);
        db.metadata.generation = Some(generation);
        db
    }

    fn built(db: &Database) -> StatefulSet {
        Desired::build(db).statefulset
    }

    /// What an operator (this one, or one whose builder differs by `edit`)
    /// wrote for `db`: its built StatefulSet, stamped.
    fn written(db: &Database, edit: impl FnOnce(&mut StatefulSet)) -> StatefulSet {
        let mut sts = built(db);
        edit(&mut sts);
        assert_eq!(hold_operator_changes(&mut sts, None, db), None);
        sts
    }

    fn first_container(sts: &mut StatefulSet) -> &mut Container {
        &mut sts.spec.template.spec.as_mut().unwrap().containers[0]
    }

    fn older_operator(sts: &mut StatefulSet) {
        first_container(sts)
            .args
            .get_or_insert_with(Vec::new)
            .push("--built-by-an-older-operator".into());
    }

    #[test]
    fn the_same_template_for_the_same_spec_changes_nothing() {
        let db = db(3);
        let live = written(&db, |_| {});
        let mut desired = built(&db);
        assert_eq!(hold_operator_changes(&mut desired, Some(&live), &db), None);
        assert_eq!(desired, live, "stamps and template agree: no write");
    }

    #[test]
    fn an_operator_change_for_an_unchanged_spec_waits_for_approval() {
        let mut db = db(3);
        let live = written(&db, older_operator);
        let mut desired = built(&db);
        let pending = hold_operator_changes(&mut desired, Some(&live), &db).unwrap();
        assert_eq!(desired, live, "the pods keep their template: no write");
        assert_eq!(pending.hash, hash_of(&built(&db).spec.template));
        assert!(pending.message().contains(&pending.hash));

        // Approving another hash changes nothing; approving this one rolls out.
        db.annotations_mut()
            .insert(APPROVE_UPDATE_ANNOTATION.into(), "0123456789abcdef".into());
        assert!(hold_operator_changes(&mut built(&db), Some(&live), &db).is_some());
        db.annotations_mut()
            .insert(APPROVE_UPDATE_ANNOTATION.into(), pending.hash.clone());
        let mut desired = built(&db);
        assert_eq!(hold_operator_changes(&mut desired, Some(&live), &db), None);
        assert_eq!(desired.spec.template, built(&db).spec.template);
        assert_eq!(desired.annotations()[TEMPLATE_HASH], pending.hash);
    }

    #[test]
    fn automatic_updates_and_spec_changes_roll_out_at_once() {
        let mut automatic = db(3);
        automatic.spec.update_policy = UpdatePolicy::Automatic;
        let live = written(&automatic, older_operator);
        assert_eq!(
            hold_operator_changes(&mut built(&automatic), Some(&live), &automatic),
            None
        );

        let before = db(3);
        let live = written(&before, older_operator);
        let mut after = db(4);
        after.spec.resources = None;
        let mut desired = built(&after);
        assert_eq!(
            hold_operator_changes(&mut desired, Some(&live), &after),
            None
        );
        assert_eq!(desired.annotations()[SPEC_GENERATION], "4");
    }

    #[test]
    fn a_hand_edit_is_repaired_not_held() {
        let db = db(3);
        let mut live = written(&db, |_| {});
        // Someone edits the live template; the stamps stay ours.
        older_operator(&mut live);
        let mut desired = built(&db);
        assert_eq!(hold_operator_changes(&mut desired, Some(&live), &db), None);
        assert_ne!(desired.spec.template, live.spec.template, "repaired");
    }

    /// A new operator build differs in its version string, which reaches
    /// the children only as the default agent image's tag: with the same
    /// agent image, two builds build the same children.
    #[test]
    fn the_operator_version_reaches_the_children_only_through_the_agent_image() {
        let version = env!("CARGO_PKG_VERSION");
        for engine in Engine::ALL {
            for replicas in [1, 3] {
                let version_of = match engine {
                    Engine::Postgresql => "16.4",
                    Engine::Mysql => "8.4",
                    Engine::Mongodb => "7.0",
                };
                let mut db = fixtures::database("db", engine, version_of, replicas);
                db.spec.monitoring = Some(Default::default());
                let built = Desired::build_with(
                    &db,
                    "registry.example.com/agent@sha256:0",
                    None,
                    crate::builders::topology::Topology::of(&db, None),
                );
                let children = serde_json::to_string(&(
                    &built.statefulset,
                    &built.config_map,
                    &built.services.primary,
                    &built.pdb,
                    &built.backup,
                    &built.verify,
                ))
                .unwrap();
                assert!(
                    !children.contains(&format!(":{version}"))
                        && !children.contains(&format!("v{version}")),
                    "{engine:?}: the operator's version {version} is in a child"
                );
            }
        }
    }

    #[test]
    fn a_statefulset_without_stamps_rolls_out_as_before() {
        let db = db(3);
        let mut live = built(&db);
        older_operator(&mut live);
        assert_eq!(
            hold_operator_changes(&mut built(&db), Some(&live), &db),
            None
        );
    }
}
