//! The API access of a replicated Database's pods: a ServiceAccount
//! `<name>-instance`, a Role that may `get` the Database's own pods and the
//! Database itself (by name, nothing else), and the RoleBinding between
//! them. The in-pod supervisor (`crate::instance`) reads its role and the
//! failover delay through it, and fences a primary that cannot.
//!
//! The Role names the pods of every ordinal the StatefulSet has, so it
//! changes only when the Database scales.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;

use database_operator_api::v1::Database;

use super::meta::{Names, child_meta};
use super::statefulset::COMPONENT;
use super::topology::pod_name;

/// The three objects, applied together.
#[derive(Clone, Debug)]
pub struct InstanceAccess {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// The access of `db`'s pods, a StatefulSet of `members` pods.
pub fn instance_access(db: &Database, members: i32) -> InstanceAccess {
    let name = db.name_any();
    let account = Names(&name).instance();
    let meta = || child_meta(db, account.clone(), COMPONENT);
    let pods: Vec<String> = (0..members.max(1)).map(|i| pod_name(&name, i)).collect();
    InstanceAccess {
        service_account: ServiceAccount {
            metadata: meta(),
            // The token reaches only the database container, through a
            // projected volume of its own.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["pods".into()]),
                    resource_names: Some(pods),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(vec!["example.com".into()]),
                    resources: Some(vec!["databases".into()]),
                    resource_names: Some(vec![name.clone()]),
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                },
            ]),
        },
        role_binding: RoleBinding {
            metadata: meta(),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: account.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: account.clone(),
                namespace: db.namespace(),
                ..Subject::default()
            }]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::database;

    #[test]
    fn the_pods_may_read_their_own_pods_and_database_and_nothing_else() {
        let db = database(
            "orders",
            database_operator_api::v1::Engine::Postgresql,
            "16",
            3,
        );
        let access = instance_access(&db, 3);
        assert_eq!(access.service_account.name_any(), "orders-instance");
        assert_eq!(
            access.service_account.automount_service_account_token,
            Some(false)
        );
        let rules = access.role.rules.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].resource_names.as_deref().unwrap(),
            ["orders-0", "orders-1", "orders-2"]
        );
        assert_eq!(rules[1].resource_names.as_deref().unwrap(), ["orders"]);
        assert!(rules.iter().all(|r| r.verbs == ["get"]));
        assert_eq!(access.role_binding.role_ref.name, "orders-instance");
        let subject = &access.role_binding.subjects.unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("ServiceAccount", "orders-instance")
        );
    }
}
