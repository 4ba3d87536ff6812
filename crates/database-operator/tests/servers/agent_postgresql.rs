//! `database-operator agent` against real PostgreSQL 15 servers and a real
//! S3 server (versitygw): round trip, verify, refusals, failures.

use database_operator_api::v1;
use std::time::{Duration, Instant};

use testkit::agent_cli::{Bucket, agent, env_for, nonempty_files, spawn};
use testkit::servers::Postgres;

async fn client(pg: &Postgres, db: &str) -> tokio_postgres::Client {
    let mut config = pg.config();
    config.dbname(db);
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// Two databases, several schemas and tables, thousands of rows with
/// unicode, NULLs, binary, arrays, JSON, control characters; a role.
async fn fill(pg: &Postgres) {
    let admin = pg.connect().await.unwrap();
    for sql in [
        "CREATE DATABASE app",
        "CREATE DATABASE analytics",
        "CREATE ROLE app_reader LOGIN PASSWORD 'reader-pass-1'",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let app = client(pg, "app").await;
    app.batch_execute(
        r"CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, note text, created timestamptz);
          INSERT INTO customers
            SELECT i, 'Kunde ' || i || ' — naïve café ☃ 日本語 🎉',
                   CASE WHEN i % 7 = 0 THEN NULL ELSE 'c' || i || '@example.com' END,
                   CASE WHEN i % 3 = 0 THEN NULL ELSE repeat('x', i % 50) || E'\t\n\\' END,
                   '2024-01-01'::timestamptz + i * interval '1 minute'
            FROM generate_series(1, 5000) i;
          CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL, maybe bytea);
          INSERT INTO blobs
            SELECT i, decode(md5(i::text) || '00ff', 'hex'),
                   CASE WHEN i % 2 = 0 THEN NULL ELSE '\x000102fffe'::bytea END
            FROM generate_series(1, 3000) i;
          CREATE SCHEMA sales;
          CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id),
                                     amount numeric(12,2), tags text[], doc jsonb);
          INSERT INTO sales.orders (customer, amount, tags, doc)
            SELECT 1 + i % 5000, i * 1.25, ARRAY['a', 'ü', NULL], jsonb_build_object('k', i, 'emoji', '🎉')
            FROM generate_series(1, 8000) i;
          CREATE TABLE empty_table (id int);
          GRANT SELECT ON customers TO app_reader;",
    )
    .await
    .unwrap();
    let analytics = client(pg, "analytics").await;
    analytics
        .batch_execute(
            r"CREATE TABLE events (id int PRIMARY KEY, payload text, at date);
              INSERT INTO events SELECT i, E'line\nbreak\ttab ' || i, NULL FROM generate_series(1, 2000) i;",
        )
        .await
        .unwrap();
}

