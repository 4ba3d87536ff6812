//! The Helm chart (`charts/database-operator`): `helm lint` and `helm
//! template` for every documented combination of values, and what each
//! renders. Helm is built from its Go module (`hack/helm/install.sh`).

use std::collections::BTreeMap;

use serde_json::Value;
use testkit::helm::{chart, kube_version, run, template};

const NS: &str = "ops";

/// The rendered objects by `Kind/name`.
fn by_name(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            (key, o)
        })
        .collect()
}

fn container(objects: &BTreeMap<String, Value>) -> &Value {
    &objects["Deployment/dbop-database-operator"]["spec"]["template"]["spec"]["containers"][0]
}

fn env(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
}

/// Every combination of values the chart documents.
const COMBINATIONS: &[&[&str]] = &[
    &[],
    &["replicaCount=2"],
    &[
        "serviceAccount.create=false",
        "serviceAccount.name=platform-operator",
    ],
    &[
        "metrics.serviceMonitor.enabled=true",
        "dashboard.enabled=true",
    ],
    &[
        "image.repository=registry.example.com/dbop",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
    &[
        "image.tag=0.1.0-rc1",
        "agentImage=registry.example.com/agent:1",
        "imagePullSecrets[0].name=pull",
    ],
    &[
        "logFormat=text",
        "runbookBaseUrl=https://runbooks.example.com/db.md",
        "nodeSelector.role=ops",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "podAnnotations.team=platform",
        "service.port=9090",
    ],
    &["watchNamespaces={team-a,team-b}", "replicaCount=2"],
    &[
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]=a",
        "podSecurityContext.runAsUser=10001",
        "podSecurityContext.fsGroup=10001",
        "securityContext.readOnlyRootFilesystem=true",
        "resources.limits.memory=256Mi",
        "podLabels.team=platform",
        "service.type=NodePort",
    ],
];

/// The namespaces the scoped combination watches.
const WATCHED: [&str; 2] = ["team-a", "team-b"];

#[test]
fn helm_lint_and_template_pass_for_every_documented_combination() {
    let chart = chart();
    let chart_path = chart.display().to_string();
    let kube_version = kube_version();
    for set in COMBINATIONS {
        let mut args = vec![
            "lint",
            "--strict",
            chart_path.as_str(),
            "--kube-version",
            &kube_version,
        ];
        for value in *set {
            args.extend(["--set", value]);
        }
        run(&args);
        let objects = template(&chart, "dbop", NS, set);
        assert!(!objects.is_empty(), "{set:?}");
        for object in &objects {
            let scoped_rbac = (object["kind"] == "Role" || object["kind"] == "RoleBinding")
                && object["metadata"]["name"] == "dbop-database-operator";
            if scoped_rbac {
                let ns = object["metadata"]["namespace"].as_str().unwrap();
                assert!(WATCHED.contains(&ns), "{set:?}: {object}");
            } else if object["kind"] != "ClusterRole" && object["kind"] != "ClusterRoleBinding" {
                assert_eq!(object["metadata"]["namespace"], NS, "{set:?}: {object}");
            }
        }
    }
}

#[test]
fn the_chart_grants_exactly_the_operators_rules() {
    let objects = by_name(template(&chart(), "dbop", NS, &["replicaCount=2"]));
    let rules = |key: &str| -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        serde_json::from_value(objects[key]["rules"].clone()).unwrap()
    };
    assert_eq!(
        rules("ClusterRole/dbop-database-operator"),
        operator::rbac::policy_rules(&operator::rbac::cluster_rules())
    );
    assert_eq!(
        rules("Role/dbop-database-operator-leader-election"),
        operator::rbac::policy_rules(operator::rbac::LEADER_ELECTION_RULES)
    );
    let binding = &objects["ClusterRoleBinding/dbop-database-operator"];
    assert_eq!(binding["subjects"][0]["name"], "dbop-database-operator");
    assert_eq!(binding["subjects"][0]["namespace"], NS);
}

