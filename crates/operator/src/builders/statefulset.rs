//! StatefulSet `<name>`: the database pods and their volumes.

use std::collections::BTreeMap;

use database_operator_api::v1::Database;
use database_operator_api::v1::database::StorageSpec;
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::backup_job::{AGENT_DIR, install_agent};
use super::meta::{CONFIG_HASH, Names, child_meta, labels, selector_labels};
use super::security::{restricted_container_with_seccomp, restricted_pod};
use super::topology::{STREAMING, TOPOLOGY_ANNOTATION, Topology, statefulset_replicas};
use crate::engine::{Driver, PODINFO_DIR, Sizing, Streaming, field_env};
use crate::instance::StopSignal;

/// The `app.kubernetes.io/component` of the database pods (and their
/// StatefulSet): what tells them from the Jobs' pods, which carry the
/// Database's selector labels too.
pub const COMPONENT: &str = "database";

const DATA_VOLUME: &str = "data";
const CONFIG_VOLUME: &str = "config";
const PODINFO_VOLUME: &str = "podinfo";
const AGENT_VOLUME: &str = "agent";
const API_ACCESS_VOLUME: &str = "api-access";
/// Where a container finds its ServiceAccount's token, the cluster's CA and
/// its namespace (what Kubernetes clients read in a pod).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The labels the supervisor read from the API, for the instance script.
const CONFIRMED_LABELS: &str = "/agent/labels";
/// The name of the init container that copies the supervisor into the pod.
pub(crate) const INSTALL_SUPERVISOR: &str = "install-agent";

/// The stop signal of `driver`'s members when they run under the in-pod
/// supervisor (`crate::instance`) in `topology`: replicated PostgreSQL and
/// MySQL-family members do.
pub fn supervised(driver: &dyn Driver, topology: Topology) -> Option<StopSignal> {
    driver
        .streaming()
        .filter(|_| topology.is_streaming())
        .and_then(Streaming::stop_signal)
}

/// The StatefulSet for `db`. `config_hash` lands on the pod template so a
/// configuration change rolls the pods.
pub fn statefulset(
    db: &Database,
    driver: &dyn Driver,
    sizing: &Sizing,
    config_hash: &str,
    topology: Topology,
    agent_image: &str,
) -> StatefulSet {
    let names = Names(&db.name_any());
    StatefulSet {
        metadata: child_meta(db, names.statefulset(), COMPONENT),
        spec: StatefulSetSpec {
            replicas: Some(statefulset_replicas(db, topology)),
            service_name: Some(names.headless()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(db)),
                ..Default::default()
            },
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    ..Default::default()
                }),
            }),
            // Data outlives pods and scale-downs; deleting it is the finalizer's
            // decision, driven by spec.deletionPolicy.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: pod_template(db, driver, sizing, config_hash, topology, agent_image),
            volume_claim_templates: Some(vec![volume_claim_template(&db.spec.storage)]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn pod_template(
    db: &Database,
    driver: &dyn Driver,
    sizing: &Sizing,
    config_hash: &str,
    topology: Topology,
    agent_image: &str,
) -> PodTemplateSpec {
    let names = Names(&db.name_any());
    let uid = driver.run_as_user();
    let streaming = driver.streaming().filter(|_| topology.is_streaming());
    let mut annotations = BTreeMap::from([(CONFIG_HASH.to_owned(), config_hash.to_owned())]);
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if streaming.is_some() {
        annotations.insert(TOPOLOGY_ANNOTATION.to_owned(), STREAMING.to_owned());
        volumes.push(podinfo_volume());
    }
    let supervisor = supervised(driver, topology);
    if supervisor.is_some() {
        volumes.push(Volume {
            name: AGENT_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        volumes.push(api_access_volume());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(db, COMPONENT)),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            init_containers: supervisor.map(|_| vec![install_agent(agent_image, &agent_mount())]),
            service_account_name: supervisor.map(|_| names.instance()),
            containers: std::iter::once(container(db, driver, sizing, streaming, supervisor))
                .chain(
                    db.enabled_monitoring()
                        .map(|_| super::monitoring::sidecar(db, driver.port())),
                )
                .collect(),
            volumes: Some(volumes),
            security_context: Some(PodSecurityContext {
                fs_group: Some(uid),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                ..restricted_pod(uid)
            }),
            // Databases need time to flush and shut down cleanly.
            termination_grace_period_seconds: Some(60),
            // Service env vars (FOO_PORT=tcp://...) clash with engine variables and grow with the namespace.
            enable_service_links: Some(false),
            automount_service_account_token: Some(false),
            affinity: Some(spread_replicas(db)),
            ..Default::default()
        }),
    }
}

fn agent_mount() -> VolumeMount {
    VolumeMount {
        name: AGENT_VOLUME.into(),
        mount_path: AGENT_DIR.into(),
        ..Default::default()
    }
}

