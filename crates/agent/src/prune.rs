//! `agent prune`: applies the retention to the backups under the prefix.
//!
//! Backups are found by listing `<prefix>/` and grouping objects by key
//! name; a group with `manifest.json` is complete (its time is the
//! manifest's completion time). Deleting removes the manifest FIRST, then
//! the other objects: if the agent dies half-way, what is left has no
//! manifest and never looks complete (and goes with a later prune).

use database_operator_api::agent::{PruneReport, PrunedBackup};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::catalog::{self, Catalog};
use super::retention::{Decision, Retention, parse, plan};
use super::store::{Store, s3_error};
use super::{AgentError, PruneArgs, Result, progress};

pub async fn run(args: PruneArgs) -> Result<PruneReport> {
    let retention: Retention = parse(&args.retention)?;
    let now = match &args.now {
        Some(s) => s
            .parse::<jiff::Timestamp>()
            .map_err(|e| AgentError::Usage(format!("--now {s:?}: {e}")))?,
        None => jiff::Timestamp::now(),
    };
    let store = Store::from_args(&args.s3)?;
    prune(&store, retention, now, args.dry_run).await
}

/// Lists, plans and deletes; returns the report.
pub async fn prune(
    store: &Store,
    retention: Retention,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<PruneReport> {
    let Catalog {
        groups,
        listed,
        unreadable,
    } = catalog::list(store).await?;

    let decisions = plan(&listed, retention, now);
    let mut deleted = Vec::new();
    for Decision { key, reason } in &decisions {
        let g = &groups[key];
        let mut paths: Vec<&Path> = g.manifest.iter().collect();
        paths.extend(g.objects.iter());
        if !dry_run {
            for path in &paths {
                match store.store.delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(s3_error(e, &format!("deleting {path}"))),
                }
            }
            progress(format!("deleted backup {key:?} ({reason:?})"));
        }
        deleted.push(PrunedBackup {
            key_name: key.clone(),
            reason: *reason,
            objects: paths.iter().map(|p| store.location(p)).collect(),
        });
    }
    let deleted_keys: Vec<&str> = decisions.iter().map(|d| d.key.as_str()).collect();
    let kept = groups
        .keys()
        .filter(|k| !deleted_keys.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(PruneReport {
        dry_run,
        deleted,
        kept,
        unreadable_manifests: unreadable,
    })
}
