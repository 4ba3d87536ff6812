//! The ClusterRole in deploy/operator is enough, and no more than that: the
//! real operator runs as its ServiceAccount (a kubeconfig that impersonates
//! it, bound by deploy/operator's ClusterRoleBinding) through a Database's
//! life — leader election on its Lease, monitoring with prometheus-operator's
//! CRDs, a Velero Schedule, a Database created with backups on a schedule, a user made in a real
//! PostgreSQL server, an on-demand and a scheduled backup, retention,
//! the user dropped and the Database deleted with its volumes — and the API
//! server refuses it nothing. The same identity cannot do what the role does
//! not grant.

use testkit::harness;

use std::path::PathBuf;
use std::time::Duration;

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::user::{DatabaseUser, UserPhase};
use harness::eventually;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use testkit::Cluster;
use testkit::servers::Postgres;

const WAIT: Duration = Duration::from_secs(150);
const NS: &str = "rbac";
const IDENTITY: &str = "system:serviceaccount:database-operator:database-operator";

fn read_yaml<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Applies deploy/operator's identity and RBAC, and writes a kubeconfig
/// that acts as that ServiceAccount.
async fn as_the_operator(cluster: &Cluster) -> anyhow::Result<Option<PathBuf>> {
    let client = cluster.client().await?;
    let apply = PatchParams::apply("rbac-test");
    let namespace: Namespace = read_yaml("deploy/operator/namespace.yaml");
    Api::<Namespace>::all(client.clone())
        .patch(&namespace.name_any(), &apply, &Patch::Apply(&namespace))
        .await?;
    let account: ServiceAccount = read_yaml("deploy/operator/serviceaccount.yaml");
    Api::<ServiceAccount>::namespaced(client.clone(), &namespace.name_any())
        .patch(&account.name_any(), &apply, &Patch::Apply(&account))
        .await?;
    let role: ClusterRole = read_yaml("deploy/operator/clusterrole.yaml");
    Api::<ClusterRole>::all(client.clone())
        .patch(&role.name_any(), &apply, &Patch::Apply(&role))
        .await?;
    let binding: ClusterRoleBinding = read_yaml("deploy/operator/clusterrolebinding.yaml");
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(&binding.name_any(), &apply, &Patch::Apply(&binding))
        .await?;

    let lease_role: Role = read_yaml("deploy/operator/leader-election-role.yaml");
    Api::<Role>::namespaced(client.clone(), &namespace.name_any())
        .patch(&lease_role.name_any(), &apply, &Patch::Apply(&lease_role))
        .await?;
    let lease_binding: RoleBinding = read_yaml("deploy/operator/leader-election-rolebinding.yaml");
    Api::<RoleBinding>::namespaced(client.clone(), &namespace.name_any())
        .patch(
            &lease_binding.name_any(),
            &apply,
            &Patch::Apply(&lease_binding),
        )
        .await?;

    let mut kubeconfig = Kubeconfig::read_from(cluster.kubeconfig_path())?;
    for user in &mut kubeconfig.auth_infos {
        let auth = user.auth_info.get_or_insert_with(Default::default);
        auth.impersonate = Some(IDENTITY.into());
        auth.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:database-operator".into(),
            "system:authenticated".into(),
        ]);
    }
    let path = cluster.dir().join("operator-sa.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kubeconfig)?)?;
    Ok(Some(path))
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_operator_runs_a_databases_whole_life_with_only_its_cluster_role() {
    let pg = Postgres::start().await.expect("PostgreSQL");
    // With leader election, as deploy/operator runs it: the Lease is in
    // the operator's namespace, under its Role.
    let resolve = vec![
        "--leader-elect".to_string(),
        "--resolve".to_string(),
        format!("pg-primary.{NS}=127.0.0.1:{}", pg.port()),
    ];
    let env = harness::start_with(resolve, as_the_operator)
        .await
        .expect("cluster and operator");
    let client = env.client().await;

    // The impersonation is real: this identity cannot read Nodes.
    let operator_kubeconfig = env.cluster.dir().join("operator-sa.kubeconfig");
    let restricted = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&operator_kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let refused = Api::<Node>::all(restricted)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );

    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        "database-operator",
    );
    eventually(&env, "the operator holding its Lease", WAIT, || async {
        let lease = leases.get_opt("database-operator").await.ok()??;
        lease.spec?.holder_identity
    })
    .await;

    env.namespace(NS).await;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-secret"},
                "stringData": {"username": pg.admin_user(), "password": pg.admin_password()}
            })),
        )
        .await
        .unwrap();
    harness::install_crd_files(&client, &harness::prometheus_operator_crds(), "rbac-test")
        .await
        .expect("installing prometheus-operator's CRDs");
    let dbs = Api::<Database>::namespaced(client.clone(), NS);
    dbs.create(
        &PostParams::default(),
        &object(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "pg", "namespace": NS},
            "spec": {"engine": "postgresql", "version": "16.4", "storage": {"size": "1Gi"},
                "deletionPolicy": "Delete",
                "monitoring": {"enabled": true, "alerting": true},
                "backup": {"enabled": true, "schedule": "* * * * *", "retention": "1",
                    "destination": {"s3": {"bucket": "backups", "region": "eu-west-1",
                        "endpoint": "http://s3.storage.svc:7070", "forcePathStyle": true,
                        "credentialsSecret": {"name": "s3-credentials"}}}}}
        })),
    )
    .await
    .unwrap();
    eventually(&env, "pg Running", WAIT, || async {
        (dbs.get("pg").await.ok()?.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;

    // Monitoring: the exporter's login, its DatabaseMonitor, and what that
    // becomes — ServiceMonitor, PrometheusRule and dashboard ConfigMap.
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind),
            plural,
        )
    };
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    ] {
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource(kind, plural));
        eventually(&env, &format!("pg's {kind}"), WAIT, || async {
            api.get_opt("pg").await.ok()?.map(|_| ())
        })
        .await;
    }

    let users = Api::<DatabaseUser>::namespaced(client.clone(), NS);
    users
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "apiVersion": "example.com/v1", "kind": "DatabaseUser",
                "metadata": {"name": "reader", "namespace": NS},
                "spec": {"databaseRef": {"name": "pg"}, "username": "reader",
                    "privileges": [{"role": "readOnly", "database": "postgres"}]}
            })),
        )
        .await
        .unwrap();
    eventually(&env, "reader Ready", WAIT, || async {
        (users.get("reader").await.ok()?.status?.phase == Some(UserPhase::Ready)).then_some(())
    })
    .await;

    let backups = Api::<DatabaseBackup>::namespaced(client.clone(), NS);
    backups
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "apiVersion": "example.com/v1", "kind": "DatabaseBackup",
                "metadata": {"name": "pg-manual", "namespace": NS},
                "spec": {"databaseRef": {"name": "pg"}}
            })),
        )
        .await
        .unwrap();
    // A scheduled run is recorded and completes; retention "1" then
    // deletes the older record.
    eventually(&env, "a scheduled backup completed", WAIT, || async {
        let all = backups.list(&ListParams::default()).await.ok()?;
        all.items
            .iter()
            .any(|b| {
                b.name_any().starts_with("pg-backup-")
                    && b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed)
            })
            .then_some(())
    })
    .await;
    eventually(&env, "retention removed the older backup", WAIT, || async {
        backups
            .get_opt("pg-manual")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Velero: once its Schedule CRD is installed, a Database with method
    // velero gets a Schedule in Velero's namespace, removed on deletion.
    harness::install_velero_schedule_crd(&client, "rbac-test")
        .await
        .expect("installing Velero's Schedule CRD");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &object(serde_json::json!({"metadata": {"name": "velero"}})),
        )
        .await
        .unwrap();
    dbs.create(
        &PostParams::default(),
        &object(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "vel", "namespace": NS},
            "spec": {"engine": "postgresql", "version": "16.4", "storage": {"size": "1Gi"},
                "backup": {"enabled": true, "schedule": "30 1 * * *", "retention": "7d",
                    "method": "velero", "velero": {"storageLocation": "default"}}}
        })),
    )
    .await
    .unwrap();
    let schedules = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "velero",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("velero.io", "v1", "Schedule"),
            "schedules",
        ),
    );
    let count = || async {
        schedules
            .list(&ListParams::default())
            .await
            .ok()
            .map(|l| l.items.len())
    };
    eventually(&env, "vel's velero Schedule", WAIT, || async {
        (count().await? == 1).then_some(())
    })
    .await;
    dbs.delete("vel", &DeleteParams::default()).await.unwrap();
    eventually(&env, "vel's Schedule removed", WAIT, || async {
        (count().await? == 0).then_some(())
    })
    .await;

    users
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    eventually(&env, "reader dropped", WAIT, || async {
        users.get_opt("reader").await.ok()?.is_none().then_some(())
    })
    .await;
    dbs.delete("pg", &DeleteParams::default()).await.unwrap();
    eventually(&env, "pg and its volumes gone", WAIT, || async {
        let gone = dbs.get_opt("pg").await.ok()?.is_none();
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
            .list(&ListParams::default())
            .await
            .ok()?;
        let left = claims
            .items
            .iter()
            // vel keeps its volume (deletionPolicy Retain, the default).
            .filter(|c| c.name_any().starts_with("data-pg-"))
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .count();
        (gone && left == 0).then_some(())
    })
    .await;

    let log = std::fs::read_to_string(&env.operator_log).unwrap();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("(403)"))
        .collect();
    assert!(
        refusals.is_empty(),
        "the API server refused the operator:\n{}",
        refusals.join("\n")
    );
    // And no reconcile failed for want of a permission.
    let (_, metrics) = env.http_get("/metrics").await.unwrap();
    let forbidden: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("database_operator_reconcile_errors_total{"))
        .filter(|l| l.contains(r#"kind="api_forbidden""#))
        .collect();
    assert_eq!(forbidden.len(), operator::metrics::CONTROLLERS.len());
    assert!(forbidden.iter().all(|l| l.ends_with(" 0")), "{forbidden:?}");
}
