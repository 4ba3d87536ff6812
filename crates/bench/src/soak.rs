//! The soak: after the run, the operator keeps its N Databases while 1 %
//! of them change every minute (a third deleted, a third created, a third
//! scaled between one and two replicas), for an hour by default, and its
//! resident memory is read every minute. A cache or a per-object map that
//! keeps what was deleted shows as growth after the first ten minutes
//! (the goal: under 2 MiB).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use database_operator_api::v1::Database;
use database_operator_api::v1::database::Phase;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;

use crate::{measure, workload};

/// Minutes before growth is counted: the caches and the allocator settle.
const WARM_UP_MINUTES: usize = 10;

#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakFigures {
    pub minutes: usize,
    /// Databases changed per minute (a third each deleted, created, scaled).
    pub changes_per_minute: usize,
    /// The operator's resident memory at the end of each minute, MiB.
    pub rss_by_minute_mib: Vec<f64>,
    /// The highest minute after the warm-up less the minute that ends it.
    pub growth_after_warm_up_mib: f64,
    /// Databases at the end, and how many of them Running.
    pub databases_at_end: usize,
    pub running_at_end: usize,
}

/// Churns the Databases of a run named `prefix` (`databases` of them,
/// `db-0` … ) for `minutes`, reading the RSS of the operator `pid`.
pub async fn run(
    client: &Client,
    prefix: &str,
    databases: usize,
    minutes: usize,
    pid: u32,
) -> Result<SoakFigures> {
    // Whole thirds, at least one of each.
    let changes_per_minute = (databases / 100).max(3) / 3 * 3;
    let mut live: Vec<usize> = (0..databases).collect();
    let mut next = databases;
    // A fixed, seedless walk through the live ones: repeatable.
    let mut cursor = 0usize;
    let mut rss_by_minute_mib = Vec::with_capacity(minutes);
    for minute in 0..minutes {
        let tick = Instant::now();
        for change in 0..changes_per_minute {
            cursor = (cursor + 7919) % live.len();
            match change % 3 {
                0 => {
                    let i = live.swap_remove(cursor % live.len());
                    let api = api(client, prefix, i);
                    api.delete(&format!("db-{i}"), &DeleteParams::default())
                        .await
                        .with_context(|| format!("deleting db-{i}"))?;
                }
                1 => {
                    let db = workload::database(prefix, next);
                    api(client, prefix, next)
                        .create(&Default::default(), &db)
                        .await
                        .with_context(|| format!("creating db-{next}"))?;
                    live.push(next);
                    next += 1;
                }
                _ => {
                    let i = live[cursor % live.len()];
                    let api = api(client, prefix, i);
                    let name = format!("db-{i}");
                    let db = api.get(&name).await?;
                    let replicas = if db.spec.replicas == 1 { 2 } else { 1 };
                    let patch = serde_json::json!({"spec": {"replicas": replicas}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .with_context(|| format!("scaling {name}"))?;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(60).saturating_sub(tick.elapsed())).await;
        let rss = measure::status_kib(pid, "VmRSS").map_or(0.0, |kib| kib as f64 / 1024.0);
        eprintln!("bench: soak minute {}: RSS {rss:.1} MiB", minute + 1);
        rss_by_minute_mib.push(rss);
    }
    let all = Api::<Database>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let running_at_end = all
        .iter()
        .filter(|db| db.status.as_ref().and_then(|s| s.phase) == Some(Phase::Running))
        .count();
    Ok(SoakFigures {
        minutes,
        changes_per_minute,
        growth_after_warm_up_mib: growth_after(&rss_by_minute_mib, WARM_UP_MINUTES),
        rss_by_minute_mib,
        databases_at_end: all.len(),
        running_at_end,
    })
}

fn api(client: &Client, prefix: &str, i: usize) -> Api<Database> {
    Api::namespaced(client.clone(), &workload::namespace(prefix, i))
}

/// The highest reading after minute `warm_up` less the reading at it (0
/// when the soak was shorter).
pub fn growth_after(by_minute: &[f64], warm_up: usize) -> f64 {
    let Some(base) = by_minute.get(warm_up.saturating_sub(1)) else {
        return 0.0;
    };
    by_minute[warm_up..]
        .iter()
        .fold(*base, |high, rss| high.max(*rss))
        - base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_counted_from_the_end_of_the_warm_up() {
        let rss = [10.0, 30.0, 20.0, 21.0, 20.5];
        assert_eq!(growth_after(&rss, 3), 1.0);
        assert_eq!(growth_after(&rss, 5), 0.0, "nothing after the warm-up");
        assert_eq!(growth_after(&rss[..2], 3), 0.0, "shorter than the warm-up");
        assert_eq!(
            growth_after(&[5.0, 4.0, 3.0], 1),
            0.0,
            "shrinking is no growth"
        );
    }
}