/// The pod's ServiceAccount token (refreshed by the kubelet), the cluster's
/// CA and the namespace, for the database container alone: the exporter
/// sidecar gets no API access.
fn api_access_volume() -> Volume {
    Volume {
        name: API_ACCESS_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The supervisor's command line: it starts the instance script once the
/// API has confirmed the pod's role, and stops a primary cut off from it.
fn supervisor_command(db: &Database, signal: StopSignal) -> Vec<String> {
    let signal = match signal {
        StopSignal::Int => "int",
        StopSignal::Term | StopSignal::Quit => "term",
    };
    [
        &format!("{AGENT_DIR}/database-operator"),
        "instance",
        "--database",
        &db.name_any(),
        "--role-file",
        CONFIRMED_LABELS,
        "--stop-signal",
        signal,
        "--",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The pod's labels as a file, where the instance script reads its role.
fn podinfo_volume() -> Volume {
    Volume {
        name: PODINFO_VOLUME.into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "labels".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(
    db: &Database,
    driver: &dyn Driver,
    sizing: &Sizing,
    streaming: Option<&dyn Streaming>,
    supervisor: Option<StopSignal>,
) -> Container {
    let names = Names(&db.name_any());
    let args = driver.args();
    let mut env = driver.env(&db.name_any(), &names.secret());
    let mut mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: driver.data_mount_path().into(),
            ..Default::default()
        },
        VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: driver.config_mount_path().into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    if let Some(streaming) = streaming {
        env.extend(streaming.env(&db.name_any(), &names.replication()));
        mounts.push(VolumeMount {
            name: PODINFO_VOLUME.into(),
            mount_path: PODINFO_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut command = streaming.map(Streaming::command);
    if let (Some(signal), Some(script)) = (supervisor, command.as_mut()) {
        script.splice(0..0, supervisor_command(db, signal));
        env.push(field_env("POD_NAMESPACE", "metadata.namespace"));
        mounts.push(agent_mount());
        mounts.push(VolumeMount {
            name: API_ACCESS_VOLUME.into(),
            mount_path: SERVICE_ACCOUNT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Container {
        name: driver.container_name().into(),
        image: Some(driver.image(&db.spec.version)),
        image_pull_policy: Some("IfNotPresent".into()),
        command,
        args: (!args.is_empty()).then_some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(driver.container_name().into()),
            container_port: driver.port(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(mounts),
        readiness_probe: Some(driver.readiness_probe()),
        liveness_probe: Some(driver.liveness_probe()),
        resources: Some(sizing.resources.clone()),
        security_context: Some(restricted_container_with_seccomp()),
        ..Default::default()
    }
}

/// Prefer one replica per node, so one node failure cannot take them all.
fn spread_replicas(db: &Database) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(db)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn volume_claim_template(storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The supervisor in the database pods is the operator's binary, copied
/// from the operator's image: a new operator must not restart every
/// database for it. So the live pods' image stays, unless the pod template
/// changes anyway (then the new one rides along with that roll).
pub fn keep_supervisor_image(desired: &mut StatefulSet, live: &StatefulSet) {
    fn installer(template: &mut PodTemplateSpec) -> Option<&mut Container> {
        template
            .spec
            .as_mut()?
            .init_containers
            .as_mut()?
            .iter_mut()
            .find(|c| c.name == INSTALL_SUPERVISOR)
    }
    let Some(running) = supervisor_image(live).map(str::to_owned) else {
        return;
    };
    let Some(container) = installer(&mut desired.spec.template) else {
        return;
    };
    if container.image.as_deref() == Some(running.as_str()) {
        return;
    }
    // Try the running image; keep it only if nothing else in the template
    // changes.
    let new = container.image.replace(running);
    let template = |sts: &StatefulSet| serde_json::to_value(&sts.spec.template).unwrap_or_default();
    if !crate::diff::is_subset(&template(desired), &template(live))
        && let Some(container) = installer(&mut desired.spec.template)
    {
        container.image = new;
    }
}

/// The image the supervisor installer of `sts`'s pods runs.
pub fn supervisor_image(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .template
        .spec
        .as_ref()?
        .init_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == INSTALL_SUPERVISOR)?
        .image
        .as_deref()
}

/// A StatefulSet's volumeClaimTemplates cannot change after creation: when
/// ours differ from the live ones (a storage change), send the live ones, so
/// the apply does not fail. Growing the volumes is done on the claims.
pub fn keep_immutable_fields(desired: &mut StatefulSet, live: &StatefulSet) {
    let as_value = |templates: &Option<Vec<PersistentVolumeClaim>>| {
        serde_json::to_value(templates).unwrap_or_default()
    };
    let ours = as_value(&desired.spec.volume_claim_templates);
    if !crate::diff::is_subset(&ours, &as_value(&live.spec.volume_claim_templates)) {
        desired.spec.volume_claim_templates = live.spec.volume_claim_templates.clone();
    }
}
