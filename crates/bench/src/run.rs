//! One side of a run, each on a fresh local control plane with the same
//! nodes: the operator creating the children of N Databases, or a bare
//! client creating the same objects with the same parallelism.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::monitor::DatabaseMonitor;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use testkit::{Cluster, ClusterConfig};

use crate::measure;
use crate::workload;

/// What the run is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub databases: usize,
    /// Creations in flight at once, for both sides (the operator's
    /// `--max-concurrent-reconciles` is set to the same number).
    pub parallelism: usize,
    pub nodes: usize,
    /// How long the operator is watched idle after all Databases run.
    pub idle: Duration,
    /// Upper bound for all Databases to become ready.
    pub timeout: Duration,
    pub operator_binary: PathBuf,
    pub out_dir: PathBuf,
    /// Minutes of churn after the idle window ([`crate::soak`]); 0: none.
    pub soak_minutes: usize,
}

/// What one side measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Side {
    /// Seconds from the first creation until the last one is ready.
    pub all_ready_s: f64,
    /// Per Database ("namespace/name"), seconds from its creation until it
    /// was seen ready.
    pub latencies_s: BTreeMap<String, f64>,
    /// kube-apiserver's CPU seconds from the first creation until all ready.
    pub apiserver_cpu_s: f64,
    /// Requests of the creating side during creation, by "verb resource".
    pub requests: BTreeMap<String, f64>,
    /// The operator's own figures (none for the bare client).
    pub operator: Option<OperatorFigures>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OperatorFigures {
    pub cpu_s: f64,
    pub rss_idle_before_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_end_mib: f64,
    /// (seconds since the operator started, MiB) every half second.
    pub rss_samples: Vec<(f64, f64)>,
    pub idle_window_s: f64,
    /// How long after every Database ran every DatabaseMonitor had seen its
    /// Database Running: when the idle window starts.
    pub monitors_settled_s: f64,
    pub idle_writes: f64,
    /// The idle window's writes by "verb resource".
    pub idle_writes_by: BTreeMap<String, f64>,
    /// Failed reconciles during creation, by "controller kind".
    pub reconcile_errors: BTreeMap<String, f64>,
    /// What the operator's caches hold once every Database runs, by kind:
    /// the objects its watches select, trimmed as the operator trims them
    /// (most to metadata), as JSON and on the heap.
    pub cached: BTreeMap<String, CachedKind>,
    /// The soak after the idle window, when one was asked for.
    pub soak: Option<crate::soak::SoakFigures>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CachedKind {
    pub objects: usize,
    pub json_bytes: usize,
    /// What they take on the heap once deserialised ([`crate::heap`]).
    pub heap_bytes: usize,
}

impl Side {
    pub fn writes(&self) -> f64 {
        self.requests
            .iter()
            .filter(|(k, _)| !["get ", "list ", "watch "].iter().any(|r| k.starts_with(r)))
            .map(|(_, v)| v)
            .sum()
    }
    pub fn total_requests(&self) -> f64 {
        self.requests.values().sum()
    }
}

async fn cluster(plan: &Plan) -> Result<(Cluster, Client, u32)> {
    let cluster = Cluster::start_with(ClusterConfig {
        nodes: plan.nodes,
        timeout: Duration::from_secs(180),
        ..ClusterConfig::default()
    })
    .await?;
    let client = cluster.client().await?;
    testkit::harness::install_crds(&client).await?;
    let apiserver = cluster
        .pids()
        .into_iter()
        .find_map(|(name, pid)| (name == "kube-apiserver").then_some(pid))
        .context("kube-apiserver's pid")?;
    for ns in 0..workload::NAMESPACES {
        let name = workload::namespace(PREFIX, ns);
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        create(&client, &workload::s3_credentials(&name)).await?;
    }
    // Pods need the namespaces' default ServiceAccount.
    let deadline = Instant::now() + Duration::from_secs(60);
    for ns in 0..workload::NAMESPACES {
        let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
            client.clone(),
            &workload::namespace(PREFIX, ns),
        );
        while accounts.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                bail!("no default ServiceAccount");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((cluster, client, apiserver))
}

const PREFIX: &str = "bench";

/// Creates `object` in its namespace.
async fn create<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let ns = object.namespace().context("a namespaced object")?;
    Api::<K>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), object)
        .await
        .with_context(|| format!("creating {ns}/{}", object.name_any()))
}

