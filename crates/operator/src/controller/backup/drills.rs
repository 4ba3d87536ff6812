//! Records restore drills. When a drill Job (from `<name>-verify`) ends,
//! its result goes on the Database (`status.backupVerification`, from which
//! the Database controller derives the `BackupVerified` condition) and on
//! the DatabaseBackup the drill restored (`status.verification`).

use std::sync::Arc;

use database_operator_api::agent::{self, FailureReport, RestoreReport};
use database_operator_api::v1::Database;
use database_operator_api::v1::backup::DatabaseBackup;
use database_operator_api::v1::restore::{Verification, VerificationResult};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Patch;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::apply::patch_params;
use crate::builders::drill::VERIFY_LABEL;
use crate::controller::Context;
use crate::controller::shared::events::publish;
use crate::controller::shared::jobs::{Outcome, agent_error, agent_output, outcome};
use crate::error::{Error, Result};

/// Watches drill Jobs and records each one that ends.
pub async fn record_drills(ctx: Arc<Context>) {
    crate::controller::shared::jobs::for_each_job(
        ctx,
        VERIFY_LABEL,
        "record a restore drill",
        |ctx, job| async move { record(&ctx, &job).await },
    )
    .await;
}

async fn record(ctx: &Context, job: &Job) -> Result<()> {
    let finished = outcome(job);
    let at = match &finished {
        Outcome::Running => return Ok(()),
        Outcome::Succeeded { at } | Outcome::Failed { at, .. } => at.clone(),
    };
    let namespace = job
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let Some(db_name) = job.labels().get(VERIFY_LABEL).cloned() else {
        return Ok(());
    };
    let databases = Api::<Database>::namespaced(ctx.client.clone(), &namespace);
    let Some(db) = databases.get_opt(&db_name).await? else {
        return Ok(());
    };
    let recorded = db
        .status
        .as_ref()
        .and_then(|s| s.backup_verification.as_ref());
    if !is_newer(recorded, &job.name_any(), at.as_ref()) {
        return Ok(());
    }
    let container = crate::builders::backup_job::AgentTask::Verify.container_name();
    let output = agent_output(&ctx.client, &namespace, &job.name_any(), container).await?;
    let verification = verification(&job.name_any(), &finished, output.as_deref(), at);

    let params = patch_params();
    databases
        .patch_status(
            &db_name,
            &params,
            &Patch::Merge(serde_json::json!({ "status": { "backupVerification": verification } })),
        )
        .await?;
    if let Some(backup) = &verification.backup_name {
        let backups = Api::<DatabaseBackup>::namespaced(ctx.client.clone(), &namespace);
        if let Some(record) = backups.get_opt(backup).await?
            && record.spec.database_ref.name == db_name
        {
            backups
                .patch_status(
                    backup,
                    &params,
                    &Patch::Merge(
                        serde_json::json!({ "status": { "verification": verification } }),
                    ),
                )
                .await?;
        }
    }
    let passed = verification.result == VerificationResult::Passed;
    info!(database = %db_name, namespace, job = %job.name_any(), passed, "recorded a restore drill");
    publish(
        ctx,
        &db,
        if passed {
            EventType::Normal
        } else {
            EventType::Warning
        },
        if passed { "DrillPassed" } else { "DrillFailed" },
        verification.message.clone(),
    )
    .await;
    Ok(())
}

/// Whether the drill `job`, finished `at`, is newer than what is recorded
/// (the watch replays old Jobs on every start).
fn is_newer(recorded: Option<&Verification>, job: &str, at: Option<&Time>) -> bool {
    let Some(recorded) = recorded else {
        return true;
    };
    if recorded.job == job {
        return false;
    }
    match (recorded.time.as_ref(), at) {
        (Some(before), Some(now)) => now.0 > before.0,
        _ => true,
    }
}

