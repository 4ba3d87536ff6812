//! The operator's RBAC, in one place: every permission the controllers use,
//! with why. `deploy/operator/` (the cluster-wide ClusterRole, and the
//! scoped variant under `namespaced/`), the Helm chart's RBAC and the OLM
//! bundle's permissions are rendered from these tables (`make manifests`;
//! a test fails when the files drift): one source, so that no install path
//! grants more than another.
//!
//! The rules are split by where they apply: [`NAMESPACED_RULES`] inside
//! the watched namespaces (a ClusterRole when the operator watches all of
//! them, a Role in each when `WATCH_NAMESPACES` scopes it) and
//! [`CLUSTER_SCOPED_RULES`], the CRD reads no Role can grant.
//!
//! The rules are the least the controllers need, read from the code (every
//! `Api::<…>` in `crates/operator/src` and the verbs called on it).
//! Server-side apply is a `patch`; creating an object through it also needs
//! `create`. Children are removed by garbage collection through owner
//! references, so only what the operator deletes itself has `delete`. No
//! wildcard verbs or resources. A test runs a Database's whole life under
//! exactly these roles (`tests/control_plane/rbac.rs`).

use k8s_openapi::api::rbac::v1::PolicyRule;

/// One rule: what it lets the operator do, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Why the operator holds it (a comment in the rendered YAML).
    pub why: &'static str,
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const READ: [&str; 3] = ["get", "list", "watch"];