/// Records when each object first satisfies `ready`, until `want` have.
fn watch_ready<K>(
    api: Api<K>,
    ready: impl Fn(&K) -> bool + Send + 'static,
) -> Arc<Mutex<HashMap<String, Instant>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Ok(Some(object)) = events.try_next().await {
            if ready(&object) {
                let key = format!(
                    "{}/{}",
                    object.namespace().unwrap_or_default(),
                    object.name_any()
                );
                record
                    .lock()
                    .expect("ready map lock")
                    .entry(key)
                    .or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// Creates the N Databases `parallelism` at a time, each with `extra`
/// (the baseline's children), and returns when each creation started.
async fn create_all<F, Fut>(plan: &Plan, each: F) -> Result<HashMap<String, Instant>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started: Vec<(String, Instant)> = futures::stream::iter(0..plan.databases)
        .map(|i| {
            let db = workload::database(PREFIX, i);
            let key = format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any());
            let creating = each(i);
            async move {
                let at = Instant::now();
                creating.await?;
                Ok::<_, anyhow::Error>((key, at))
            }
        })
        .buffer_unordered(plan.parallelism)
        .try_collect()
        .await?;
    Ok(started.into_iter().collect())
}

/// Waits until `ready` holds every key of `started`; the latencies and the
/// time from `t0` to the last.
async fn wait_all(
    plan: &Plan,
    t0: Instant,
    started: &HashMap<String, Instant>,
    ready: &Arc<Mutex<HashMap<String, Instant>>>,
    what: &str,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let deadline = t0 + plan.timeout;
    loop {
        {
            let ready = ready.lock().expect("ready map lock");
            let done = started.keys().filter(|k| ready.contains_key(*k)).count();
            if done == started.len() {
                let last = started
                    .keys()
                    .filter_map(|k| ready.get(k))
                    .max()
                    .copied()
                    .unwrap_or(t0);
                let latencies = started
                    .iter()
                    .map(|(k, at)| {
                        (
                            k.clone(),
                            ready[k].saturating_duration_since(*at).as_secs_f64(),
                        )
                    })
                    .collect();
                return Ok((last.duration_since(t0).as_secs_f64(), latencies));
            }
            if Instant::now() > deadline {
                bail!(
                    "{done} of {} {what} after {:?}",
                    started.len(),
                    plan.timeout
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cpu_s(pid: u32) -> f64 {
    measure::cpu_time(pid).map_or(0.0, |d| d.as_secs_f64())
}

/// The bare client: creates each Database and then, itself, the objects the
/// operator would create for it (from the operator's own builders), and
/// waits for every StatefulSet to be ready. No reconcile, no status.
pub async fn baseline(plan: &Plan) -> Result<Side> {
    let (cluster, client, apiserver) = cluster(plan).await?;
    let ready = watch_ready(Api::<StatefulSet>::all(client.clone()), |sts| {
        let want = sts.spec.replicas.unwrap_or(1);
        sts.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= want
    });
    let requests = Arc::new(Mutex::new(BTreeMap::<String, f64>::new()));
    let cpu0 = cpu_s(apiserver);
    let t0 = Instant::now();
    let started = create_all(plan, |i| {
        let client = client.clone();
        let requests = requests.clone();
        async move {
            let db = create(&client, &workload::database(PREFIX, i)).await?;
            let count = |resource: &str| {
                *requests
                    .lock()
                    .expect("request counts lock")
                    .entry(format!("create {resource}"))
                    .or_default() += 1.0;
            };
            count("databases");
            for (resource, object) in crate::children::of(&db)? {
                create_dynamic(&client, &object).await?;
                count(&resource);
            }
            Ok(())
        }
    })
    .await?;
    let (all_ready_s, latencies_s) =
        wait_all(plan, t0, &started, &ready, "StatefulSets ready").await?;
    let apiserver_cpu_s = cpu_s(apiserver) - cpu0;
    let requests = requests.lock().expect("request counts lock").clone();
    drop(cluster);
    Ok(Side {
        all_ready_s,
        latencies_s,
        apiserver_cpu_s,
        requests,
        operator: None,
    })
}

async fn create_dynamic(client: &Client, object: &crate::children::Child) -> Result<()> {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &object.namespace, &object.resource);
    let body: kube::api::DynamicObject = serde_json::from_value(object.body.clone())?;
    api.create(&PostParams::default(), &body)
        .await
        .with_context(|| format!("creating {} {}", object.resource.kind, body.name_any()))?;
    Ok(())
}

/// The operator (the release binary) from a standing start: N Databases
/// created by a client, the operator creating their children, until every
/// Database is Running; then an idle window.
pub async fn operator(plan: &Plan) -> Result<Side> {
    let (cluster, client, apiserver) = cluster(plan).await?;
    let port = testkit::processes::free_port()?;
    let address = format!("127.0.0.1:{port}");
    let log = plan
        .out_dir
        .join(format!("operator-{}.log", plan.databases));
    let args: Vec<String> = [
        "run",
        "--metrics-address",
        &address,
        "--max-concurrent-reconciles",
        &plan.parallelism.to_string(),
        // KWOK runs no database servers: every engine connection goes to a
        // closed port on loopback and fails at once, and no Service name
        // is asked of a DNS server (which, not answering, held reconciles
        // for its timeout: the first N = 1,000 runs stalled on it).
        "--resolve-default",
        testkit::UNREACHABLE,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let mut command = testkit::processes::command(&plan.operator_binary, &args, &log)?;
    command
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "warn");
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", plan.operator_binary.display()))?;
    let pid = child.id().context("the operator's pid")?;
    let born = Instant::now();
    let ready_deadline = born + Duration::from_secs(60);
    while !matches!(
        testkit::harness::http_get(&address, "/readyz").await,
        Ok((200, _))
    ) {
        if Instant::now() > ready_deadline {
            bail!("the operator never became ready: see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = measure::status_kib(pid, "VmRSS") {
                    samples
                        .lock()
                        .expect("samples lock")
                        .push((born.elapsed().as_secs_f64(), kib as f64 / 1024.0));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let rss_idle_before_mib = mib(measure::status_kib(pid, "VmRSS"));
    let ready = watch_ready(Api::<Database>::all(client.clone()), |db| {
        db.status.as_ref().and_then(|s| s.phase) == Some(Phase::Running)
    });
    let before = Metrics::scrape(&address).await?;
    let (cpu0, op0) = (cpu_s(apiserver), cpu_s(pid));
    let t0 = Instant::now();
    let started = create_all(plan, |i| {
        let client = client.clone();
        async move {
            create(&client, &workload::database(PREFIX, i)).await?;
            Ok(())
        }
    })
    .await?;
    let (all_ready_s, latencies_s) =
        wait_all(plan, t0, &started, &ready, "Databases Running").await?;
    let apiserver_cpu_s = cpu_s(apiserver) - cpu0;
    let cpu_s_op = cpu_s(pid) - op0;
    let after = Metrics::scrape(&address).await?;
    let requests = after.since(
        &before,
        "database_operator_api_requests_total",
        &["verb", "resource"],
    );
    let reconcile_errors = after.since(
        &before,
        "database_operator_reconcile_errors_total",
        &["controller", "kind"],
    );
    let cached = cache_sizes(&client).await?;

    // Idle means nothing left to converge: the monitors of the last
    // Databases to run look at them once more (their login's condition
    // leaves DatabaseNotReady) right after they are Running.
    let settled_s = monitors_settled(&client, Duration::from_secs(120)).await?;
    let idle_start = Metrics::scrape(&address).await?;
    tokio::time::sleep(plan.idle).await;
    let idle_end = Metrics::scrape(&address).await?;
    let idle_writes = idle_end.sum("database_operator_api_writes_total")
        - idle_start.sum("database_operator_api_writes_total");
    let idle_writes_by = idle_end.since(
        &idle_start,
        "database_operator_api_writes_total",
        &["verb", "resource"],
    );
    // A failed soak loses only itself: the run's figures are reported.
    let soak = match plan.soak_minutes {
        0 => None,
        minutes => match crate::soak::run(&client, PREFIX, plan.databases, minutes, pid).await {
            Ok(figures) => Some(figures),
            Err(error) => {
                eprintln!("bench: the soak failed: {error:#}");
                None
            }
        },
    };
    sampler.abort();
    let figures = OperatorFigures {
        cpu_s: cpu_s_op,
        rss_idle_before_mib,
        rss_peak_mib: mib(measure::status_kib(pid, "VmHWM")),
        rss_end_mib: mib(measure::status_kib(pid, "VmRSS")),
        rss_samples: samples.lock().expect("samples lock").clone(),
        idle_window_s: plan.idle.as_secs_f64(),
        monitors_settled_s: settled_s,
        idle_writes,
        idle_writes_by,
        reconcile_errors,
        cached,
        soak,
    };
    child.kill().await.ok();
    let leftover = Api::<Database>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    if plan.soak_minutes == 0 && leftover != plan.databases {
        bail!(
            "{leftover} Databases at the end, {} created",
            plan.databases
        );
    }
    drop(cluster);
    Ok(Side {
        all_ready_s,
        latencies_s,
        apiserver_cpu_s,
        requests,
        operator: Some(figures),
    })
}

/// Waits until every DatabaseMonitor's login condition has left
/// `DatabaseNotReady` (it has seen its Database Running), at most `limit`;
/// returns the seconds waited.
async fn monitors_settled(client: &Client, limit: Duration) -> Result<f64> {
    let start = Instant::now();
    let monitors = Api::<DatabaseMonitor>::all(client.clone());
    loop {
        let waiting = monitors
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|m| {
                let login = m.status.as_ref().and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == "MonitoringUserReady")
                });
                login.is_none_or(|c| c.reason == "DatabaseNotReady")
            })
            .count();
        if waiting == 0 {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            bail!("{waiting} DatabaseMonitors never saw their Database Running");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the operator's caches hold once every Database runs, by kind:
/// each object in the form the operator caches it (its own trim
/// functions), as JSON and as heap bytes once deserialised.
async fn cache_sizes(client: &Client) -> Result<BTreeMap<String, CachedKind>> {
    use k8s_openapi::api::apps::v1::StatefulSet as Sts;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PartialObjectMeta;
    use operator::controller::shared::owned::trim_metadata;
    use operator::controller::shared::stores::trim_statefulset;

    fn sized<T: Serialize + DeserializeOwned>(
        plural: &str,
        objects: &[T],
    ) -> Result<(String, CachedKind)> {
        let jsons = objects
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            plural.to_owned(),
            CachedKind {
                objects: jsons.len(),
                json_bytes: jsons.iter().map(String::len).sum(),
                heap_bytes: crate::heap::held::<T>(&jsons)?,
            },
        ))
    }

    /// A whole cache: `trim` as the operator's.
    async fn whole<K>(
        client: &Client,
        selector: Option<&str>,
        trim: fn(&mut K),
    ) -> Result<(String, CachedKind)>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let params = selector.map_or_else(ListParams::default, |s| ListParams::default().labels(s));
        let mut items = Api::<K>::all(client.clone()).list(&params).await?.items;
        for item in &mut items {
            item.meta_mut().managed_fields = None;
            trim(item);
        }
        sized(&K::plural(&()), &items)
    }

    /// A metadata cache, trimmed by `trim`.
    async fn metadata<K>(
        client: &Client,
        selector: &str,
        trim: fn(&mut ObjectMeta),
    ) -> Result<(String, CachedKind)>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let params = ListParams::default().labels(selector);
        let mut items = Api::<K>::all(client.clone())
            .list_metadata(&params)
            .await?
            .items;
        for item in &mut items {
            item.metadata.managed_fields = None;
            trim(&mut item.metadata);
        }
        sized::<PartialObjectMeta<K>>(&K::plural(&()), &items)
    }

    let managed = operator::controller::shared::stores::managed_selector();
    let m = managed.as_str();
    Ok(BTreeMap::from([
        whole::<Database>(client, None, |_| {}).await?,
        whole::<DatabaseMonitor>(client, Some(m), |_| {}).await?,
        whole::<Sts>(client, Some(m), trim_statefulset).await?,
        metadata::<ConfigMap>(client, m, trim_metadata).await?,
        metadata::<Service>(client, m, trim_metadata).await?,
        metadata::<PodDisruptionBudget>(client, m, trim_metadata).await?,
        metadata::<CronJob>(client, m, trim_metadata).await?,
        metadata::<Secret>(client, m, |_| {}).await?,
        metadata::<ServiceAccount>(client, m, trim_metadata).await?,
        metadata::<Role>(client, m, trim_metadata).await?,
        metadata::<RoleBinding>(client, m, trim_metadata).await?,
        metadata::<NetworkPolicy>(client, m, trim_metadata).await?,
    ]))
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(0.0, |k| k as f64 / 1024.0)
}

/// One scrape of the operator's /metrics.
struct Metrics(String);

impl Metrics {
    async fn scrape(address: &str) -> Result<Metrics> {
        let (code, body) = testkit::harness::http_get(address, "/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(Metrics(body))
    }

    /// Every series of `name` as (labels, value).
    fn series(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.0
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let (labels, value) = match rest.strip_prefix('{') {
                    Some(rest) => rest.split_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                let labels = labels
                    .split(',')
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        Some((k.to_owned(), v.trim_matches('"').to_owned()))
                    })
                    .collect();
                Some((labels, value.trim().parse().ok()?))
            })
            .collect()
    }

    fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|(_, v)| v).sum()
    }

    /// The increase of each series of `name` since `before`, keyed by the
    /// values of `keys` joined by a space; zero increases left out.
    fn since(&self, before: &Metrics, name: &str, keys: &[&str]) -> BTreeMap<String, f64> {
        let key = |labels: &BTreeMap<String, String>| {
            keys.iter()
                .map(|k| labels.get(*k).map_or("", String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out = BTreeMap::new();
        for (labels, value) in self.series(name) {
            *out.entry(key(&labels)).or_insert(0.0) += value;
        }
        for (labels, value) in before.series(name) {
            *out.entry(key(&labels)).or_insert(0.0) -= value;
        }
        out.retain(|_, v| *v != 0.0);
        out
    }
}

/// Where the operator's static release binary is (`make image` builds it).
pub fn default_operator_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("x86_64-unknown-linux-gnu/release/database-operator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_series_are_read_by_label_and_differenced() {
        let before = Metrics(
            "database_operator_api_requests_total{verb=\"create\",resource=\"secrets\"} 2\n\
             database_operator_api_requests_total{verb=\"get\",resource=\"secrets\"} 5\n"
                .into(),
        );
        let after = Metrics(
            "# HELP x\n\
             database_operator_api_requests_total{verb=\"create\",resource=\"secrets\"} 12\n\
             database_operator_api_requests_total{verb=\"get\",resource=\"secrets\"} 5\n\
             database_operator_api_requests_total{verb=\"patch\",resource=\"databases/status\"} 3\n\
             database_operator_api_requests_total_created 1\n"
                .into(),
        );
        let since = after.since(
            &before,
            "database_operator_api_requests_total",
            &["verb", "resource"],
        );
        assert_eq!(
            since,
            BTreeMap::from([
                ("create secrets".to_owned(), 10.0),
                ("patch databases/status".to_owned(), 3.0),
            ])
        );
        assert_eq!(after.sum("database_operator_api_requests_total"), 20.0);
        let side = Side {
            requests: since,
            ..Side::default()
        };
        assert_eq!(side.writes(), 13.0);
    }
}
