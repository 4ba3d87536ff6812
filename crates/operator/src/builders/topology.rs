//! Which members a Database's pods are: one primary with streaming
//! replicas, or servers of their own.
//!
//! New Databases of an engine the operator replicates stream. A Database
//! whose StatefulSet was created before (its pod template lacks
//! [`TOPOLOGY_ANNOTATION`]) keeps its independent servers, and its pods
//! are left exactly as they are, until the user sets
//! `spec.replication.reseedIndependentReplicas`: converting re-seeds every
//! member but the first from it, and changes the pod template, which
//! restarts the pods.

use database_operator_api::v1::Database;
use k8s_openapi::api::apps::v1::StatefulSet;

use crate::engine::driver_of;

/// Pod-template annotation of a streaming Database's StatefulSet.
pub const TOPOLOGY_ANNOTATION: &str = "example.com/topology";
/// The value of [`TOPOLOGY_ANNOTATION`].
pub const STREAMING: &str = "streaming";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// The pod labelled primary takes writes; every other member is its
    /// replica. The Services select by role.
    Streaming,
    /// Every member is a server of its own; the first takes reads and
    /// writes. Databases created before the operator replicated.
    Independent,
}

impl Topology {
    /// The topology of `db`, whose StatefulSet is `live` (`None` before it
    /// is created).
    pub fn of(db: &Database, live: Option<&StatefulSet>) -> Topology {
        if driver_of(&db.spec).streaming().is_none() {
            return Topology::Independent;
        }
        let reseed = db
            .spec
            .replication
            .as_ref()
            .is_some_and(|r| r.reseed_independent_replicas);
        match live {
            None => Topology::Streaming,
            Some(_) if reseed => Topology::Streaming,
            Some(statefulset) if streams(statefulset) => Topology::Streaming,
            Some(_) => Topology::Independent,
        }
    }

    pub fn is_streaming(self) -> bool {
        self == Topology::Streaming
    }
}

/// The pods the StatefulSet keeps: `spec.replicas`, except that a scale-down
/// never removes the primary's pod before the primary has moved (the
/// replication step switches over to a remaining replica first).
pub fn statefulset_replicas(db: &Database, topology: Topology) -> i32 {
    let primary = db
        .status
        .as_ref()
        .and_then(|s| s.replication.as_ref())
        .and_then(|r| r.primary.as_deref())
        .and_then(ordinal);
    match primary {
        Some(n) if topology.is_streaming() => db.spec.replicas.max(n + 1),
        _ => db.spec.replicas,
    }
}

/// The ordinal of a StatefulSet pod's name (`orders-2` → 2).
pub fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-')?.1.parse().ok()
}

/// The name of the pod with `ordinal` in the StatefulSet `statefulset`
/// (`orders`, 2 → `orders-2`): what [`ordinal`] reads back.
pub fn pod_name(statefulset: &str, ordinal: i32) -> String {
    format!("{statefulset}-{ordinal}")
}

/// Whether `statefulset`'s pods run as a streaming cluster.
fn streams(statefulset: &StatefulSet) -> bool {
    statefulset
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(TOPOLOGY_ANNOTATION))
        .is_some_and(|v| v == STREAMING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use database_operator_api::v1::Engine;
    use database_operator_api::v1::replication::ReplicationSpec;

    use crate::builders::Desired;
    use crate::fixtures::database;

    #[test]
    fn new_postgresql_databases_stream_and_keep_streaming() {
        let db = database("orders", Engine::Postgresql, "16.4", 3);
        assert_eq!(Topology::of(&db, None), Topology::Streaming);
        let created = Desired::build(&db).statefulset;
        assert_eq!(Topology::of(&db, Some(&created)), Topology::Streaming);
    }

    #[test]
    fn a_scale_down_keeps_the_primary_until_it_moved() {
        use database_operator_api::v1::database::DatabaseStatus;
        use database_operator_api::v1::replication::ReplicationStatus;
        let mut db = database("orders", Engine::Postgresql, "16.4", 2);
        assert_eq!(statefulset_replicas(&db, Topology::Streaming), 2);
        db.status = Some(DatabaseStatus {
            replication: Some(ReplicationStatus {
                primary: Some("orders-3".into()),
                ..ReplicationStatus::default()
            }),
            ..DatabaseStatus::default()
        });
        assert_eq!(statefulset_replicas(&db, Topology::Streaming), 4);
        assert_eq!(Desired::build(&db).statefulset.spec.replicas, Some(4));
        assert_eq!(statefulset_replicas(&db, Topology::Independent), 2);
        db.status
            .as_mut()
            .unwrap()
            .replication
            .as_mut()
            .unwrap()
            .primary = Some("orders-1".into());
        assert_eq!(statefulset_replicas(&db, Topology::Streaming), 2);
        assert_eq!(ordinal("my-db-12"), Some(12));
        assert_eq!(ordinal(&pod_name("my-db", 12)), Some(12));
        assert_eq!(ordinal("x"), None);
    }

    #[test]
    fn new_databases_of_every_engine_stream() {
        // MongoDB as a replica set.
        let db = database("orders", Engine::Mongodb, "8.0", 3);
        assert_eq!(Topology::of(&db, None), Topology::Streaming);
        // Both flavors of the mysql engine stream.
        let mut mysql = database("orders", Engine::Mysql, "8.4", 3);
        assert_eq!(Topology::of(&mysql, None), Topology::Streaming);
        mysql.spec.flavor = Some(database_operator_api::v1::Flavor::Mariadb);
        assert_eq!(Topology::of(&mysql, None), Topology::Streaming);
        // A Database created before keeps its independent servers.
        let mut before = Desired::build(&database("orders", Engine::Mysql, "8.4", 3)).statefulset;
        before
            .spec
            .template
            .metadata
            .as_mut()
            .unwrap()
            .annotations
            .as_mut()
            .unwrap()
            .remove(TOPOLOGY_ANNOTATION);
        assert_eq!(
            Topology::of(&database("orders", Engine::Mysql, "8.4", 3), Some(&before)),
            Topology::Independent
        );
    }

    #[test]
    fn an_existing_independent_database_converts_only_when_asked() {
        let mut db = database("orders", Engine::Postgresql, "16.4", 3);
        let mut before = Desired::build(&db).statefulset;
        // A StatefulSet of an operator that did not replicate.
        let template = before.spec.template.metadata.as_mut().unwrap();
        template
            .annotations
            .as_mut()
            .unwrap()
            .remove(TOPOLOGY_ANNOTATION);
        assert_eq!(Topology::of(&db, Some(&before)), Topology::Independent);
        db.spec.replication = Some(ReplicationSpec {
            reseed_independent_replicas: true,
            ..ReplicationSpec::default()
        });
        assert_eq!(Topology::of(&db, Some(&before)), Topology::Streaming);
    }
}
