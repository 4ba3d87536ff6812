//! `Database`: one database cluster of one engine.
//!
//! The schema is the seed's enhanced CRD, field for field, plus additive,
//! optional extensions (S3 endpoint and credentials, resources, deletion
//! policy) and CEL rules for what the seed's patterns cannot say.

use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::v1::condition::Condition;
use crate::v1::replication::{ReplicationSpec, ReplicationStatus};
use crate::v1::restore::{RestoreSpec, RestoreStatus, Verification, VerifySpec};

/// The seed's pattern for `spec.version`.
pub const VERSION_PATTERN: &str = r"^[0-9]+\.[0-9]+(\.[0-9]+)?$";
/// The seed's pattern for `spec.storage.size`.
pub const STORAGE_SIZE_PATTERN: &str = r"^[0-9]+[KMGT]i?$";
/// The seed's pattern for `spec.backup.schedule`.
pub const SCHEDULE_PATTERN: &str = r"^(@(annually|yearly|monthly|weekly|daily|hourly|reboot))|(@every (\d+(ns|us|µs|ms|s|m|h))+)|((((\d+,)+\d+|(\d+(\/|-)\d+)|\d+|\*) ?){5,7})$";
/// Retention is a period (`12h`, `7d`, `4w`) or a count of backups (`10`).
pub const RETENTION_PATTERN: &str = r"^[0-9]+[hdw]?$";

/// A database cluster of one engine (PostgreSQL, MySQL or MongoDB): the
/// operator keeps its StatefulSet, Services, configuration, credentials,
/// disruption budget, backups and monitoring, and reports its state in
/// `status`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Database",
    plural = "databases",
    singular = "database",
    shortname = "db",
    category = "databases",
    namespaced,
    status = "DatabaseStatus",
    derive = "PartialEq",
    doc = "Database is the Schema for the databases API",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Engine", type_ = "string", description = "Database engine", json_path = ".spec.engine"),
    printcolumn(name = "Version", type_ = "string", description = "Database version", json_path = ".spec.version"),
    printcolumn(name = "Replicas", type_ = "integer", description = "Number of replicas", json_path = ".spec.replicas"),
    printcolumn(name = "Phase", type_ = "string", description = "Current phase", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 52")
        .message("metadata.name must start with a letter, contain only lowercase letters, digits and '-', and be at most 52 characters (it names the StatefulSet and Services)"),
    validation = Rule::new("!has(self.spec.replication) || self.spec.engine != 'mongodb' || (!has(self.spec.replication.failoverDelay) && !has(self.spec.replication.maxFailoverLag) && !has(self.spec.replication.mode) && !has(self.spec.replication.primary) && (!has(self.spec.replication.allowLaggingFailover) || !self.spec.replication.allowLaggingFailover))")
        .message("spec.replication: a MongoDB replica set elects its own primary, so of spec.replication only reseedIndependentReplicas applies to it; failover, switchover and sync mode are PostgreSQL's, MySQL's and MariaDB's")
        .field_path(".spec.replication"),
    validation = Rule::new("!has(self.spec.replication) || !has(self.spec.replication.primary) || (self.spec.replication.primary.startsWith(self.metadata.name + '-') && self.spec.replication.primary.substring(size(self.metadata.name) + 1).matches('^(0|[1-9][0-9]?)$') && int(self.spec.replication.primary.substring(size(self.metadata.name) + 1)) < self.spec.replicas)")
        .message("spec.replication.primary must name one of this Database's pods, <name>-<ordinal> with an ordinal below spec.replicas")
        .field_path(".spec.replication.primary"),
    validation = Rule::new("!has(self.spec.replication) || !has(self.spec.replication.mode) || self.spec.replication.mode != 'sync' || self.spec.replicas >= 2")
        .message("spec.replication.mode: sync needs spec.replicas of 2 or more, or every commit would wait for a replica that does not exist")
        .field_path(".spec.replication.mode"),
)]
#[x_kube(
    validation = Rule::new("!has(self.resources) || ((!has(self.resources.requests) || self.resources.requests.all(k, k in ['cpu', 'memory', 'ephemeral-storage'] || k.startsWith('hugepages-'))) && (!has(self.resources.limits) || self.resources.limits.all(k, k in ['cpu', 'memory', 'ephemeral-storage'] || k.startsWith('hugepages-'))))")
        .message("resources: requests and limits take cpu, memory, ephemeral-storage and hugepages-<size> only")
        .field_path(".resources"),
    validation = Rule::new("!has(self.flavor) || self.engine == 'mysql'")
        .message("flavor: only the mysql engine has flavors (mysql, mariadb)")
        .field_path(".flavor"),
    validation = Rule::new("(has(self.flavor) ? self.flavor : 'mysql') == (has(oldSelf.flavor) ? oldSelf.flavor : 'mysql')")
        .message("flavor is immutable: MySQL and MariaDB data directories are not interchangeable; create a new Database and restore a backup into it")
        .field_path(".flavor"),
    validation = Rule::new("self.engine == oldSelf.engine")
        .message("engine is immutable: create a new Database and restore a backup into it")
        .field_path(".engine"),
    validation = Rule::new("int(self.version.split('.')[0]) >= int(oldSelf.version.split('.')[0])")
        .message("version: a major-version downgrade is not supported")
        .field_path(".version"),
    validation = Rule::new("self.engine != 'postgresql' || self.version.split('.')[0] == oldSelf.version.split('.')[0]")
        .message("version: a PostgreSQL major-version upgrade needs pg_upgrade, which the operator does not run; restore a backup into a new Database instead")
        .field_path(".version"),
    validation = Rule::new("!has(self.restore) || !has(oldSelf.restore) || self.restore == oldSelf.restore")
        .message("restore cannot change once set: a Database is restored once, when it is created")
        .field_path(".restore"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database engine type
    pub engine: Engine,

    /// Which server runs the mysql engine: `mysql` (the default, image
    /// `mysql:<version>`) or `mariadb` (image `mariadb:<version>`, with its
    /// own client tools and environment). Only for `engine: mysql`; fixed
    /// once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,

    /// Database version
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    pub version: String,

    /// Number of database replicas
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,

    /// Storage configuration
    #[serde(default)]
    pub storage: StorageSpec,

    /// Backup configuration
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Monitoring configuration
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// CPU and memory for the database container. The engine's configuration
    /// (buffer pools, caches, connection limits) is sized from these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_resources")]
    pub resources: Option<ResourceRequirements>,

    /// Namespaces into which a DatabaseUser of this Database may deliver its
    /// credentials Secret (besides the Database's own)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub user_secret_namespaces: Vec<String>,

    /// What happens to the data volumes when the Database is deleted:
    /// Retain (the default) keeps the PersistentVolumeClaims, Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Whether pod changes that come from a new operator version, not from
    /// this spec, restart the database on their own (Automatic) or wait
    /// (Manual, the default) until the annotation example.com/approve-update
    /// names the template hash that the UpdatePending condition reports. A
    /// change to the spec always rolls out, with any such pending change.
    #[serde(default)]
    pub update_policy: UpdatePolicy,

    /// Fill the new Database from a backup once its server is up
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,

    /// How the members fail over, and whether a Database created before the
    /// operator replicated re-seeds its independent members
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,

    /// Who may connect: a NetworkPolicy per Database
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<super::network::NetworkSpec>,
}

