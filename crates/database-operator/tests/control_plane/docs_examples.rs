//! Every YAML example in the book and the README is applied to the real
//! API server (with the operator running), so that no example rots: each
//! complete object is applied server-side in its namespace (made when
//! missing); a fragment of a Database's spec (a block that is only `spec:`)
//! is applied as the spec of a small Database it completes; anything else
//! is skipped, and the test says which and why. Prometheus-operator's and
//! Velero's CRDs are installed, as the examples use them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, ResourceExt};
use serde_json::Value;
use testkit::docs::{markdown_files, repo, yaml_examples};
use testkit::harness::{self, env};

/// Where an example without a namespace goes.
const DEFAULT_NS: &str = "docs-examples";

/// `base` with `fragment` merged over it, objects key by key.
fn merged(mut base: Value, fragment: &Value) -> Value {
    match (base.as_object_mut(), fragment.as_object()) {
        (Some(into), Some(from)) => {
            for (key, value) in from {
                let slot = into.remove(key).unwrap_or(Value::Null);
                into.insert(key.clone(), merged(slot, value));
            }
            base
        }
        _ => fragment.clone(),
    }
}

/// A Database whose spec is `fragment`'s over a small PostgreSQL one,
/// named after where the fragment is.
fn completed(fragment: &Value, stem: &str, line: usize) -> Value {
    let base = serde_json::json!({
        "engine": "postgresql", "version": "16.4", "replicas": 3,
        "storage": {"size": "1Gi"},
    });
    serde_json::json!({
        "apiVersion": "example.com/v1",
        "kind": "Database",
        "metadata": {"name": format!("example-{stem}-{line}")},
        "spec": merged(base, &fragment["spec"]),
    })
}

async fn ensure_namespace(client: &kube::Client, made: &mut BTreeSet<String>, name: &str) {
    if made.contains(name) {
        return;
    }
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespaces.get_opt(name).await.unwrap().is_none() {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    made.insert(name.to_owned());
}

#[tokio::test]
async fn every_yaml_example_in_the_docs_is_accepted_by_the_api_server() {
    let env = env(module_path!()).await;
    let client = env.client().await;
    harness::install_crd_files(
        &client,
        &harness::prometheus_operator_crds(),
        "docs-examples",
    )
    .await
    .unwrap();
    harness::install_velero_schedule_crd(&client, "docs-examples")
        .await
        .unwrap();
    let mut made = BTreeSet::new();
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for file in markdown_files() {
        for example in yaml_examples(&file) {
            let place = format!(
                "{}:{}",
                file.strip_prefix(repo()).unwrap_or(&file).display(),
                example.line
            );
            let documents: Vec<Value> =
                match serde_saphyr::from_str_multiple::<Value, Vec<_>>(&example.text) {
                    Ok(documents) => documents,
                    Err(e) => {
                        refused.push(format!("{place}: not YAML: {e}"));
                        continue;
                    }
                };
            let stem = file.file_stem().unwrap().to_string_lossy().to_lowercase();
            for mut document in documents.into_iter().filter(|d| !d.is_null()) {
                let only_spec = document
                    .as_object()
                    .is_some_and(|o| o.len() == 1 && o.contains_key("spec"));
                if only_spec {
                    document = completed(&document, &stem, example.line);
                }
                let (Some(api_version), Some(kind)) =
                    (document["apiVersion"].as_str(), document["kind"].as_str())
                else {
                    skipped.push(format!("{place}: neither an object nor a Database's spec"));
                    continue;
                };
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk = GroupVersionKind::gvk(group, version, kind);
                let (resource, capabilities) = match pinned_kind(&client, &gvk).await {
                    Ok(found) => found,
                    Err(e) => {
                        refused.push(format!("{place}: {api_version} {kind} is not served: {e}"));
                        continue;
                    }
                };
                let object: DynamicObject = serde_json::from_value(document.clone()).unwrap();
                let name = object.name_any();
                let api: Api<DynamicObject> = if capabilities.scope == Scope::Namespaced {
                    let namespace = object.namespace().unwrap_or_else(|| DEFAULT_NS.to_owned());
                    ensure_namespace(&client, &mut made, &namespace).await;
                    Api::namespaced_with(client.clone(), &namespace, &resource)
                } else {
                    Api::all_with(client.clone(), &resource)
                };
                match api
                    .patch(
                        &name,
                        &PatchParams::apply("docs-examples").force(),
                        &Patch::Apply(&document),
                    )
                    .await
                {
                    Ok(_) => applied.push(format!("{place}: {kind} {name}")),
                    Err(e) => refused.push(format!("{place}: {kind} {name}: {e}")),
                }
            }
        }
    }
    println!(
        "applied {} examples:\n  {}",
        applied.len(),
        applied.join("\n  ")
    );
    println!("skipped {}:\n  {}", skipped.len(), skipped.join("\n  "));
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    assert!(
        applied.len() >= 5,
        "only {} examples applied",
        applied.len()
    );
}
