//! `make bench`: the operator from a standing start to N Running Databases,
//! against a bare client that creates the same objects with the same
//! parallelism, each on a fresh local control plane (etcd, kube-apiserver,
//! controller-manager, scheduler, KWOK) with the same nodes. A measurement,
//! not a test: it asserts nothing about time; it prints a table and writes
//! `target/bench/bench-N.json` and `bench-N.svg`.
//!
//! Method (also in docs/src/benchmark.md): the workload is N Databases,
//! PostgreSQL, MySQL and MongoDB round robin, one replica each, over ten
//! namespaces, a third with scheduled backups, a third with monitoring
//! ([`workload`]). The operator side creates only the Databases and waits
//! until every one reports phase Running; the bare client creates each
//! Database and then the objects the operator would create for it, built by
//! the operator's own builders ([`children`]), and waits until every
//! StatefulSet is ready. KWOK marks pods ready as soon as they are
//! scheduled, so both sides measure the control plane's and the creating
//! client's work, not database start-up.

mod children;
mod heap;
mod measure;
mod report;
mod run;
mod soak;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

#[derive(Parser)]
#[command(about = "Benchmark the operator against a bare client on the local control plane")]
struct Cli {
    /// Numbers of Databases, one run each (repeat the flag).
    #[arg(long = "databases", env = "BENCH_N", value_delimiter = ',', default_values_t = [100, 1000])]
    databases: Vec<usize>,
    /// Creations in flight at once, for both sides; the operator's
    /// --max-concurrent-reconciles is set to the same.
    #[arg(long, default_value_t = 32)]
    parallelism: usize,
    /// KWOK nodes.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Seconds the operator is watched idle after every Database runs.
    #[arg(long, env = "BENCH_IDLE_SECONDS", default_value_t = 120)]
    idle_seconds: u64,
    /// Minutes of churn after the idle window: 1 % of the Databases
    /// deleted, created or scaled each minute, the operator's memory read
    /// each minute (`make soak`: 60 at N = 1,000). 0: no soak.
    #[arg(long, env = "BENCH_SOAK_MINUTES", default_value_t = 0)]
    soak_minutes: usize,
    /// The operator binary (default: the static release build of `make image`).
    #[arg(long, env = "BENCH_OPERATOR_BINARY")]
    operator_binary: Option<PathBuf>,
    /// Where the JSON, the plot and the operator's log go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let operator_binary = cli
        .operator_binary
        .unwrap_or_else(run::default_operator_binary);
    if !operator_binary.exists() {
        anyhow::bail!(
            "{} does not exist: build it with `make image` (make bench does)",
            operator_binary.display()
        );
    }
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
    let mut tables = Vec::new();
    for databases in cli.databases {
        let plan = run::Plan {
            databases,
            parallelism: cli.parallelism,
            nodes: cli.nodes,
            idle: Duration::from_secs(cli.idle_seconds),
            timeout: Duration::from_secs(1800),
            operator_binary: operator_binary.clone(),
            out_dir: cli.out.clone(),
            soak_minutes: cli.soak_minutes,
        };
        eprintln!("bench: N = {databases}: the bare client");
        let baseline = run::baseline(&plan)
            .await
            .context("the bare client's run")?;
        eprintln!(
            "bench: N = {databases}: the operator (then {} idle seconds)",
            cli.idle_seconds
        );
        let operator = run::operator(&plan).await.context("the operator's run")?;
        let report = report::Report::new(&plan, commit.clone(), operator, baseline);
        let json = cli.out.join(format!("bench-{databases}.json"));
        std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
        let svg = cli.out.join(format!("bench-{databases}.svg"));
        std::fs::write(&svg, report.svg())?;
        let table = report.table();
        println!("{table}\nwrote {} and {}\n", json.display(), svg.display());
        tables.push(table);
    }
    std::fs::write(cli.out.join("latest.md"), tables.join("\n"))?;
    Ok(())
}