/// Scoped to namespaces: a Role with the namespaced rules in each, the CRD
/// reads alone cluster-wide, and `WATCH_NAMESPACES` naming them.
#[test]
fn watch_namespaces_scope_the_operator_and_its_rights() {
    let objects = template(
        &chart(),
        "dbop",
        NS,
        &["watchNamespaces={team-b,team-a}", "replicaCount=2"],
    );
    let rules = |o: &Value| -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        serde_json::from_value(o["rules"].clone()).unwrap()
    };
    let roles: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Role" && o["metadata"]["name"] == "dbop-database-operator")
        .collect();
    let mut namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, WATCHED);
    for role in &roles {
        assert_eq!(
            rules(role),
            operator::rbac::policy_rules(operator::rbac::NAMESPACED_RULES)
        );
    }
    let bindings = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "dbop-database-operator")
        .count();
    assert_eq!(bindings, 2);
    let cluster_roles: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .collect();
    assert_eq!(cluster_roles.len(), 1, "only the CRD reads");
    assert_eq!(
        rules(cluster_roles[0]),
        operator::rbac::policy_rules(operator::rbac::CLUSTER_SCOPED_RULES)
    );
    let objects = by_name(objects);
    assert_eq!(
        env(container(&objects), "WATCH_NAMESPACES").as_deref(),
        Some("team-b,team-a")
    );
    assert!(objects.contains_key("Role/dbop-database-operator-leader-election"));
}

#[test]
fn values_shape_the_deployment_as_documented() {
    let chart = chart();
    // One replica: no leader election, no Lease role.
    let single = by_name(template(&chart, "dbop", NS, &[]));
    let operator = container(&single);
    assert_eq!(operator["image"], "database-operator:0.1.0");
    assert_eq!(operator["args"], serde_json::json!(["run"]));
    assert_eq!(env(operator, "LEADER_ELECT"), None);
    assert_eq!(env(operator, "LOG_FORMAT").as_deref(), Some("json"));
    assert_eq!(
        env(operator, "AGENT_IMAGE").as_deref(),
        Some("database-operator:0.1.0")
    );
    assert!(!single.contains_key("Role/dbop-database-operator-leader-election"));
    assert!(single.contains_key("ServiceAccount/dbop-database-operator"));
    assert!(!single.contains_key("ServiceMonitor/dbop-database-operator"));
    assert_eq!(operator["securityContext"]["readOnlyRootFilesystem"], true);
    let pod = &single["Deployment/dbop-database-operator"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(operator["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(operator["readinessProbe"]["httpGet"]["path"], "/readyz");

    // Two replicas: leader election and its Role.
    let pair = by_name(template(&chart, "dbop", NS, &["replicaCount=2"]));
    assert_eq!(
        env(container(&pair), "LEADER_ELECT").as_deref(),
        Some("true")
    );
    assert!(pair.contains_key("RoleBinding/dbop-database-operator-leader-election"));

    // An existing ServiceAccount.
    let theirs = by_name(template(
        &chart,
        "dbop",
        NS,
        &[
            "serviceAccount.create=false",
            "serviceAccount.name=platform-operator",
        ],
    ));
    assert!(!theirs.keys().any(|k| k.starts_with("ServiceAccount/")));
    assert_eq!(
        theirs["Deployment/dbop-database-operator"]["spec"]["template"]["spec"]["serviceAccountName"],
        "platform-operator"
    );

    // By digest, and the agent image follows it.
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pinned = by_name(template(
        &chart,
        "dbop",
        NS,
        &[
            "image.repository=registry.example.com/dbop",
            &format!("image.digest={digest}"),
        ],
    ));
    let image = format!("registry.example.com/dbop@{digest}");
    assert_eq!(container(&pinned)["image"], image.as_str());
    assert_eq!(env(container(&pinned), "AGENT_IMAGE"), Some(image));

    // Monitoring of the operator itself.
    let watched = by_name(template(
        &chart,
        "dbop",
        NS,
        &[
            "metrics.serviceMonitor.enabled=true",
            "dashboard.enabled=true",
        ],
    ));
    let monitor = &watched["ServiceMonitor/dbop-database-operator"];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let dashboard = &watched["ConfigMap/dbop-database-operator-dashboard"];
    let json = dashboard["data"]["operator-dashboard.json"]
        .as_str()
        .unwrap();
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/monitoring/operator-dashboard.json"),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(json).unwrap(),
        serde_json::from_str::<Value>(&committed).unwrap()
    );
}

#[test]
fn the_charts_version_is_the_operators() {
    let text = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let meta: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(meta["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
}