/// Everything the controllers do inside the namespaces they watch: a
/// ClusterRole when they watch all of them, else a Role in each
/// (`WATCH_NAMESPACES`, OLM's OwnNamespace, SingleNamespace and
/// MultiNamespace modes).
pub const NAMESPACED_RULES: &[Rule] = &[
    Rule {
        why: "Database: watched; finalizer added and removed; status written.",
        group: "example.com",
        resources: &["databases"],
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        why: "",
        group: "example.com",
        resources: &[
            "databases/status",
            "databaseusers/status",
            "databasebackups/status",
            "databasemonitors/status",
        ],
        verbs: &["patch"],
    },
    Rule {
        why: "DatabaseMonitor: watched; created for a Database with monitoring (its alerting switch patched), deleted when monitoring is switched off.",
        group: "example.com",
        resources: &["databasemonitors"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "What a DatabaseMonitor becomes (the dashboard is a ConfigMap, below).",
        group: "monitoring.coreos.com",
        resources: &["servicemonitors"],
        verbs: &["get", "create", "patch"],
    },
    Rule {
        why: "",
        group: "monitoring.coreos.com",
        resources: &["prometheusrules"],
        verbs: &["get", "create", "patch", "delete"],
    },
    Rule {
        why: "DatabaseUser: watched; finalizer added and removed.",
        group: "example.com",
        resources: &["databaseusers"],
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        why: "DatabaseBackup: watched; scheduled runs recorded; retention deletes old records.",
        group: "example.com",
        resources: &["databasebackups"],
        verbs: &["get", "list", "watch", "create", "delete"],
    },
    Rule {
        why: "The StatefulSet, its ConfigMap and PodDisruptionBudget: applied, cached.",
        group: "apps",
        resources: &["statefulsets"],
        verbs: &["get", "list", "watch", "create", "patch"],
    },
    Rule {
        why: "",
        group: "",
        resources: &["configmaps"],
        verbs: &["get", "list", "watch", "create", "patch"],
    },
    Rule {
        why: "",
        group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["get", "list", "watch", "create", "patch"],
    },
    Rule {
        why: "Services: applied; the read-only one deleted when it is no longer wanted.",
        group: "",
        resources: &["services"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "Secrets: the admin Secret and user credentials are created and applied; password Secrets are read; copies in other namespaces are deleted.",
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "The backup CronJob: applied, deleted when backups are switched off.",
        group: "batch",
        resources: &["cronjobs"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "Backup Jobs: on-demand ones created; scheduled ones watched.",
        group: "batch",
        resources: &["jobs"],
        verbs: &["get", "list", "watch", "create"],
    },
    Rule {
        why: "The backup pod's termination message carries the agent's report. A streaming Database's pods carry the role label the operator keeps (patch), and a failed-over primary's pod is deleted so that it restarts as a replica (delete). The operator grants a replicated Database's pods get on their own pods, which it must hold itself (get).",
        group: "",
        resources: &["pods"],
        verbs: &["get", "list", "patch", "delete"],
    },
    Rule {
        why: "A replicated Database's pods read their role and the failover delay through a ServiceAccount of their own, with a Role that may get only the Database's pods and the Database: applied, cached.",
        group: "",
        resources: &["serviceaccounts"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "",
        group: "rbac.authorization.k8s.io",
        resources: &["roles", "rolebindings"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "A Database's NetworkPolicy: applied, cached, deleted when isolation is switched off.",
        group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        why: "Volume claims: grown when spec.storage.size grows, deleted on Delete policy.",
        group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["list", "patch", "delete"],
    },
    Rule {
        why: "Velero (spec.backup.method velero): Schedules are applied in Velero's namespace, found by label and deleted when no longer wanted.",
        group: "velero.io",
        resources: &["schedules"],
        verbs: &["get", "list", "create", "patch", "delete"],
    },
    Rule {
        why: "Events for transitions a user should see.",
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// What no Role can grant: reads of cluster-scoped objects (a ClusterRole
/// in every install). Never Secrets or anything else of a namespace.
pub const CLUSTER_SCOPED_RULES: &[Rule] = &[Rule {
    why: "Whether Velero's and prometheus-operator's CRDs are installed: the monitor controller watches CRD metadata (all of them, so no resourceNames).",
    group: "apiextensions.k8s.io",
    resources: &["customresourcedefinitions"],
    verbs: &READ,
}];

/// Every rule of an operator watching all namespaces (its ClusterRole).
pub fn cluster_rules() -> Vec<Rule> {
    NAMESPACED_RULES
        .iter()
        .chain(CLUSTER_SCOPED_RULES)
        .copied()
        .collect()
}

/// The leader-election Lease, in the operator's own namespace only (a
/// Role).
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    why: "",
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "update"],
}];

/// The name of the ClusterRole and the prefix of the operator's Roles.
pub const NAME: &str = "database-operator";

/// `rules` as Kubernetes objects, for installers that build their own
/// manifests (the Helm chart, the OLM bundle).
pub fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|r| PolicyRule {
            api_groups: Some(vec![r.group.to_owned()]),
            resources: Some(r.resources.iter().map(|s| (*s).to_owned()).collect()),
            verbs: r.verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// A YAML flow list of quoted strings: `["a", "b"]`.
fn flow(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `text` as YAML comment lines of at most 76 columns, indented by `indent`.
fn comment(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + 2 + line.len() + 1 + word.len() > 76 {
            out.push_str(&format!("{indent}# {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}# {line}\n"));
    }
    out
}

fn render_rules(rules: &[Rule]) -> String {
    let mut out = String::from("rules:\n");
    for rule in rules {
        out.push_str(&comment(rule.why, "  "));
        out.push_str(&format!("  - apiGroups: {}\n", flow(&[rule.group])));
        if rule.resources.len() == 1 {
            out.push_str(&format!("    resources: {}\n", flow(rule.resources)));
        } else {
            out.push_str("    resources:\n");
            for resource in rule.resources {
                out.push_str(&format!("      - {resource}\n"));
            }
        }
        out.push_str(&format!("    verbs: {}\n", flow(rule.verbs)));
    }
    out
}

const GENERATED: &str =
    "# Generated from crates/operator/src/rbac.rs by `make manifests`; do not edit.\n";

/// `deploy/operator/clusterrole.yaml`.
pub fn cluster_role_yaml() -> String {
    format!(
        "{GENERATED}{}apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {NAME}\n  labels:\n    app.kubernetes.io/name: {NAME}\n{}",
        comment(
            "The least the controllers need, with why (crates/operator/src/rbac.rs). Server-side apply is a `patch`; creating an object through it also needs `create`. Children are removed by garbage collection through owner references, so only what the operator deletes itself has `delete`. No wildcard verbs or resources.",
            ""
        ),
        render_rules(&cluster_rules())
    )
}

/// The subject every binding names: the operator's ServiceAccount in its
/// namespace.
fn subject_yaml() -> String {
    format!("subjects:\n  - kind: ServiceAccount\n    name: {NAME}\n    namespace: {NAME}\n")
}

/// `deploy/operator/namespaced/clusterrole.yaml`: what an operator scoped
/// to some namespaces reads cluster-wide (CRDs only), and its binding.
pub fn scoped_cluster_role_yaml() -> String {
    format!(
        "{GENERATED}{}apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {NAME}-crds\n  labels:\n    app.kubernetes.io/name: {NAME}\n{}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {NAME}-crds\n  labels:\n    app.kubernetes.io/name: {NAME}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {NAME}-crds\n{}",
        comment(
            "An operator scoped to some namespaces (WATCH_NAMESPACES) reads nothing cluster-wide but CRDs; everything else it holds through role.yaml, applied in each watched namespace.",
            ""
        ),
        render_rules(CLUSTER_SCOPED_RULES),
        subject_yaml()
    )
}

/// `deploy/operator/namespaced/role.yaml`: the Role and RoleBinding an
/// operator scoped to some namespaces needs in each of them, without a
/// namespace (`kubectl apply -n <namespace> -f …`).
pub fn scoped_role_yaml() -> String {
    format!(
        "{GENERATED}{}apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {NAME}\n  labels:\n    app.kubernetes.io/name: {NAME}\n{}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {NAME}\n  labels:\n    app.kubernetes.io/name: {NAME}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {NAME}\n{}",
        comment(
            "Apply in every namespace the operator watches: kubectl apply -n <namespace> -f deploy/operator/namespaced/role.yaml. The same rules as the cluster-wide ClusterRole, less the CRD reads.",
            ""
        ),
        render_rules(NAMESPACED_RULES),
        subject_yaml()
    )
}

/// `deploy/operator/leader-election-role.yaml`, in `namespace`.
pub fn leader_election_role_yaml(namespace: &str) -> String {
    format!(
        "{GENERATED}# The leader-election Lease, in the operator's own namespace only.\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {NAME}-leader-election\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/name: {NAME}\n{}",
        render_rules(LEADER_ELECTION_RULES)
    )
}

/// The chart's `templates/_rules.tpl`: the same rules as named templates,
/// which the chart's ClusterRole and leader-election Role include.
pub fn chart_rules_tpl() -> String {
    format!(
        "{{{{- /* Generated from crates/operator/src/rbac.rs by `make manifests`; do not edit. */ -}}}}\n{{{{- define \"database-operator.clusterRules\" -}}}}\n{}{{{{- end }}}}\n{{{{- define \"database-operator.namespacedRules\" -}}}}\n{}{{{{- end }}}}\n{{{{- define \"database-operator.clusterScopedRules\" -}}}}\n{}{{{{- end }}}}\n{{{{- define \"database-operator.leaderElectionRules\" -}}}}\n{}{{{{- end }}}}\n",
        render_rules(&cluster_rules()),
        render_rules(NAMESPACED_RULES),
        render_rules(CLUSTER_SCOPED_RULES),
        render_rules(LEADER_ELECTION_RULES)
    )
}

/// Every RBAC file `make manifests` writes: (path from the repository's
/// root, contents).
pub fn generated_files() -> Vec<(String, String)> {
    vec![
        (
            "deploy/operator/clusterrole.yaml".to_owned(),
            cluster_role_yaml(),
        ),
        (
            "deploy/operator/namespaced/clusterrole.yaml".to_owned(),
            scoped_cluster_role_yaml(),
        ),
        (
            "deploy/operator/namespaced/role.yaml".to_owned(),
            scoped_role_yaml(),
        ),
        (
            "deploy/operator/leader-election-role.yaml".to_owned(),
            leader_election_role_yaml(NAME),
        ),
        (
            format!("{}/templates/_rules.tpl", crate::crd::CHART_DIR),
            chart_rules_tpl(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_operator_reads_no_namespaced_kind_cluster_wide() {
        for rule in CLUSTER_SCOPED_RULES {
            assert_eq!(rule.resources, ["customresourcedefinitions"]);
            assert_eq!(rule.verbs, READ);
        }
        assert!(
            NAMESPACED_RULES
                .iter()
                .all(|r| !r.resources.contains(&"customresourcedefinitions"))
        );
    }

    #[test]
    fn no_wildcards_and_every_rule_names_verbs() {
        for rule in cluster_rules().iter().chain(LEADER_ELECTION_RULES) {
            assert!(!rule.verbs.is_empty() && !rule.resources.is_empty());
            assert!(!rule.verbs.contains(&"*") && !rule.resources.contains(&"*"));
            assert!(rule.group != "*");
        }
    }

    #[test]
    fn the_rendered_role_reads_back_as_the_rules() {
        let role: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_saphyr::from_str(&cluster_role_yaml()).unwrap();
        assert_eq!(role.rules.unwrap(), policy_rules(&cluster_rules()));
        let scoped: Vec<serde_json::Value> =
            serde_saphyr::from_str_multiple(&scoped_role_yaml()).unwrap();
        let scoped_role: k8s_openapi::api::rbac::v1::Role =
            serde_json::from_value(scoped[0].clone()).unwrap();
        assert_eq!(scoped_role.metadata.namespace, None, "applied with -n");
        assert_eq!(scoped_role.rules.unwrap(), policy_rules(NAMESPACED_RULES));
        assert_eq!(scoped[1]["roleRef"]["name"], NAME);
        let crds: Vec<serde_json::Value> =
            serde_saphyr::from_str_multiple(&scoped_cluster_role_yaml()).unwrap();
        let crds: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_json::from_value(crds[0].clone()).unwrap();
        assert_eq!(crds.rules.unwrap(), policy_rules(CLUSTER_SCOPED_RULES));
        let lease: k8s_openapi::api::rbac::v1::Role =
            serde_saphyr::from_str(&leader_election_role_yaml("ops")).unwrap();
        assert_eq!(lease.metadata.namespace.as_deref(), Some("ops"));
        assert_eq!(lease.rules.unwrap(), policy_rules(LEADER_ELECTION_RULES));
        assert!(comment("a b", "  ").starts_with("  # a b"));
    }
}
