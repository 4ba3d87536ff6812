//! Applies `spec.backup.retention` to a Database's DatabaseBackup records,
//! by the same rule ([`database_operator_api::v1::retention::Retention`]) the agent applies to the
//! stored objects after each scheduled backup.

use database_operator_api::v1::Database;
use database_operator_api::v1::backup::{BackupPhase, DatabaseBackup};
use database_operator_api::v1::retention::{INCOMPLETE_GRACE_SECS, Retention};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::controller::Context;
use crate::error::Result;

/// Deletes the records of `database` that retention no longer keeps.
pub(crate) async fn apply(ctx: &Context, namespace: &str, database: &str) -> Result<()> {
    let Some(db) = Api::<Database>::namespaced(ctx.client.clone(), namespace)
        .get_opt(database)
        .await?
    else {
        return Ok(());
    };
    let Some(rule) = db
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.retention.as_deref())
        .and_then(Retention::parse)
    else {
        return Ok(());
    };
    let backups = Api::<DatabaseBackup>::namespaced(ctx.client.clone(), namespace);
    let now = jiff::Timestamp::now().as_second();
    let mut complete = Vec::new();
    let mut expired = Vec::new();
    for backup in backups.list(&ListParams::default()).await?.items {
        if backup.spec.database_ref.name != database {
            continue;
        }
        let status = backup.status.as_ref();
        let Some(taken) = status
            .and_then(|s| s.completion_time.clone().or_else(|| s.start_time.clone()))
            .or_else(|| backup.metadata.creation_timestamp.clone())
        else {
            continue;
        };
        match status.and_then(|s| s.phase) {
            Some(BackupPhase::Completed) => complete.push((backup.name_any(), taken.0.as_second())),
            // A failed backup stored nothing; like an incomplete object, it
            // goes after the grace period and never counts.
            Some(BackupPhase::Failed) if now - taken.0.as_second() > INCOMPLETE_GRACE_SECS => {
                expired.push(backup.name_any());
            }
            _ => {}
        }
    }
    expired.extend(
        rule.expired(&complete, now)
            .into_iter()
            .map(|(name, _)| name),
    );
    for name in expired {
        info!(backup = %name, %database, retention = %rule, "deleting an expired backup record");
        crate::apply::delete(&backups, &name).await?;
    }
    Ok(())
}
