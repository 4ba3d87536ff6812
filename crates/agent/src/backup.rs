//! `agent backup`: inventory, streamed dump, manifest last.

use database_operator_api::agent::BackupReport;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use object_store::{ObjectStoreExt, PutPayload};

use super::engines::copy_count::CopyCounter;
use super::engines::counting::{counting, counts_in};
use super::engines::insert_count::InsertCounter;
use super::engines::{Inventory, Tool, mongodb, mysql, postgresql, tool_version};
use super::manifest::{COMPRESSION, FORMAT_VERSION, Manifest};
use super::pipeline::{self, Uploaded};
use super::store::{Store, s3_error, validate_key_name};
use super::{AgentError, BackupArgs, DbArgs, Result, Secrets, now_rfc3339, progress};
use database_operator_api::v1::Engine;

/// `YYYYMMDDTHHMMSSZ`, UTC: sorts like time.
pub fn default_key_name() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

pub async fn run(args: BackupArgs) -> Result<BackupReport> {
    let secrets = Secrets::from_env();
    let key = args.key_name.clone().unwrap_or_else(default_key_name);
    validate_key_name(&key)?;
    let store = Store::from_args(&args.s3)?;
    let engine = args.db.engine;
    let manifest_path = store.manifest_path(&key);
    let dump_path = store.dump_path(&key, engine);

    // Fails fast on S3 credentials and never overwrites a complete backup.
    if pipeline::get_small(&store, &manifest_path).await?.is_some() {
        return Err(AgentError::Usage(format!(
            "backup {key:?} already exists at {}",
            store.location(&manifest_path)
        )));
    }
    let start_time = now_rfc3339();
    // A replica when one answers, so that the dump does not load the
    // primary; else the fallback, the primary.
    let mut args = args;
    if let Some(fallback) = args.db.fallback_host.take()
        && let Err(e) = answers(&args.db, &secrets).await
    {
        progress(format!(
            "{} does not answer ({e}); backing up from {fallback} instead",
            args.db.host
        ));
        args.db.host = fallback;
    }
    progress(format!(
        "backing up {engine} at {}:{} to {}",
        args.db.host,
        args.db.port.unwrap_or(engine.default_port()),
        store.location(&dump_path)
    ));

    let level = pipeline::Compression {
        level: args.compression_level,
        workers: args.compression_workers,
    };
    let (inventory, uploaded, dump_tool) = match engine {
        Engine::Postgresql => {
            let mut inventory = postgresql::inventory(&args.db, &secrets).await?;
            progress(format!(
                "inventory: {} databases",
                inventory.databases.len()
            ));
            let tool = postgresql::dump_tool(args.db.tools_dir.as_deref())?;
            let version = tool_version(&tool).await?;
            let dump_args = postgresql::dump_args(
                &args.db.host,
                args.db.port.unwrap_or(5432),
                &secrets.user(engine),
            );
            let mut child = Tool::spawn(
                &tool,
                dump_args,
                &postgresql::tool_env(secrets.password()),
                false,
                true,
            )?;
            let stdout = child.child.stdout.take().expect("stdout is piped");
            let (stdout, counter) = counting::<_, CopyCounter>(stdout);
            let (uploaded, ()) =
                pipeline::upload(&store, &dump_path, stdout, level, child.wait()).await?;
            inventory.row_counts = counts_in(&counter, &inventory.databases);
            (inventory, uploaded, version)
        }
        Engine::Mysql => {
            let mut inventory = mysql::inventory(&args.db, &secrets).await?;
            progress(format!("inventory: {} schemas", inventory.databases.len()));
            let (tool, dump_args, version) =
                mysql::dump_command(&args.db, &secrets, &inventory.server_version).await?;
            let mut child = Tool::spawn(
                &tool,
                dump_args,
                &[("MYSQL_PWD", secrets.password())],
                false,
                true,
            )?;
            let stdout = child.child.stdout.take().expect("stdout is piped");
            let (stdout, counter) = counting::<_, InsertCounter>(stdout);
            let (uploaded, ()) =
                pipeline::upload(&store, &dump_path, stdout, level, child.wait()).await?;
            inventory.row_counts = counts_in(&counter, &inventory.databases);
            (inventory, uploaded, version)
        }
        Engine::Mongodb => {
            let (client, mut inventory) = mongodb::inventory(&args.db, &secrets).await?;
            let (reader, writer) = tokio::io::duplex(1 << 20);
            let databases = inventory.databases.clone();
            let task =
                tokio::spawn(async move { mongodb::dump(&client, &databases, writer).await });
            let finished = async {
                task.await
                    .map_err(|e| AgentError::Other(format!("the dump task failed: {e}")))?
            };
            let (uploaded, counts) =
                pipeline::upload(&store, &dump_path, reader, level, finished).await?;
            inventory.row_counts = counts;
            let tool = format!("database-operator agent {}", env!("CARGO_PKG_VERSION"));
            (inventory, uploaded, tool)
        }
    };
    let completion_time = now_rfc3339();
    let manifest = manifest(
        engine,
        &store,
        &key,
        inventory,
        &uploaded,
        dump_tool,
        start_time,
        completion_time,
    );
    store
        .store
        .put(&manifest_path, PutPayload::from(manifest.to_json()))
        .await
        .map_err(|e| s3_error(e, "writing manifest.json"))?;
    progress(format!(
        "backup {key:?} complete: {} bytes stored ({} before compression)",
        uploaded.size_bytes, uploaded.uncompressed_bytes
    ));
    Ok(BackupReport {
        location: store.location(&dump_path),
        size_bytes: uploaded.size_bytes,
        sha256: uploaded.sha256,
        start_time: manifest.start_time.parse().ok().map(Time),
        completion_time: manifest.completion_time.parse().ok().map(Time),
        key_name: key,
        manifest: store.location(&manifest_path),
    })
}

#[allow(clippy::too_many_arguments)]
fn manifest(
    engine: Engine,
    store: &Store,
    key: &str,
    inventory: Inventory,
    uploaded: &Uploaded,
    dump_tool: String,
    start_time: String,
    completion_time: String,
) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        engine,
        server_version: inventory.server_version,
        dump_tool,
        databases: inventory.databases,
        object: store.dump_path(key, engine).to_string(),
        size_bytes: uploaded.size_bytes,
        sha256: uploaded.sha256.clone(),
        uncompressed_bytes: uploaded.uncompressed_bytes,
        compression: COMPRESSION.into(),
        start_time,
        completion_time,
        operator_version: env!("CARGO_PKG_VERSION").into(),
        row_counts: inventory.row_counts,
        row_count_method: inventory.row_count_method,
    }
}

/// Whether the server at `db` accepts the backup's login.
async fn answers(db: &DbArgs, secrets: &Secrets) -> Result<()> {
    match db.engine {
        Engine::Postgresql => postgresql::connect(db, secrets, "postgres").await.map(drop),
        Engine::Mysql => mysql::connect(db, secrets).await.map(drop),
        Engine::Mongodb => mongodb::connect(db, secrets).await.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_names_sort_like_time() {
        let k = default_key_name();
        assert_eq!(k.len(), 16, "{k}");
        assert!(k.ends_with('Z') && k.as_bytes()[8] == b'T');
        validate_key_name(&k).unwrap();
    }
}
