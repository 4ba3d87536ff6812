//! Applies `spec.backup.retention` to a Database's DatabaseBackup records.
//! The agent prunes the stored objects by the same rule
//! ([`api::retention::Retention`]) after each scheduled backup.

use api::Database;
use api::backup::{BackupPhase, DatabaseBackup};
use api::retention::{Candidate, Retention};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::Context;
use crate::error::Result;

/// Deletes the records of `database` that retention no longer keeps.
pub async fn apply(ctx: &Context, namespace: &str, database: &str) -> Result<()> {
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
    let candidates: Vec<Candidate<String>> = backups
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.database_ref.name == database)
        .filter_map(|b| {
            let status = b.status.as_ref();
            let taken = status
                .and_then(|s| s.start_time.clone())
                .or_else(|| b.metadata.creation_timestamp.clone())?;
            Some(Candidate {
                key: b.name_any(),
                taken_at: taken.0.as_second(),
                complete: status.and_then(|s| s.phase) == Some(BackupPhase::Completed),
            })
        })
        .collect();
    for name in rule.expired(&candidates, jiff::Timestamp::now().as_second()) {
        info!(backup = %name, %database, retention = %rule, "deleting an expired backup record");
        match backups.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