/// Every row of every user table of every database, as text, sorted.
async fn snapshot(pg: &Postgres) -> Vec<(String, Vec<String>)> {
    let admin = pg.connect().await.unwrap();
    let dbs: Vec<String> = admin
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for db in dbs {
        let c = client(pg, &db).await;
        let tables = c
            .query(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        for t in tables {
            let table: String = t.get(0);
            let rows: Vec<String> = c
                .query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            out.push((format!("{db}.{table}"), rows));
        }
    }
    out
}

#[tokio::test]
async fn postgresql_backup_restore_verify_round_trip() {
    let bucket = Bucket::start().await;
    let source = Postgres::start().await.unwrap();
    fill(&source).await;
    let before = snapshot(&source).await;
    assert_eq!(
        before.len(),
        5,
        "{:?}",
        before.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    assert_eq!(before.iter().map(|t| t.1.len()).sum::<usize>(), 18_000);

    let log = tempfile::NamedTempFile::new().unwrap();
    let run = bucket
        .on(&source, "pg/orders")
        .run(
            "backup",
            &[
                "--key-name",
                "nightly-1",
                "--termination-log",
                log.path().to_str().unwrap(),
            ],
        )
        .await
        .ok();
    let result = run.json();
    assert_eq!(
        result["location"],
        format!(
            "s3://{}/pg/orders/nightly-1/dump.sql.zst",
            testkit::agent_cli::BUCKET
        )
    );
    let size = result["sizeBytes"].as_u64().unwrap();
    assert!(size > 1000);
    assert_eq!(result["sha256"].as_str().unwrap().len(), 64);
    assert!(result["startTime"].is_string() && result["completionTime"].is_string());
    assert_eq!(
        std::fs::read_to_string(log.path()).unwrap().trim(),
        run.stdout.trim()
    );
    // No secret on either stream.
    for secret in [source.admin_password(), bucket.s3.secret_key()] {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    }

    assert_eq!(
        bucket.keys("pg/orders").await,
        [
            "pg/orders/nightly-1/dump.sql.zst",
            "pg/orders/nightly-1/manifest.json"
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("pg/orders/nightly-1/manifest.json").await).unwrap();
    assert_eq!(manifest["formatVersion"], 1);
    assert_eq!(manifest["engine"], "postgresql");
    assert_eq!(manifest["compression"], "zstd");
    assert_eq!(manifest["sizeBytes"].as_u64(), Some(size));
    assert_eq!(manifest["sha256"], result["sha256"]);
    assert_eq!(manifest["operatorVersion"], env!("CARGO_PKG_VERSION"));
    assert!(
        manifest["serverVersion"]
            .as_str()
            .unwrap()
            .starts_with("15")
    );
    assert_eq!(
        manifest["databases"],
        serde_json::json!(["analytics", "app", "postgres"])
    );
    assert_eq!(manifest["rowCounts"]["app.public.customers"], 5000);
    assert_eq!(manifest["rowCounts"]["app.sales.orders"], 8000);
    assert_eq!(manifest["rowCounts"]["app.public.empty_table"], 0);
    assert_eq!(manifest["rowCounts"]["analytics.public.events"], 2000);
    // The stored object is what the manifest says.
    let object = bucket.get("pg/orders/nightly-1/dump.sql.zst").await;
    assert_eq!(object.len() as u64, size);
    assert_eq!(&object[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");

    // Restore into a fresh server: every row equal, its admin login intact,
    // the source's other roles back with their passwords.
    let target = Postgres::start().await.unwrap();
    let run = bucket
        .on(&target, "pg/orders")
        .run("restore", &["--key-name", "nightly-1"])
        .await
        .ok();
    assert_eq!(run.json()["keyName"], "nightly-1");
    assert_eq!(snapshot(&target).await, before);
    let mut reader = target.config();
    reader
        .user("app_reader")
        .password("reader-pass-1")
        .dbname("app");
    let (c, conn) = reader
        .connect(tokio_postgres::NoTls)
        .await
        .expect("app_reader logs in");
    tokio::spawn(conn);
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5000);

    // Verify: a drill into another fresh server compares counts.
    let drill = Postgres::start().await.unwrap();
    let run = bucket
        .on(&drill, "pg/orders")
        .run("verify", &["--key-name", "nightly-1"])
        .await
        .ok();
    let v = run.json();
    assert_eq!(v["verified"], true);
    assert_eq!(v["tables"], 5);
    assert_eq!(v["rows"], 18_000);

    // The target now holds data: refused without --force, restored with it.
    let run = bucket
        .on(&target, "pg/orders")
        .run("restore", &["--key-name", "nightly-1"])
        .await;
    run.failed(6, "already holds user data");
    client(&target, "app")
        .await
        .batch_execute("DELETE FROM sales.orders WHERE id > 10")
        .await
        .unwrap();
    bucket
        .on(&target, "pg/orders")
        .run("restore", &["--key-name", "nightly-1", "--force"])
        .await
        .ok();
    assert_eq!(snapshot(&target).await, before);
}

#[tokio::test]
async fn postgresql_restore_refuses_corrupt_truncated_and_incomplete_backups() {
    let bucket = Bucket::start().await;
    let source = Postgres::start().await.unwrap();
    fill(&source).await;
    bucket
        .on(&source, "p")
        .run("backup", &["--key-name", "k"])
        .await
        .ok();
    let original = bucket.get("p/k/dump.sql.zst").await;
    let target = Postgres::start().await.unwrap();
    let restore = || bucket.on(&target, "p").run("restore", &["--key-name", "k"]);

    // One flipped byte in the middle, same size: the checksum refuses it.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    bucket.put("p/k/dump.sql.zst", flipped).await;
    restore().await.failed(5, "SHA-256 mismatch");

    // Truncated.
    bucket
        .put(
            "p/k/dump.sql.zst",
            original[..original.len() - 100].to_vec(),
        )
        .await;
    restore().await.failed(5, "truncated");

    // Nothing was applied by either attempt.
    assert_eq!(snapshot(&target).await, vec![]);

    // No manifest: incomplete, refused.
    bucket.put("p/k/dump.sql.zst", original).await;
    bucket
        .store
        .delete(&"p/k/manifest.json".into())
        .await
        .unwrap();
    restore().await.failed(5, "no manifest");
    // A key that never existed.
    bucket
        .on(&target, "p")
        .run("restore", &["--key-name", "nope"])
        .await
        .failed(5, "no manifest");
}

use object_store::ObjectStoreExt;

#[tokio::test]
async fn wrong_credentials_are_named() {
    let bucket = Bucket::start().await;
    let pg = Postgres::start().await.unwrap();
    let on = bucket.on(&pg, "c");
    let backup = || on.args("backup", &["--key-name", "k"]);

    // A wrong secret key, then an unknown access key: each named.
    for (i, wrong, named) in [
        (
            1,
            "wrong-secret-key-0123456789abcdefghijklm",
            "AWS_SECRET_ACCESS_KEY",
        ),
        (0, "TKNOSUCHKEY000000000", "AWS_ACCESS_KEY_ID"),
    ] {
        let mut env = on.env();
        assert_eq!(env[i].0, named);
        env[i].1 = wrong.into();
        let run = agent(&backup(), &env)
            .await
            .failed(3, "S3 refused the credentials");
        assert!(run.stderr.contains(named), "{}", run.stderr);
    }

    let bad_password = env_for(&bucket, pg.admin_user(), "not-the-password");
    let run = agent(&backup(), &bad_password)
        .await
        .failed(4, "the database refused the login");
    assert!(
        run.stderr.contains("password authentication failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"));

    // Nothing was written by any of them.
    assert_eq!(bucket.keys("c").await, Vec::<String>::new());
}

/// Fills `big` with ~1M rows of random bytes (~70 MB of dump text that
/// zstd cannot shrink much), so an upload takes several parts.
async fn fill_big(pg: &Postgres) {
    let c = pg.connect().await.unwrap();
    c.batch_execute(
        "CREATE TABLE big (id int, data bytea);
         INSERT INTO big SELECT i, decode(md5(i::text || random()::text) || md5(random()::text), 'hex')
         FROM generate_series(1, 1000000) i;",
    )
    .await
    .unwrap();
}

/// Waits until versitygw stages a new multipart part in the bucket's folder.
async fn wait_for_upload_in_progress(
    bucket: &Bucket,
    before: &std::collections::BTreeSet<std::path::PathBuf>,
    child: &mut tokio::process::Child,
) {
    let dir = bucket.s3.root_dir().join(testkit::agent_cli::BUCKET);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if nonempty_files(&dir).difference(before).next().is_some() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("agent exited ({status}) before the upload was seen: {err}");
        }
        assert!(Instant::now() < deadline, "no upload seen in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the agent to fail, as it must once what it streams from or to
/// is gone, and returns what it wrote to stderr (nothing goes to stdout).
async fn gives_up(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the agent gives up")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    stderr
}

#[tokio::test]
async fn an_upload_that_fails_mid_stream_leaves_nothing_complete() {
    let mut bucket = Bucket::start().await;
    let mut pg = Postgres::start().await.unwrap();
    fill_big(&pg).await;

    // 1. The S3 server dies during the upload.
    let dir = bucket.s3.root_dir().join(testkit::agent_cli::BUCKET);
    let before = nonempty_files(&dir);
    let mut child = {
        let on = bucket.on(&pg, "f");
        spawn(&on.args("backup", &["--key-name", "s3-dies"]), &on.env())
    };
    wait_for_upload_in_progress(&bucket, &before, &mut child).await;
    bucket.s3.kill();
    let stderr = gives_up(child).await;
    assert!(stderr.contains("error: S3"), "{stderr}");
    bucket.s3.start_again().await.unwrap();
    let keys = bucket.keys("f").await;
    assert!(
        !keys.iter().any(|k| k.ends_with("manifest.json")),
        "{keys:?}"
    );
    bucket
        .on(&pg, "f")
        .run("restore", &["--key-name", "s3-dies", "--force"])
        .await
        .failed(5, "no manifest");

    // 2. The database server stops during the dump: pg_dumpall fails, the
    // upload is aborted, no object and no manifest appear.
    let before = nonempty_files(&dir);
    let mut child = {
        let on = bucket.on(&pg, "g");
        spawn(&on.args("backup", &["--key-name", "db-dies"]), &on.env())
    };
    wait_for_upload_in_progress(&bucket, &before, &mut child).await;
    pg.stop();
    let stderr = gives_up(child).await;
    assert!(stderr.contains("pg_dumpall failed"), "{stderr}");
    assert!(stderr.contains("upload aborted"), "{stderr}");
    assert_eq!(bucket.keys("g").await, Vec::<String>::new());
}

/// A restore drill as the drill Job runs it: `verify --latest` into a fresh
/// server picks the newest complete backup (not a newer incomplete one),
/// and its report — passed, or failed with the backup it tried — is what
/// the operator records.
#[tokio::test]
async fn drills_verify_the_newest_complete_backup_and_report_what_they_tried() {
    use operator::controller::backup::drills::verification;
    use operator::controller::shared::jobs::Outcome;

    let bucket = Bucket::start().await;
    let source = Postgres::start().await.unwrap();
    let admin = source.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE ledger (id int PRIMARY KEY, memo text);
             INSERT INTO ledger SELECT i, 'entry ' || i FROM generate_series(1, 100) i;",
        )
        .await
        .unwrap();
    let backup = |key: &str| bucket.on(&source, "d").run("backup", &["--key-name", key]);
    backup("b-1").await.ok();
    admin
        .batch_execute("INSERT INTO ledger SELECT i, 'more' FROM generate_series(101, 150) i")
        .await
        .unwrap();
    backup("b-2").await.ok();
    // A newer upload that never finished: no manifest.
    bucket
        .put("d/zz-unfinished/dump.sql.zst", b"partial".to_vec())
        .await;

    let drill = Postgres::start().await.unwrap();
    let run = bucket
        .on(&drill, "d")
        .run("verify", &["--latest"])
        .await
        .ok();
    let report = run.json();
    assert_eq!(report["keyName"], "b-2");
    assert_eq!(report["verified"], true);
    assert_eq!(report["rows"], 150);
    let recorded = verification(
        "db-verify-1",
        &Outcome::Succeeded { at: None },
        Some(&run.stdout),
        None,
    );
    assert_eq!(recorded.result, v1::restore::VerificationResult::Passed);
    assert_eq!(recorded.backup_name.as_deref(), Some("b-2"));

    // The newest backup is damaged: the drill fails, naming it.
    let mut object = bucket.get("d/b-2/dump.sql.zst").await;
    let mid = object.len() / 2;
    object[mid] ^= 0x40;
    bucket.put("d/b-2/dump.sql.zst", object).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let drill = Postgres::start().await.unwrap();
    bucket
        .on(&drill, "d")
        .run(
            "verify",
            &[
                "--latest",
                "--termination-log",
                &log.path().display().to_string(),
            ],
        )
        .await
        .failed(5, "SHA-256 mismatch");
    let termination = std::fs::read_to_string(log.path()).unwrap();
    let recorded = verification(
        "db-verify-2",
        &Outcome::Failed {
            at: None,
            message: "BackoffLimitExceeded".into(),
        },
        Some(&termination),
        None,
    );
    assert_eq!(recorded.result, v1::restore::VerificationResult::Failed);
    assert_eq!(recorded.backup_name.as_deref(), Some("b-2"));
    assert!(recorded.message.contains("SHA-256"), "{}", recorded.message);

    // An empty prefix: nothing to drill, said plainly.
    bucket
        .on(&drill, "nothing-here")
        .run("verify", &["--latest"])
        .await
        .failed(5, "no complete backup");
}
