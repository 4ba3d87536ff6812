//! `agent restore` and `agent verify`.
//!
//! 1. Read the manifest (none: the backup is incomplete or absent → refuse).
//! 2. Stream the dump object once, hashing it: its size and SHA-256 must
//!    equal the manifest's (a truncated, corrupted or replaced object is
//!    refused before anything is applied).
//! 3. Refuse a target that already holds user data unless `--force`.
//! 4. Stream the object again, pinned to the ETag seen in 2, through zstd
//!    into the engine; the bytes are hashed again on the way.
//! 5. `verify` only: count rows per table/collection and compare them with
//!    the counts the manifest recorded at backup time.

use std::collections::BTreeMap;
use std::time::Instant;

use database_operator_api::agent::RestoreReport;
use tokio::io::AsyncReadExt;

use super::catalog;
use super::engines::{mongodb, mysql, postgresql};
use super::manifest::Manifest;
use super::pipeline::{self, hash_object, open_object};
use super::store::{Store, validate_key_name};
use super::{AgentError, DbArgs, RestoreArgs, Result, Secrets, progress};
use database_operator_api::v1::Engine;

pub async fn run(args: RestoreArgs, verify: bool) -> Result<RestoreReport> {
    let secrets = Secrets::from_env();
    let store = Store::from_args(&args.s3)?;
    let key = &match &args.key_name {
        Some(key) => key.clone(),
        None => {
            let key = catalog::latest_key(&store).await?;
            progress(format!("the newest complete backup is {key:?}"));
            key
        }
    };
    validate_key_name(key)?;
    super::set_subject(key);
    let engine = args.db.engine;

    let manifest_path = store.manifest_path(key);
    let manifest = match pipeline::get_small(&store, &manifest_path).await? {
        Some(bytes) => Manifest::from_json(&bytes)?,
        None => {
            return Err(AgentError::Integrity(format!(
                "no manifest at {}: backup {key:?} is incomplete or does not exist",
                store.location(&manifest_path)
            )));
        }
    };
    if manifest.engine != engine {
        return Err(AgentError::Usage(format!(
            "backup {key:?} is a {} backup, not {engine}",
            manifest.engine.as_str()
        )));
    }
    let dump_path = store.dump_path(key, engine);
    if manifest.object != dump_path.as_ref() {
        return Err(AgentError::Integrity(format!(
            "the manifest names {:?}, expected {:?}",
            manifest.object,
            dump_path.as_ref()
        )));
    }

    progress(format!("checking {}", store.location(&dump_path)));
    let (size, sha256, etag) = match hash_object(&store, &dump_path).await {
        Ok(v) => v,
        Err(AgentError::S3(m)) if m.contains(": not found") => {
            return Err(AgentError::Integrity(format!(
                "the dump object of backup {key:?} is missing ({m})"
            )));
        }
        Err(e) => return Err(e),
    };
    if size != manifest.size_bytes {
        let what = if size < manifest.size_bytes {
            "truncated"
        } else {
            "larger than recorded"
        };
        return Err(AgentError::Integrity(format!(
            "the stored object is {what}: {size} bytes, the manifest says {}; nothing was restored",
            manifest.size_bytes
        )));
    }
    if sha256 != manifest.sha256 {
        return Err(AgentError::Integrity(format!(
            "SHA-256 mismatch: the stored object hashes to {sha256}, the manifest says {}; nothing was restored",
            manifest.sha256
        )));
    }

    let found = user_data(&args.db, &secrets).await?;
    if !found.is_empty() {
        if !args.force {
            return Err(AgentError::NotEmpty(format!(
                "the target server already holds user data ({}); pass --force to restore over it",
                found.join(", ")
            )));
        }
        progress(format!(
            "--force: restoring over existing data ({})",
            found.join(", ")
        ));
        if engine == Engine::Postgresql {
            let n = postgresql::disconnect_others(&args.db, &secrets, &manifest.databases).await?;
            if n > 0 {
                progress(format!(
                    "--force: ended {n} other session(s) on the databases being replaced"
                ));
            }
        }
    }

    progress(format!("restoring backup {key:?} ({size} bytes)"));
    let started = Instant::now();
    let mut reader = open_object(&store, &dump_path, etag).await?;
    let restored = match engine {
        Engine::Postgresql => postgresql::restore(&args.db, &secrets, &mut reader).await,
        Engine::Mysql => mysql::restore(&args.db, &secrets, &mut reader).await,
        Engine::Mongodb => mongodb::restore(&args.db, &secrets, &mut reader).await,
    }
    .map_err(|e| e.context("restoring (the target may be partly restored)"))?;
    // Whatever the decoder left unread still counts for the second hash.
    let tap = reader.get_mut().get_mut();
    let mut rest = [0u8; 64 << 10];
    while tap
        .read(&mut rest)
        .await
        .map_err(|e| AgentError::Integrity(format!("reading the backup: {e}")))?
        > 0
    {}
    let (n, again) = pipeline::stored(&reader);
    if n != size || again != sha256 {
        return Err(AgentError::Integrity(format!(
            "the object changed during the restore ({n} bytes, SHA-256 {again})"
        )));
    }
    let seconds = started.elapsed().as_secs_f64();
    progress(format!(
        "restored backup {key:?} in {seconds:.1}s ({restored})"
    ));

    let mut out = RestoreReport {
        key_name: key.clone(),
        location: store.location(&dump_path),
        engine: engine.as_str().to_owned(),
        size_bytes: size,
        sha256,
        backup_completion_time: manifest.completion_time.clone(),
        restore_seconds: (seconds * 10.0).round() / 10.0,
        ..RestoreReport::default()
    };
    if verify {
        let actual = row_counts(&args.db, &secrets).await?;
        let report = compare_counts(&manifest.row_counts, &actual);
        out.tables = Some(manifest.row_counts.len() as u64);
        out.rows = Some(manifest.row_counts.values().sum::<u64>());
        if !report.is_empty() {
            return Err(AgentError::Integrity(format!(
                "row counts differ from the manifest: {}",
                report.join("; ")
            )));
        }
        out.verified = true;
        progress(format!(
            "verified: {} tables, row counts equal to the manifest",
            manifest.row_counts.len()
        ));
    }
    Ok(out)
}

