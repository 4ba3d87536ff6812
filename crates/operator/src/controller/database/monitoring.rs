//! The monitoring part of a Database's reconcile: the monitoring login's
//! Secret (generated once), the `<name>-metrics` Service, the DatabaseMonitor
//! the operator creates for the Database, and the `MonitoringReady`
//! condition mirrored from that monitor. The exporter sidecar itself is in
//! the StatefulSet builder.

use database_operator_api::v1;
use database_operator_api::v1::condition::{Condition, set_condition};
use database_operator_api::v1::database::DatabaseStatus;
use database_operator_api::v1::monitor::{DatabaseMonitor, conditions};
use database_operator_api::v1::{ConditionStatus, Database};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PostParams};
use kube::{Api, ResourceExt};

use super::admin_secret::create_once;
use crate::apply::patch_params;
use crate::builders::MonitoringChildren;
use crate::builders::meta::Names;
use crate::builders::monitoring::monitoring_secret;
use crate::builders::secret::generate_password;
use crate::controller::Context;
use crate::controller::shared::owned::converge;
use crate::controller::shared::stores::cached_or_fetch;
use crate::error::Result;
use crate::error::is_conflict;

/// The Database condition that mirrors its DatabaseMonitor's Ready condition.
pub(crate) const MONITORING_READY: &str = "MonitoringReady";

/// Makes the monitoring children match `desired`; returns the writes made.
/// Without monitoring, [`super::orphans`] removes them.
pub(crate) async fn apply(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    desired: MonitoringChildren,
) -> Result<u32> {
    let monitors = Api::<DatabaseMonitor>::namespaced(ctx.client.clone(), namespace);
    let mut writes = ensure_secret(db, ctx, namespace).await?;
    writes += converge(
        &ctx.client,
        &ctx.stores.services,
        namespace,
        desired.service,
        "applying Service",
    )
    .await?;
    writes += ensure_monitor(db, ctx, &monitors, desired.monitor).await?;
    Ok(writes)
}

/// Whether the operator created `monitor` for `db` (rather than the user).
pub(super) fn owned_by(monitor: &DatabaseMonitor, db: &Database) -> bool {
    monitor
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == db.metadata.uid.as_ref())
}

/// Creates `<name>-monitoring` once; an existing Secret is never rewritten
/// (the login inside the engine carries its password).
async fn ensure_secret(db: &Database, ctx: &Context, namespace: &str) -> Result<u32> {
    let name = Names(&db.name_any()).monitoring_secret();
    let created = create_once(&ctx.client, &ctx.stores.secrets, namespace, &name, || {
        monitoring_secret(db, generate_password())
    })
    .await?;
    Ok(u32::from(created))
}

/// Creates the DatabaseMonitor `<name>` when there is none. One that exists
/// is the user's to tune; only `alerting.enabled` of the one we created
/// follows `spec.monitoring.alerting`. A DatabaseMonitor the user made under
/// that name before the Database is left entirely alone.
async fn ensure_monitor(
    db: &Database,
    ctx: &Context,
    api: &Api<DatabaseMonitor>,
    desired: DatabaseMonitor,
) -> Result<u32> {
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let live = cached_or_fetch(&ctx.stores.monitors, api, &name, &namespace).await?;
    match live {
        None => match api.create(&PostParams::default(), &desired).await {
            Ok(_) => Ok(1),
            Err(e) if is_conflict(&e) => Ok(0),
            Err(e) => Err(e.into()),
        },
        Some(live)
            if owned_by(&live, db)
                && live.spec.alerting.enabled != desired.spec.alerting.enabled =>
        {
            let patch = serde_json::json!({
                "spec": {"alerting": {"enabled": desired.spec.alerting.enabled}}
            });
            let params = patch_params();
            api.patch(&name, &params, &Patch::Merge(&patch)).await?;
            Ok(1)
        }
        Some(_) => Ok(0),
    }
}

/// Sets (or, with monitoring off, removes) the `MonitoringReady` condition
/// from the DatabaseMonitor's Ready condition. Reads through the cache, and
/// the API server when the cache does not have it yet (after a restart), so a
/// lagging cache never rewrites the condition.
pub(crate) async fn mirror_condition(
    db: &Database,
    ctx: &Context,
    status: &mut DatabaseStatus,
    now: &Time,
) -> Result<()> {
    if db.enabled_monitoring().is_none() {
        status.conditions.retain(|c| c.type_ != MONITORING_READY);
        return Ok(());
    }
    let namespace = db.namespace().unwrap_or_default();
    let api = Api::<DatabaseMonitor>::namespaced(ctx.client.clone(), &namespace);
    let monitor = cached_or_fetch(
        &ctx.stores.monitors,
        &api,
        &Names(&db.name_any()).monitor(),
        &namespace,
    )
    .await?;
    let ready = monitor.as_ref().and_then(|m| {
        let status = m.status.as_ref()?;
        v1::condition::find(&status.conditions, conditions::READY).cloned()
    });
    let condition = match ready {
        Some(c) => Condition::new(
            MONITORING_READY,
            c.status == ConditionStatus::True,
            &c.reason,
            c.message,
            db.metadata.generation,
        ),
        None => Condition::new(
            MONITORING_READY,
            false,
            "MonitorPending",
            format!(
                "waiting for DatabaseMonitor {} to report",
                Names(&db.name_any()).monitor()
            ),
            db.metadata.generation,
        ),
    };
    set_condition(&mut status.conditions, condition, now);
    Ok(())
}
