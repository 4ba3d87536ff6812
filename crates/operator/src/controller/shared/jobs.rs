//! Reading the agent's Jobs: whether one finished, and what the agent said.

use std::future::Future;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::controller::Context;
use crate::error::Result;

/// Calls `handle` for every Job matching `selector`, as it appears and each
/// time it changes, until the watch ends; failures of one Job are logged
/// (`what` says what was being done) and the next is handled.
pub async fn for_each_job<F, Fut>(ctx: Arc<Context>, selector: &str, what: &str, handle: F)
where
    F: Fn(Arc<Context>, Job) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let jobs = ctx
        .settings
        .scope
        .watch::<Job>(
            &ctx.client,
            &watcher::Config::default().labels(selector),
            None,
        )
        .applied_objects();
    let result = jobs
        .try_for_each(|job| {
            let name = job.name_any();
            let done = handle(ctx.clone(), job);
            async move {
                if let Err(error) = done.await {
                    warn!(job = %name, %error, "could not {what}");
                }
                Ok(())
            }
        })
        .await;
    if let Err(error) = result {
        warn!(%error, "the Job watch to {what} ended");
    }
}

/// How a Job ended, if it did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Running,
    Succeeded { at: Option<Time> },
    Failed { at: Option<Time>, message: String },
}

/// The Job's outcome from its conditions.
pub fn outcome(job: &Job) -> Outcome {
    let status = job.status.clone().unwrap_or_default();
    let holds = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    if let Some(failed) = holds("Failed") {
        return Outcome::Failed {
            at: failed.last_transition_time,
            message: failed.message.unwrap_or_default(),
        };
    }
    if holds("Complete").is_some() {
        return Outcome::Succeeded {
            at: status.completion_time,
        };
    }
    Outcome::Running
}

/// The termination message of `container` in the Job's newest pod that has
/// one: the agent's JSON report on success, the error (or the log tail) on
/// failure.
pub async fn agent_output(
    client: &Client,
    namespace: &str,
    job: &str,
    container: &str,
) -> Result<Option<String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let mut pods = pods.items;
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    Ok(pods.iter().rev().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == container)?
            .state
            .as_ref()?
            .terminated
            .as_ref()?
            .message
            .clone()
    }))
}

/// The agent's error line, from a failure's termination message.
pub fn agent_error(output: &str) -> Option<String> {
    database_operator_api::agent::parse::<database_operator_api::agent::FailureReport>(output)
        .map(|f| f.error)
}
