//! Pure builders: `(&Database, &dyn Driver) -> child object`. No I/O here;
//! the controller applies what these return.

pub mod backup_job;
pub mod configmap;
pub mod credentials;
pub mod cronjob;
pub mod drill;
pub mod instance_access;
pub mod meta;
pub mod monitoring;
pub mod network_policy;
pub mod pdb;
pub mod restore_job;
pub mod rollout;
pub mod secret;
pub mod security;
pub mod service;
pub mod statefulset;
pub mod topology;
pub mod velero;

use database_operator_api::v1;
use database_operator_api::v1::Database;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use sha2::{Digest, Sha256};

use crate::engine::{Driver, Sizing, driver_of};
use topology::{Topology, statefulset_replicas};

/// The operator's namespace when it is not told (`POD_NAMESPACE`).
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "database-operator";

/// The image with the operator's binary, which backup pods copy the agent from.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("database-operator:", env!("CARGO_PKG_VERSION"));

/// Everything a Database should own, except its admin and replication
/// Secrets (which are created once and never rebuilt).
pub struct Desired {
    pub config_map: ConfigMap,
    pub statefulset: StatefulSet,
    pub services: service::Services,
    pub pdb: PodDisruptionBudget,
    pub backup: Option<CronJob>,
    /// The restore drills' CronJob, when spec.backup.verify asks for them.
    pub verify: Option<CronJob>,
    /// The Velero Schedule, for `spec.backup.method: velero`.
    pub velero: Option<crate::velero::Schedule>,
    /// With `spec.monitoring.enabled`: the exporters' Service and the
    /// DatabaseMonitor to create when there is none.
    pub monitoring: Option<MonitoringChildren>,
    /// With `spec.restore`, once its source is known: the restore Job.
    pub restore: Option<Job>,
    /// For members under the in-pod supervisor: their API access.
    pub instance_access: Option<instance_access::InstanceAccess>,
    /// With network isolation: the NetworkPolicy (see [`Desired::isolate`]).
    pub network_policy: Option<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

/// Where a restore reads its backup from, once `spec.restore` is resolved.
pub struct RestoreFrom<'a> {
    pub target: &'a backup_job::S3Target,
    /// The backup's folder name in the bucket.
    pub key: &'a str,
}

/// What a Database with monitoring on owns besides the exporter sidecar.
#[derive(Clone)]
pub struct MonitoringChildren {
    pub service: Service,
    pub monitor: v1::monitor::DatabaseMonitor,
}

impl Desired {
    /// What a new Database owns.
    pub fn build(db: &Database) -> Self {
        Self::build_with(db, DEFAULT_AGENT_IMAGE, None, Topology::of(db, None)).isolate(
            db,
            DEFAULT_OPERATOR_NAMESPACE,
            true,
        )
    }

    /// Adds network isolation: a StatefulSet `created_isolated` (a new one,
    /// or one created so: [`network_policy::created_isolated`]) carries the
    /// annotation that says so, and an isolated Database
    /// ([`network_policy::isolated`]) its NetworkPolicy, which admits the
    /// operator's pods in `operator_namespace`.
    pub fn isolate(
        mut self,
        db: &Database,
        operator_namespace: &str,
        created_isolated: bool,
    ) -> Self {
        if created_isolated {
            self.statefulset
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    network_policy::NETWORK_ANNOTATION.to_owned(),
                    network_policy::BY_DEFAULT.to_owned(),
                );
        }
        self.network_policy = network_policy::isolated(db, created_isolated)
            .then(|| network_policy::network_policy(db, operator_namespace));
        self
    }

    /// As [`Desired::build`], with the image that carries the backup agent,
    /// for `spec.restore` the backup it resolved to, and the topology its
    /// live StatefulSet has.
    pub fn build_with(
        db: &Database,
        agent_image: &str,
        restore: Option<RestoreFrom<'_>>,
        topology: Topology,
    ) -> Self {
        let driver: &dyn Driver = driver_of(&db.spec);
        let sizing = Sizing::from_spec(db.spec.resources.as_ref());
        let config_map = configmap::config_map(db, driver, &sizing, topology);
        let config_hash = configmap::config_hash(&config_map, driver);
        Self {
            statefulset: statefulset::statefulset(
                db,
                driver,
                &sizing,
                &config_hash,
                topology,
                agent_image,
            ),
            instance_access: statefulset::supervised(driver, topology)
                .map(|_| instance_access::instance_access(db, statefulset_replicas(db, topology))),
            network_policy: None,
            config_map,
            services: service::services(db, driver, topology),
            pdb: pdb::pod_disruption_budget(db),
            backup: cronjob::backup_cronjob(db, driver, agent_image),
            verify: drill::verify_cronjob(db, driver, agent_image),
            velero: velero::desired(db),
            monitoring: db.enabled_monitoring().map(|_| MonitoringChildren {
                service: monitoring::metrics_service(db),
                monitor: monitoring::owned_monitor(db),
            }),
            restore: db.spec.restore.as_ref().zip(restore).map(|(spec, from)| {
                restore_job::restore_job(db, driver, from.target, from.key, spec.force, agent_image)
            }),
        }
    }

    /// Fits the StatefulSet to the `live` one: the fields that cannot
    /// change keep their value, the supervisor's image stays while nothing
    /// else changes, and the running pod template stays while only the
    /// operator changed it and the user has not approved (then returned as
    /// pending; see [`rollout`]).
    pub fn settle(
        &mut self,
        db: &Database,
        live: Option<&StatefulSet>,
    ) -> Option<rollout::PendingUpdate> {
        if let Some(live) = live {
            statefulset::keep_immutable_fields(&mut self.statefulset, live);
            statefulset::keep_supervisor_image(&mut self.statefulset, live);
        }
        rollout::hold_operator_changes(&mut self.statefulset, live, db)
    }

    /// Every Service that should exist.
    pub fn all_services(&self) -> impl Iterator<Item = &Service> {
        [
            Some(&self.services.headless),
            Some(&self.services.primary),
            self.services.readonly.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

/// A short, stable hash of anything serialisable.
pub fn hash_of(value: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("Kubernetes objects serialise to JSON");
    let digest = Sha256::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
