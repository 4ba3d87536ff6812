//! A benchmark, not a test (ignored by default): `pg_dumpall > file` against
//! `agent backup` to the local S3 server, and `psql < file` against `agent
//! restore`, on a generated PostgreSQL database.
//!
//! ```sh
//! cargo build --release -p database-operator --bin database-operator
//! BENCH_MB=1000 BENCH_RUNS=3 AGENT_BIN=target/release/database-operator \
//!   cargo test -p database-operator --test benchmark -- --ignored --nocapture
//! ```

// Tests may unwrap in their helpers too (clippy.toml allows it only in
// #[test] functions): a test stops at the first failed step, with its cause.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::agent_cli::Bucket;
use testkit::servers::Postgres;

fn agent_bin() -> String {
    std::env::var("AGENT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_database-operator").into())
}

async fn timed(mut cmd: tokio::process::Command) -> (Duration, String) {
    let started = Instant::now();
    // spawn, not output(): output() would capture stdout, which pg_dumpall
    // sends to a file here.
    let out = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs")
        .wait_with_output()
        .await
        .expect("runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {stderr}");
    (elapsed, stderr)
}

fn max_rss_kib(time_v: &str) -> Option<u64> {
    time_v
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
}

fn agent(cmd: &str, pg: &Postgres, bucket: &Bucket, key: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/usr/bin/time");
    c.arg("-v")
        .arg(agent_bin())
        .args(["agent", cmd, "--engine", "postgresql", "--host", pg.host()])
        .args(["--port", &pg.port().to_string()])
        .args(["--tools-dir", &pg.bin_dir().display().to_string()])
        .args(bucket.args("bench"))
        .args(["--key-name", key, "--termination-log", "/dev/null"])
        .args(match (cmd, std::env::var("BENCH_LEVEL")) {
            ("backup", Ok(level)) => vec![format!("--compression-level={level}")],
            _ => Vec::new(),
        })
        .args(match (cmd, std::env::var("BENCH_WORKERS")) {
            ("backup", Ok(n)) => vec![format!("--compression-workers={n}")],
            _ => Vec::new(),
        })
        .env("DB_USER", pg.admin_user())
        .env("DB_PASSWORD", pg.admin_password())
        .env("AWS_ACCESS_KEY_ID", bucket.s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", bucket.s3.secret_key())
        .stdin(Stdio::null());
    c
}

#[tokio::test]
#[ignore = "benchmark: minutes and gigabytes; run by hand"]
async fn benchmark_pg_dumpall_vs_agent() {
    let mb: u64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bucket = Bucket::start().await;
    let source = Postgres::start().await.unwrap();
    let c = source.connect().await.unwrap();
    let started = Instant::now();
    let rows = mb * 7_600;
    c.batch_execute(&format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, label text, n int, at timestamptz, digest bytea);
         INSERT INTO bench
           SELECT i, md5(i::text) || ' ' || repeat('lorem ipsum ', (i % 5)::int), (i % 1000)::int,
                  '2024-01-01'::timestamptz + i * interval '1 second', decode(md5((i * 7)::text), 'hex')
           FROM generate_series(1, {rows}) i;
         CREATE TABLE small (id int, v text);
         INSERT INTO small SELECT i, 'v' || i FROM generate_series(1, 10000) i;"
    ))
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    let size: i64 = c
        .query_one("SELECT pg_database_size('postgres')", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "generated {rows} rows, database size {} MB in {:.0}s",
        size / 1_000_000,
        started.elapsed().as_secs_f64()
    );

    // Runs alternate (dumpall, agent, dumpall, agent, …) so that both see
    // the same page cache and background load; the median of each is reported.
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut dumpall_times = Vec::new();
    let mut backup_times = Vec::new();
    let mut backup_rss = None;
    for run in 0..runs {
        // 1. pg_dumpall > file
        let mut dumpall = tokio::process::Command::new(source.bin_dir().join("pg_dumpall"));
        dumpall
            .args(["--clean", "--if-exists", "-h", source.host()])
            .args(["-p", &source.port().to_string(), "-U", source.admin_user()])
            .env("PGPASSWORD", source.admin_password())
            .stdout(std::fs::File::create(file.path()).unwrap());
        dumpall_times.push(timed(dumpall).await.0);
        // 2. agent backup to S3
        let (t, stderr) = timed(agent("backup", &source, &bucket, &format!("bench-{run}"))).await;
        backup_times.push(t);
        backup_rss = max_rss_kib(&stderr).or(backup_rss);
        if std::env::var("BENCH_VERBOSE").is_ok() {
            eprintln!("{stderr}");
        }
        eprintln!(
            "run {run}: pg_dumpall {:.1}s, agent backup {:.1}s",
            dumpall_times[run].as_secs_f64(),
            t.as_secs_f64()
        );
    }
    let dump_size = std::fs::metadata(file.path()).unwrap().len();
    assert!(dump_size > 0, "pg_dumpall wrote nothing");
    let object = bucket.keys("bench/bench-0").await;
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("bench/bench-0/manifest.json").await).unwrap();
    drop(c);

    let mut psql_times = Vec::new();
    let mut restore_times = Vec::new();
    let mut restore_rss = None;
    for run in 0..runs {
        // 3. psql < file into a fresh server
        let plain = Postgres::start().await.unwrap();
        let mut psql = tokio::process::Command::new(plain.bin_dir().join("psql"));
        // Over the trusted unix socket: the dump sets the source's admin
        // password, so psql's own \connect with the target's would fail over
        // TCP (the agent leaves the admin's role lines out for that reason).
        let socket = plain.socket_dir().display().to_string();
        psql.args(["-X", "-q", "-h", &socket, "-p", &plain.port().to_string()])
            .args(["-U", plain.admin_user(), "-d", "postgres", "-f"])
            .arg(file.path())
            .env("PGPASSWORD", plain.admin_password())
            .stdout(Stdio::null());
        psql_times.push(timed(psql).await.0);
        drop(plain);
        // 4. agent restore into a fresh server
        let target = Postgres::start().await.unwrap();
        let (t, stderr) = timed(agent("restore", &target, &bucket, &format!("bench-{run}"))).await;
        restore_times.push(t);
        restore_rss = max_rss_kib(&stderr).or(restore_rss);
        eprintln!(
            "run {run}: psql {:.1}s, agent restore {:.1}s",
            psql_times[run].as_secs_f64(),
            t.as_secs_f64()
        );
    }
    let t_dumpall = median(dumpall_times);
    let t_backup = median(backup_times);
    let t_psql = median(psql_times);
    let t_restore = median(restore_times);

    eprintln!(
        "\nBENCHMARK ({} MB database, {} rows; median of {runs} alternating runs)\n\
         pg_dumpall > file:      {:>7.1}s  ({} MB plain SQL)\n\
         agent backup -> S3:     {:>7.1}s  ({} MB zstd object, {} MB before compression; max RSS {} MiB; {:?})\n\
         ratio backup/dumpall:   {:>7.2}\n\
         psql -f file:           {:>7.1}s\n\
         agent restore <- S3:    {:>7.1}s  (checksum pass + restore; max RSS {} MiB)\n\
         ratio restore/psql:     {:>7.2}",
        size / 1_000_000,
        rows + 10_000,
        t_dumpall.as_secs_f64(),
        dump_size / 1_000_000,
        t_backup.as_secs_f64(),
        manifest["sizeBytes"].as_u64().unwrap() / 1_000_000,
        manifest["uncompressedBytes"].as_u64().unwrap() / 1_000_000,
        backup_rss.unwrap_or(0) / 1024,
        object,
        t_backup.as_secs_f64() / t_dumpall.as_secs_f64(),
        t_psql.as_secs_f64(),
        t_restore.as_secs_f64(),
        restore_rss.unwrap_or(0) / 1024,
        t_restore.as_secs_f64() / t_psql.as_secs_f64(),
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
