//! `agent prune`: applies the retention to the backups under the prefix.
//!
//! Backups are found by listing `<prefix>/` and grouping objects by key
//! name; a group with `manifest.json` is complete (its time is the
//! manifest's completion time). Deleting removes the manifest FIRST, then
//! the other objects: if the agent dies half-way, what is left has no
//! manifest and never looks complete (and goes with a later prune).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::json;

use super::manifest::Manifest;
use super::retention::{Completion, Decision, Listed, Retention, parse, plan};
use super::store::{MANIFEST_FILE, Store, s3_error};
use super::{AgentError, PruneArgs, Result, progress};

struct Group {
    manifest: Option<Path>,
    objects: Vec<Path>,
    last_modified: jiff::Timestamp,
}

pub async fn run(args: PruneArgs) -> Result<serde_json::Value> {
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
) -> Result<serde_json::Value> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let root = store.root();
    let mut listing = store.store.list(root.as_ref());
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| s3_error(e, "listing backups"))?
    {
        let Some(key) = store.key_of(&meta.location) else {
            continue; // not <prefix>/<key>/<file>: not ours
        };
        let modified =
            jiff::Timestamp::from_millisecond(meta.last_modified.timestamp_millis()).unwrap_or(now);
        let g = groups.entry(key).or_insert(Group {
            manifest: None,
            objects: Vec::new(),
            last_modified: modified,
        });
        g.last_modified = g.last_modified.max(modified);
        if meta.location.filename() == Some(MANIFEST_FILE) {
            g.manifest = Some(meta.location.clone());
        } else {
            g.objects.push(meta.location.clone());
        }
    }

    let mut listed = Vec::new();
    let mut unreadable = Vec::new();
    for (key, g) in &groups {
        let complete = match &g.manifest {
            None => None,
            Some(path) => Some(match super::pipeline::get_small(store, path).await? {
                Some(bytes) => match Manifest::from_json(&bytes) {
                    Ok(m) => match m.completion() {
                        Some(t) => Completion::At(t),
                        None => Completion::Unreadable("no valid completionTime".into()),
                    },
                    Err(e) => Completion::Unreadable(e.to_string()),
                },
                // Deleted since the listing.
                None => continue,
            }),
        };
        if let Some(Completion::Unreadable(why)) = &complete {
            unreadable.push(json!({"keyName": key, "reason": why}));
        }
        listed.push(Listed {
            key: key.clone(),
            complete,
            last_modified: g.last_modified,
        });
    }

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
        deleted.push(json!({
            "keyName": key,
            "reason": reason,
            "objects": paths.iter().map(|p| store.location(p)).collect::<Vec<_>>(),
        }));
    }
    let deleted_keys: Vec<&str> = decisions.iter().map(|d| d.key.as_str()).collect();
    let kept: Vec<&str> = groups
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !deleted_keys.contains(k))
        .collect();
    Ok(json!({
        "dryRun": dry_run,
        "deleted": deleted,
        "kept": kept,
        "unreadableManifests": unreadable,
    }))
}