fn default_replicas() -> i32 {
    1
}

/// The database engines the operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL, image `postgres:<version>`.
    Postgresql,
    /// MySQL, image `mysql:<version>`.
    Mysql,
    /// MongoDB, image `mongo:<version>`.
    Mongodb,
}

/// The servers of the mysql engine.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// MySQL, image `mysql:<version>`.
    #[default]
    Mysql,
    /// MariaDB, image `mariadb:<version>`.
    Mariadb,
}

impl DatabaseSpec {
    /// The flavor of a mysql Database (`Mysql` when unset); `None` for the
    /// other engines.
    pub fn mysql_flavor(&self) -> Option<Flavor> {
        (self.engine == Engine::Mysql).then(|| self.flavor.unwrap_or_default())
    }
}

impl Engine {
    /// The name users write in `spec.engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgresql => "postgresql",
            Engine::Mysql => "mysql",
            Engine::Mongodb => "mongodb",
        }
    }
}

impl Engine {
    /// Every engine, in the API's order.
    pub const ALL: [Engine; 3] = [Engine::Postgresql, Engine::Mysql, Engine::Mongodb];

    /// The port the engine's server listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            Engine::Postgresql => 5432,
            Engine::Mysql => 3306,
            Engine::Mongodb => 27017,
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// The name users write in `spec.engine`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| format!("unknown engine {name:?}: use postgresql, mysql or mongodb"))
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Storage configuration
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.storageClass) == has(oldSelf.storageClass) && (!has(self.storageClass) || self.storageClass == oldSelf.storageClass)")
        .message("storageClass is immutable")
        .field_path(".storageClass"),
    validation = Rule::new("!isQuantity(self.size) || !isQuantity(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
        .message("size cannot shrink: a volume can only grow")
        .field_path(".size"),
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Storage size
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]i?$"), length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("must be a Kubernetes quantity such as 10Gi or 500M (use k, not K, for kilobytes)"),
        validation = Rule::new("!isQuantity(self) || quantity(self).compareTo(quantity('0')) > 0").message("must be more than zero"),
    )]
    pub size: String,

    /// Storage class name ("" asks for no class: a pre-provisioned volume)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$")
    )]
    pub storage_class: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: "1Gi".to_owned(),
            storage_class: None,
        }
    }
}