/// The verification a finished drill Job amounts to. Pure.
pub fn verification(
    job: &str,
    finished: &Outcome,
    output: Option<&str>,
    at: Option<Time>,
) -> Verification {
    let report = output.and_then(agent::parse::<RestoreReport>);
    // A failed drill still names the backup it tried.
    let key = report.as_ref().map(|r| r.key_name.clone()).or_else(|| {
        output
            .and_then(agent::parse::<FailureReport>)
            .and_then(|f| f.key_name)
    });
    let (result, message) = match finished {
        Outcome::Succeeded { .. } => {
            match report {
                Some(r) if r.verified => (
                    VerificationResult::Passed,
                    format!(
                        "backup {} restored into a throwaway server in {}s; {} tables, {} rows, every row count equal to the manifest",
                        r.key_name,
                        r.restore_seconds,
                        r.tables.unwrap_or(0),
                        r.rows.unwrap_or(0)
                    ),
                ),
                Some(r) => (
                    VerificationResult::Failed,
                    format!(
                        "backup {} restored, but the agent did not verify it",
                        r.key_name
                    ),
                ),
                // Succeeding without a report proves nothing.
                None => (
                    VerificationResult::Failed,
                    format!("drill Job {job} succeeded but the agent reported no result"),
                ),
            }
        }
        Outcome::Failed { message, .. } => (
            VerificationResult::Failed,
            output
                .and_then(agent_error)
                .or_else(|| {
                    output
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                })
                .unwrap_or_else(|| format!("drill Job {job} failed: {message}")),
        ),
        Outcome::Running => (VerificationResult::Failed, "still running".into()),
    };
    Verification {
        result,
        time: at,
        backup_name: key,
        job: job.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<Time> {
        Some(Time(s.parse().unwrap()))
    }

    #[test]
    fn a_verified_report_passes_and_names_its_backup() {
        let output = r#"{"keyName":"orders-29000001","location":"s3://b/p/orders-29000001/dump.sql.zst","engine":"postgresql","sizeBytes":10,"sha256":"ab","restoreSeconds":1.5,"tables":3,"rows":42,"verified":true}"#;
        let v = verification(
            "orders-verify-1",
            &Outcome::Succeeded { at: None },
            Some(output),
            at("2026-11-26T10:00:00Z"),
        );
        assert_eq!(v.result, VerificationResult::Passed);
        assert_eq!(v.backup_name.as_deref(), Some("orders-29000001"));
        assert!(v.message.contains("3 tables, 42 rows"), "{}", v.message);
    }

    #[test]
    fn a_failed_drill_carries_the_agents_error_and_the_backup_it_tried() {
        let output = r#"{"error":"error: integrity: row counts differ from the manifest: shop.orders: 2 rows, expected 3","keyName":"orders-29000001"}"#;
        let v = verification(
            "orders-verify-2",
            &Outcome::Failed {
                at: None,
                message: "BackoffLimitExceeded".into(),
            },
            Some(output),
            None,
        );
        assert_eq!(v.result, VerificationResult::Failed);
        assert_eq!(v.backup_name.as_deref(), Some("orders-29000001"));
        assert!(v.message.contains("row counts differ"), "{}", v.message);
    }

    #[test]
    fn a_drill_without_a_report_is_not_a_pass() {
        let v = verification("j", &Outcome::Succeeded { at: None }, None, None);
        assert_eq!(v.result, VerificationResult::Failed);
        assert!(v.message.contains("reported no result"));
        let v = verification(
            "j",
            &Outcome::Failed {
                at: None,
                message: "BackoffLimitExceeded".into(),
            },
            None,
            None,
        );
        assert!(v.message.contains("BackoffLimitExceeded"), "{}", v.message);
    }

    #[test]
    fn only_a_newer_drill_replaces_the_recorded_one() {
        let recorded = Verification {
            job: "a".into(),
            time: at("2026-11-26T10:00:00Z"),
            ..Default::default()
        };
        assert!(!is_newer(
            Some(&recorded),
            "a",
            at("2026-11-26T11:00:00Z").as_ref()
        ));
        assert!(!is_newer(
            Some(&recorded),
            "b",
            at("2026-11-26T09:00:00Z").as_ref()
        ));
        assert!(is_newer(
            Some(&recorded),
            "b",
            at("2026-11-26T11:00:00Z").as_ref()
        ));
        assert!(is_newer(None, "b", None));
    }
}
