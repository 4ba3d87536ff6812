//! `database-operator agent prune` against a real S3 server, with backups
//! whose manifests carry chosen completion times (key names deliberately
//! out of time order: only the manifests decide).

use ::agent::manifest::{COMPRESSION, FORMAT_VERSION, Manifest};
use database_operator_api::v1::Engine;
use testkit::agent_cli::{Bucket, agent, strings, with};

const PREFIX: &str = "prune/db";

fn manifest(key: &str, completed: jiff::Timestamp) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        engine: Engine::Postgresql,
        server_version: "15".into(),
        dump_tool: "test".into(),
        databases: vec![],
        object: format!("{PREFIX}/{key}/dump.sql.zst"),
        size_bytes: 4,
        sha256: "0".repeat(64),
        uncompressed_bytes: 4,
        compression: COMPRESSION.into(),
        start_time: completed.to_string(),
        completion_time: completed.to_string(),
        operator_version: "test".into(),
        row_counts: Default::default(),
        row_count_method: String::new(),
    }
}

async fn complete(bucket: &Bucket, key: &str, completed: jiff::Timestamp) {
    bucket
        .put(&format!("{PREFIX}/{key}/dump.sql.zst"), b"dump".to_vec())
        .await;
    bucket
        .put(
            &format!("{PREFIX}/{key}/manifest.json"),
            manifest(key, completed).to_json().into_bytes(),
        )
        .await;
}

async fn incomplete(bucket: &Bucket, key: &str) {
    bucket
        .put(&format!("{PREFIX}/{key}/dump.sql.zst"), b"partial".to_vec())
        .await;
}

fn prune(bucket: &Bucket, retention: &str, now: Option<jiff::Timestamp>) -> Vec<String> {
    let mut a = with(strings(&["prune"]), &[]);
    a.extend(bucket.args(PREFIX));
    a = with(a, &["--retention", retention]);
    if let Some(now) = now {
        a = with(a, &["--now", &now.to_string()]);
    }
    a
}

async fn backups(bucket: &Bucket) -> Vec<String> {
    let mut keys: Vec<String> = bucket
        .keys(PREFIX)
        .await
        .into_iter()
        .map(|k| k.trim_start_matches(&format!("{PREFIX}/")).to_owned())
        .collect();
    keys.sort();
    keys
}

/// The keys of the `complete` backups (dump and manifest) and `others`,
/// sorted as [`backups`] lists them.
fn keys(complete: &[&str], others: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = complete
        .iter()
        .flat_map(|name| {
            [
                format!("{name}/dump.sql.zst"),
                format!("{name}/manifest.json"),
            ]
        })
        .chain(others.iter().map(ToString::to_string))
        .collect();
    keys.sort();
    keys
}

fn deleted(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut d: Vec<(String, String)> = v["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["keyName"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    d.sort();
    d
}

#[tokio::test]
async fn prune_by_age_count_and_incompleteness() {
    let bucket = Bucket::start().await;
    let now = jiff::Timestamp::now();
    let h = |n: i64| jiff::SignedDuration::from_hours(n);
    // Ages at `now`: z 10d, a 8d, m 6d, b 2d, c 1h.
    complete(&bucket, "z-oldest", now - h(240)).await;
    complete(&bucket, "a-8d", now - h(192)).await;
    complete(&bucket, "m-6d", now - h(144)).await;
    complete(&bucket, "b-2d", now - h(48)).await;
    complete(&bucket, "c-newest", now - h(1)).await;
    incomplete(&bucket, "failed-upload").await;
    // Not a backup layout: never touched.
    bucket
        .put(&format!("{PREFIX}/stray.txt"), b"x".to_vec())
        .await;
    let env = bucket.env();

    // A fresh incomplete backup (still uploading, as far as anyone knows)
    // stays; 7d deletes the two older than a week.
    let v = agent(&prune(&bucket, "7d", None), &env).await.ok().json();
    assert_eq!(
        deleted(&v),
        [
            ("a-8d".to_owned(), "expired".to_owned()),
            ("z-oldest".to_owned(), "expired".to_owned())
        ]
    );
    assert_eq!(
        backups(&bucket).await,
        keys(
            &["b-2d", "c-newest", "m-6d"],
            &["failed-upload/dump.sql.zst", "stray.txt"]
        )
    );

    // Two days on: the incomplete one is older than a day and goes; count 2
    // keeps the two newest complete ones.
    let v = agent(&prune(&bucket, "2", Some(now + h(48))), &env)
        .await
        .ok()
        .json();
    assert_eq!(
        deleted(&v),
        [
            ("failed-upload".to_owned(), "incomplete".to_owned()),
            ("m-6d".to_owned(), "beyondCount".to_owned())
        ]
    );
    assert_eq!(
        backups(&bucket).await,
        keys(&["b-2d", "c-newest"], &["stray.txt"])
    );

    // A year on with 1h: everything is expired, yet the newest stays.
    let v = agent(&prune(&bucket, "1h", Some(now + h(24 * 365))), &env)
        .await
        .ok()
        .json();
    assert_eq!(deleted(&v), [("b-2d".to_owned(), "expired".to_owned())]);
    assert_eq!(backups(&bucket).await, keys(&["c-newest"], &["stray.txt"]));
    // And count 0 too.
    let v = agent(&prune(&bucket, "0", None), &env).await.ok().json();
    assert!(deleted(&v).is_empty());
    assert_eq!(v["kept"], serde_json::json!(["c-newest"]));

    // A bad retention is a usage error.
    agent(&prune(&bucket, "7x", None), &env)
        .await
        .failed(2, "retention");
}

#[tokio::test]
async fn prune_accepts_the_backup_jobs_argument_list() {
    // The backup Job passes --engine/--host/--port to prune as well.
    let bucket = Bucket::start().await;
    complete(&bucket, "only", jiff::Timestamp::now()).await;
    let mut a = strings(&[
        "prune",
        "--engine",
        "postgresql",
        "--host",
        "db",
        "--port",
        "5432",
    ]);
    a.extend(bucket.args(PREFIX));
    a = with(a, &["--retention", "7d"]);
    let v = agent(&a, &bucket.env()).await.ok().json();
    assert_eq!(v["kept"], serde_json::json!(["only"]));
}