/// Backup configuration
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.schedule)")
        .message("schedule is required when backups are enabled")
        .field_path(".schedule"),
    validation = Rule::new("!has(self.verify) || (has(self.destination) && has(self.destination.s3))")
        .message("verify needs destination.s3: a drill restores the newest backup from the bucket")
        .field_path(".verify"),
    validation = Rule::new("!has(self.method) || self.method != 'velero' || !has(self.retention) || self.retention.matches('^0*[1-9][0-9]*[hdw]$')")
        .message("retention must be a period such as 12h, 7d or 4w with method velero: a Velero backup expires after a TTL, which cannot express a number of backups (and a TTL of zero means Velero's default)")
        .field_path(".retention"),
    validation = Rule::new("!has(self.verify) || !has(self.method) || self.method != 'velero'")
        .message("verify drills restore the agent's backups from destination.s3, and method velero takes none: remove verify, or use method agent")
        .field_path(".verify"),
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Whether scheduled backups run
    #[serde(default)]
    pub enabled: bool,

    /// Cron schedule for backups
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(
            pattern = r"^(@(annually|yearly|monthly|weekly|daily|hourly|reboot))|(@every (\d+(ns|us|µs|ms|s|m|h))+)|((((\d+,)+\d+|(\d+(\/|-)\d+)|\d+|\*) ?){5,7})$"
        ),
        length(max = 128)
    )]
    #[x_kube(
        validation = Rule::new("self != '@reboot'").message("@reboot is not supported by Kubernetes CronJobs"),
        validation = Rule::new("self.startsWith('@') || self.matches('^ *[^ ]+( +[^ ]+){4} *$')")
            .message("must have exactly five fields (minute hour day-of-month month day-of-week), as Kubernetes CronJobs require"),
    )]
    pub schedule: Option<String>,

    /// Backup retention period: a duration such as 12h, 7d or 4w, or a number of backups to keep
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[hdw]?$"), length(max = 16))]
    pub retention: Option<String>,

    /// Backup destination (for method agent)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,

    /// Restore drills: restore the newest backup into a throwaway server on
    /// a schedule and check every table's row count against the backup's manifest
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,

    /// Who takes the backups: agent (the default) runs the operator's backup
    /// agent from a CronJob; velero hands the schedule to Velero
    #[serde(default)]
    pub method: BackupMethod,

    /// Velero settings, for method velero
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero: Option<VeleroSpec>,
}

/// Who takes the scheduled backups.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// A CronJob `<name>-backup` runs the operator's agent, which streams a
    /// logical dump to `destination.s3`.
    #[default]
    Agent,
    /// A `velero.io/v1` Schedule in Velero's namespace backs up the
    /// database's objects and volumes; Velero must be installed.
    Velero,
}

/// Where and how Velero backs the database up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeleroSpec {
    /// The namespace Velero runs in and reads Schedules from
    #[serde(default = "default_velero_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// Name of the BackupStorageLocation; Velero's default location when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_location: Option<String>,

    /// Whether Velero snapshots the volumes; Velero's own default when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,

    /// Whether Velero copies the volumes' files (file-system backup) instead of snapshotting them
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
}

impl Default for VeleroSpec {
    fn default() -> Self {
        Self {
            namespace: default_velero_namespace(),
            storage_location: None,
            snapshot_volumes: None,
            default_volumes_to_fs_backup: None,
        }
    }
}

fn default_velero_namespace() -> String {
    "velero".to_owned()
}

/// Backup destination
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct BackupDestination {
    /// S3 or S3-compatible object storage
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
}

