//! The DatabaseMonitor controller: turns a DatabaseMonitor into a
//! ServiceMonitor, a PrometheusRule (when alerting is on) and a Grafana
//! dashboard ConfigMap, and keeps the monitoring login inside the engine.
//!
//! The prometheus-operator CRDs may be missing: then the monitor says so in
//! its `PrometheusOperatorInstalled` condition, the dashboard is still
//! applied, and the controller waits — without errors or retries — until a
//! watch on CustomResourceDefinitions sees them appear.

pub(crate) mod login;

use std::sync::Arc;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, find, set_condition};
use database_operator_api::v1::monitor::{DatabaseMonitor, DatabaseMonitorStatus, conditions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{GetParams, PartialObjectMeta, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::apply_if_changed;
use crate::apply::patch_params;
use crate::builders::meta::Names;
use crate::builders::monitoring::dashboard::dashboard_config_map;
use crate::builders::monitoring::rules::{RuleInput, prometheus_rule};
use crate::builders::monitoring::service_monitor::service_monitor;
use crate::builders::monitoring::types::{PrometheusRule, ServiceMonitor};
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::owned::converge;
use crate::controller::shared::reconcile::{
    drive, error_policy, instrumented, key, scoped_controller,
};
use crate::controller::shared::stores::{fetch, referencing};
use crate::error::{Error, Result};

/// The CRDs the ServiceMonitor and PrometheusRule need.
pub(crate) const PROMETHEUS_OPERATOR_CRDS: [&str; 2] = [
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
];

/// Runs the DatabaseMonitor controller until shutdown.
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = scoped_controller::<DatabaseMonitor>(&ctx);
    // Only what a monitor reads of its Database wakes it: the spec, the
    // phase (the login waits for Running), a deletion. A Database's other
    // status writes (counts, conditions) would each cost every monitor of
    // it a reconcile and its reads.
    let databases = ctx
        .settings
        .scope
        .touched::<Database>(&client, &watcher::Config::default().any_semantic())
        .predicate_filter(what_monitors_read, Default::default());
    ctx.health
        .track_store("databasemonitor", controller.store());
    let by_crd = controller.store();
    let by_database = by_crd.clone();
    let outcomes = controller
        // prometheus-operator's CRDs appearing (or going) wakes every monitor.
        .watches(
            Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            move |crd| {
                if PROMETHEUS_OPERATOR_CRDS.contains(&crd.name_any().as_str()) {
                    by_crd
                        .state()
                        .iter()
                        .map(|m| ObjectRef::from_obj(&**m))
                        .collect()
                } else {
                    Vec::new()
                }
            },
        )
        // A Database changing (becoming Running, switching engine settings) wakes its monitors.
        .watches_stream(databases, move |db| {
            referencing(&by_database, &db, |m| &m.spec.database_ref.name)
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx);
    drive(outcomes).await;
}

/// A hash of what a DatabaseMonitor reads of its Database.
fn what_monitors_read(db: &Database) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    db.metadata.uid.hash(&mut hasher);
    db.metadata.generation.hash(&mut hasher);
    db.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    db.status.as_ref().and_then(|s| s.phase).hash(&mut hasher);
    Some(hasher.finish())
}

pub(crate) async fn reconcile(monitor: Arc<DatabaseMonitor>, ctx: Arc<Context>) -> Result<Action> {
    instrumented("databasemonitor", &*monitor, &ctx, apply(&monitor, &ctx)).await
}

/// The backoff key of the monitoring login's retries (apart from the
/// monitor's own, which a successful reconcile resets).
fn login_key(monitor: &DatabaseMonitor) -> String {
    format!("login/{}", key(monitor))
}

/// One condition to set: type, holds, reason, message.
pub(crate) type Observation = (&'static str, bool, &'static str, String);

async fn apply(monitor: &DatabaseMonitor, ctx: &Context) -> Result<Action> {
    let namespace = monitor
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let db_name = &monitor.spec.database_ref.name;
    let db = fetch(
        &Api::<Database>::namespaced(ctx.client.clone(), &namespace),
        db_name,
    )
    .await?;
    let mut observations: Vec<Observation> = Vec::new();
    let mut action = Action::requeue(ctx.settings.resync);
    match db {
        None => observations.push((
            conditions::READY,
            false,
            "DatabaseNotFound",
            format!("Database {db_name} does not exist"),
        )),
        Some(db) if db.enabled_monitoring().is_none() => observations.push((
            conditions::READY,
            false,
            "ExporterNotEnabled",
            format!(
                "Database {db_name} has no exporter: set spec.monitoring.enabled on it (the exporter sidecar and the {} Service come with it)",
                Names(db_name).metrics()
            ),
        )),
        Some(db) => {
            let said = monitor
                .status
                .as_ref()
                .and_then(|s| find(&s.conditions, login::MONITORING_USER))
                .map(|c| c.reason.as_str());
            let (user, retry) = login::ensure(&db, ctx, &namespace, said).await?;
            observations.push(user);
            let installed = prometheus_operator_installed(ctx).await?;
            observations.push(if installed {
                (
                    conditions::PROMETHEUS_OPERATOR,
                    true,
                    "CRDsInstalled",
                    String::new(),
                )
            } else {
                (
                    conditions::PROMETHEUS_OPERATOR,
                    false,
                    "CRDsNotInstalled",
                    format!(
                        "the prometheus-operator CRDs ({}) are not installed: no ServiceMonitor or PrometheusRule until they are; the dashboard is in place",
                        PROMETHEUS_OPERATOR_CRDS.join(", ")
                    ),
                )
            });
            apply_children(monitor, &db, ctx, &namespace, installed).await?;
            observations.push(if installed {
                let rule = if monitor.spec.alerting.enabled {
                    ", PrometheusRule"
                } else {
                    ""
                };
                (
                    conditions::READY,
                    true,
                    "Monitored",
                    format!("ServiceMonitor{rule} and dashboard applied"),
                )
            } else {
                (
                    conditions::READY,
                    false,
                    "PrometheusOperatorMissing",
                    "the prometheus-operator CRDs are not installed; only the dashboard is applied".into(),
                )
            });
            if retry {
                action = Action::requeue(ctx.backoff.next_delay(&login_key(monitor)));
            } else {
                ctx.backoff.reset(&login_key(monitor));
            }
        }
    }
    write_status(monitor, ctx, &namespace, observations).await?;
    Ok(action)
}

/// Whether both prometheus-operator CRDs are served.
async fn prometheus_operator_installed(ctx: &Context) -> Result<bool> {
    let crds = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    for name in PROMETHEUS_OPERATOR_CRDS {
        let Some(crd) = crds.get_metadata_opt_with(name, &GetParams::any()).await? else {
            return Ok(false);
        };
        if crd.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies the dashboard always, and the ServiceMonitor and PrometheusRule
/// when their CRDs are installed.
async fn apply_children(
    monitor: &DatabaseMonitor,
    db: &Database,
    ctx: &Context,
    namespace: &str,
    installed: bool,
) -> Result<()> {
    let client = &ctx.client;
    let mut writes = 0u32;
    let dashboard = dashboard_config_map(monitor, db.spec.engine);
    writes += converge(
        client,
        &ctx.stores.config_maps,
        namespace,
        dashboard,
        "applying the dashboard ConfigMap",
    )
    .await?;
    if installed {
        let monitors = Api::<ServiceMonitor>::namespaced(client.clone(), namespace);
        let desired = service_monitor(monitor);
        let live = monitors.get_opt(&desired.name_any()).await?;
        writes += u32::from(apply_if_changed(&monitors, desired, live.as_ref()).await?);

        let rules = Api::<PrometheusRule>::namespaced(client.clone(), namespace);
        let name = monitor.name_any();
        let live = rules.get_opt(&name).await?;
        if monitor.spec.alerting.enabled {
            let input = RuleInput {
                namespace,
                database: &db.name_any(),
                engine: db.spec.engine,
                backups: db.enabled_backup().is_some(),
                alerting: &monitor.spec.alerting,
                runbook_base: &ctx.settings.runbook_base_url,
            };
            let desired = prometheus_rule(monitor, &input);
            writes += u32::from(apply_if_changed(&rules, desired, live.as_ref()).await?);
        } else if live.is_some() {
            writes += crate::apply::delete(&rules, &name).await?;
        }
    }
    if writes > 0 {
        info!(monitor = %key(monitor), writes, "applied monitoring objects");
    }
    Ok(())
}

async fn write_status(
    monitor: &DatabaseMonitor,
    ctx: &Context,
    namespace: &str,
    observations: Vec<Observation>,
) -> Result<()> {
    let previous = monitor.status.clone().unwrap_or_default();
    let mut status = DatabaseMonitorStatus {
        observed_generation: monitor.metadata.generation,
        ..previous.clone()
    };
    let now = now();
    let types: Vec<&str> = observations.iter().map(|o| o.0).collect();
    // Conditions that no longer apply (e.g. the login's, once the Database is gone) are dropped.
    status
        .conditions
        .retain(|c| types.contains(&c.type_.as_str()));
    for (type_, holds, reason, message) in observations {
        set_condition(
            &mut status.conditions,
            Condition::new(type_, holds, reason, message, monitor.metadata.generation),
            &now,
        );
    }
    if status == previous {
        return Ok(());
    }
    let api = Api::<DatabaseMonitor>::namespaced(ctx.client.clone(), namespace);
    let params = patch_params();
    api.patch_status(
        &monitor.name_any(),
        &params,
        &Patch::Merge(serde_json::json!({
            "status": crate::diff::merge_patch(Some(&previous), &status)?,
        })),
    )
    .await?;
    Ok(())
}
