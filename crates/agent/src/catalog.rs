//! What backups a prefix holds: objects listed under `<prefix>/` and grouped
//! by key name. A group with a readable `manifest.json` is complete, at the
//! manifest's completion time. Prune plans over this; restore and verify
//! use it to find the newest complete backup.

use std::collections::BTreeMap;

use database_operator_api::agent::UnreadableManifest;
use futures::TryStreamExt;
use object_store::path::Path;

use super::manifest::Manifest;
use super::retention::{Completion, Listed};
use super::store::{MANIFEST_FILE, Store, s3_error};
use super::{AgentError, Result};

/// The objects of one backup.
pub struct Group {
    pub manifest: Option<Path>,
    pub objects: Vec<Path>,
    pub last_modified: jiff::Timestamp,
}

/// Every backup under a prefix.
pub struct Catalog {
    pub groups: BTreeMap<String, Group>,
    pub listed: Vec<Listed>,
    /// Backups whose manifest could not be read.
    pub unreadable: Vec<UnreadableManifest>,
}

/// Lists the prefix and reads every manifest.
pub async fn list(store: &Store) -> Result<Catalog> {
    let now = jiff::Timestamp::now();
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
            unreadable.push(UnreadableManifest {
                key_name: key.clone(),
                reason: why.clone(),
            });
        }
        listed.push(Listed {
            key: key.clone(),
            complete,
            last_modified: g.last_modified,
        });
    }
    Ok(Catalog {
        groups,
        listed,
        unreadable,
    })
}

impl Catalog {
    /// The key of the complete backup that finished last.
    pub fn newest_complete(&self) -> Option<&str> {
        newest_complete(&self.listed)
    }
}

/// The key of the complete backup that finished last (ties: the greater key).
pub fn newest_complete(listed: &[Listed]) -> Option<&str> {
    listed
        .iter()
        .filter_map(|l| match &l.complete {
            Some(Completion::At(t)) => Some((*t, l.key.as_str())),
            _ => None,
        })
        .max()
        .map(|(_, key)| key)
}

/// The newest complete backup under the store's prefix, or why there is none.
pub async fn latest_key(store: &Store) -> Result<String> {
    let catalog = list(store).await?;
    catalog.newest_complete().map(str::to_owned).ok_or_else(|| {
        AgentError::Integrity(format!(
            "no complete backup under {} ({} without a manifest)",
            store.location(&store.root().unwrap_or_default()),
            catalog.groups.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: &str, t: &str) -> Listed {
        Listed {
            key: key.into(),
            complete: Some(Completion::At(t.parse().unwrap())),
            last_modified: t.parse().unwrap(),
        }
    }

    #[test]
    fn the_newest_complete_backup_is_the_last_to_finish_not_the_last_listed() {
        let incomplete = Listed {
            key: "zzz-running".into(),
            complete: None,
            last_modified: "2026-11-26T12:00:00Z".parse().unwrap(),
        };
        let unreadable = Listed {
            key: "yyy-broken".into(),
            complete: Some(Completion::Unreadable("bad json".into())),
            last_modified: "2026-11-26T12:00:00Z".parse().unwrap(),
        };
        let listed = vec![
            at("b-2", "2026-11-26T10:00:00Z"),
            at("a-3", "2026-11-26T11:00:00Z"),
            at("c-1", "2026-11-26T09:00:00Z"),
            incomplete,
            unreadable,
        ];
        assert_eq!(newest_complete(&listed), Some("a-3"));
        assert_eq!(newest_complete(&listed[3..]), None);
    }
}
