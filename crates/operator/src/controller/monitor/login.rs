//! The monitoring login of a DatabaseMonitor's Database: created and kept
//! inside the engine through the users machinery, with the password from
//! the `<name>-monitoring` Secret, once the Database is Running.

use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use super::Observation;
use crate::builders::meta::Names;
use crate::builders::monitoring::MONITORING_USERNAME;
use crate::controller::Context;
use crate::controller::shared::stores::fetch;
use crate::engine::PASSWORD_KEY;
use crate::error::Result;
use crate::users::{Password, UserError, login_admin, monitoring_privileges};

/// The monitoring login's condition on a DatabaseMonitor.
pub(crate) const MONITORING_USER: &str = "MonitoringUserReady";

/// The monitoring login inside the engine. Returns its condition and
/// whether to retry soon (the database was not reachable). A failure is
/// logged as a warning when its reason is new (`said` is the reason the
/// condition holds now), and at debug level on every retry after.
pub(crate) async fn ensure(
    db: &Database,
    ctx: &Context,
    namespace: &str,
    said: Option<&str>,
) -> Result<(Observation, bool)> {
    if db.status.as_ref().and_then(|s| s.phase) != Some(Phase::Running) {
        return Ok((
            (
                MONITORING_USER,
                false,
                "DatabaseNotReady",
                format!("waiting for Database {} to be Running", db.name_any()),
            ),
            false,
        ));
    }
    let names = Names(&db.name_any());
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let password = fetch(&secrets, &names.monitoring_secret())
        .await?
        .as_ref()
        .and_then(|s| crate::controller::user::secret_value(s, PASSWORD_KEY));
    let Some(password) = password else {
        return Ok((
            (
                MONITORING_USER,
                false,
                "SecretNotReady",
                format!("Secret {} has no password yet", names.monitoring_secret()),
            ),
            true,
        ));
    };
    let Some(target) = crate::controller::user::admin_target(db, ctx, namespace).await? else {
        return Ok((
            (
                MONITORING_USER,
                false,
                "AdminSecretNotReady",
                format!("Secret {} has no admin credentials yet", names.secret()),
            ),
            true,
        ));
    };
    let password = Password::new(password);
    let engine = login_admin(db.spec.engine);
    match engine
        .ensure_monitoring_user(&target, MONITORING_USERNAME, &password)
        .await
    {
        Ok(()) => Ok((
            (
                MONITORING_USER,
                true,
                "LoginReady",
                format!(
                    "login {MONITORING_USERNAME}: {}",
                    monitoring_privileges(db.spec.engine)
                ),
            ),
            false,
        )),
        Err(error) => {
            // The error text can vary between attempts (timeouts, resets):
            // it goes to the log, the condition keeps a stable message so a
            // retry that fails the same way writes nothing.
            let (reason, message) = match &error {
                UserError::Unreachable(_) => (
                    "DatabaseUnreachable",
                    format!(
                        "cannot reach {}:{} as the admin to set up login {MONITORING_USERNAME}; retrying",
                        target.host, target.port
                    ),
                ),
                other => ("LoginRefused", other.to_string()),
            };
            if said == Some(reason) {
                debug!(database = %db.name_any(), namespace, %error, "cannot set up the monitoring login, still");
            } else {
                warn!(database = %db.name_any(), namespace, %error, "cannot set up the monitoring login");
            }
            Ok(((MONITORING_USER, false, reason, message), true))
        }
    }
}