async fn user_data(db: &DbArgs, secrets: &Secrets) -> Result<Vec<String>> {
    match db.engine {
        Engine::Postgresql => postgresql::user_data(db, secrets).await,
        Engine::Mysql => mysql::user_data(db, secrets).await,
        Engine::Mongodb => mongodb::user_data(db, secrets).await,
    }
}

async fn row_counts(db: &DbArgs, secrets: &Secrets) -> Result<BTreeMap<String, u64>> {
    match db.engine {
        Engine::Postgresql => postgresql::row_counts(db, secrets).await,
        Engine::Mysql => mysql::row_counts(db, secrets).await,
        Engine::Mongodb => mongodb::row_counts(db, secrets).await,
    }
}

/// Differences between recorded and restored counts (tables the manifest
/// does not know are not compared: a drill target may hold more).
pub fn compare_counts(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, want) in expected {
        match actual.get(table) {
            None => out.push(format!("{table}: missing (expected {want} rows)")),
            Some(got) if got != want => out.push(format!("{table}: {got} rows, expected {want}")),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compare_table_by_table() {
        let expected: BTreeMap<String, u64> = [
            ("a.t".to_owned(), 3),
            ("a.u".to_owned(), 0),
            ("b.v".to_owned(), 7),
        ]
        .into();
        let mut actual = expected.clone();
        actual.insert("c.extra".into(), 1);
        assert!(compare_counts(&expected, &actual).is_empty());
        actual.insert("a.t".into(), 2);
        actual.remove("b.v");
        assert_eq!(
            compare_counts(&expected, &actual),
            ["a.t: 2 rows, expected 3", "b.v: missing (expected 7 rows)"]
        );
    }
}