/// An S3 bucket, on AWS or any S3-compatible server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Bucket name
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,

    /// Region of the bucket
    #[serde(default = "default_region")]
    pub region: String,

    /// Endpoint URL of an S3-compatible server; AWS when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,

    /// Key prefix under which this database's backups are written
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!_.*'()/-]*$"), length(max = 512))]
    pub prefix: Option<String>,

    /// Secret holding the access key; the pod's own identity is used when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<S3CredentialsSecret>,

    /// Address buckets as endpoint/bucket instead of bucket.endpoint (most S3-compatible servers need this)
    #[serde(default)]
    pub force_path_style: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// A Secret in the Database's namespace with S3 credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecret {
    /// Name of the Secret
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::v1::reference::SECRET_NAME))]
    pub name: String,
    /// Key holding the access key id
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::v1::reference::SECRET_KEY))]
    pub access_key_id_key: String,
    /// Key holding the secret access key
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::v1::reference::SECRET_KEY))]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}

/// Monitoring configuration
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct MonitoringSpec {
    /// Whether the Prometheus exporter and ServiceMonitor are set up
    #[serde(default)]
    pub enabled: bool,
    /// Whether alerting rules are installed
    #[serde(default)]
    pub alerting: bool,
}

/// What deleting a Database does to its data volumes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Keep the PersistentVolumeClaims (and so the data) after the Database is gone.
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaims with the Database.
    Delete,
}

/// The schema of `spec.resources`: Kubernetes' ResourceRequirements, with
/// requests and limits bounded to a few entries (so that the rule over
/// their names has a cost the API server accepts) and no claims (the
/// database pods have no resource claims to refer to).
fn bounded_resources(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Option<ResourceRequirements>>();
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for map in ["requests", "limits"] {
            if let Some(entry) = properties.get_mut(map).and_then(|v| v.as_object_mut()) {
                entry.insert("maxProperties".into(), 8.into());
            }
        }
        if let Some(claims) = properties.get_mut("claims").and_then(|v| v.as_object_mut()) {
            claims.insert("maxItems".into(), 0.into());
        }
    }
    schema
}

/// Whether operator-made pod changes roll out unattended.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum UpdatePolicy {
    /// Pods change only when the spec does, or when the annotation
    /// example.com/approve-update names the pending template's hash.
    #[default]
    Manual,
    /// A new operator version's pod template rolls out as soon as it runs.
    Automatic,
}

/// The annotation on a Database that approves the pending pod template
/// whose hash it holds (see [`UpdatePolicy::Manual`]).
pub const APPROVE_UPDATE_ANNOTATION: &str = "example.com/approve-update";

/// What the operator observed of a Database: its phase, conditions
/// (Ready, Progressing, Degraded and more), endpoints, replica counts, and
/// the outcome of restores and restore drills.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Current phase of the database
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Conditions represent the latest available observations
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Database connection endpoints
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,

    /// Most recent generation observed by the controller
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Number of replicas the StatefulSet has created
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Number of replicas ready to serve
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Label selector of the database pods, for the scale subresource
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The engine version running on every replica
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// Progress of spec.restore
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,

    /// The latest restore drill (spec.backup.verify)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_verification: Option<Verification>,

    /// The primary and each member's replication, for a streaming Database
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
}

/// Phase of a Database, the seed's enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Phase {
    /// Accepted, nothing created yet.
    Pending,
    /// Children created, waiting for the first replicas to become ready.
    Creating,
    /// Every desired replica is ready.
    Running,
    /// The replica count is changing.
    Scaling,
    /// A new version or configuration is rolling out.
    Updating,
    /// The spec cannot be realised; a condition says why.
    Failed,
    /// The Database is being deleted.
    Deleting,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Database connection endpoints
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct Endpoints {
    /// Primary database endpoint, host:port
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,

    /// Read-only replica endpoints, host:port
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly: Vec<String>,
}

impl Database {
    /// The backup settings, when scheduled backups are on.
    pub fn enabled_backup(&self) -> Option<&BackupSpec> {
        self.spec.backup.as_ref().filter(|b| b.enabled)
    }

    /// The Velero settings, when scheduled backups are on and Velero takes them.
    pub fn velero_backup(&self) -> Option<(&BackupSpec, VeleroSpec)> {
        let backup = self.enabled_backup()?;
        (backup.method == BackupMethod::Velero)
            .then(|| (backup, backup.velero.clone().unwrap_or_default()))
    }

    /// The monitoring settings, when monitoring is on.
    pub fn enabled_monitoring(&self) -> Option<&MonitoringSpec> {
        self.spec.monitoring.as_ref().filter(|m| m.enabled)
    }
}
