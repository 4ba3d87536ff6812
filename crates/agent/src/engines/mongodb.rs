//! MongoDB with the driver alone (no `mongodump`/`mongorestore`): every
//! collection of every database except `admin`, `local` and `config`, into
//! the agent's archive ([`crate::archive`]).
//!
//! - Collections whose name starts with `system.` and views are not dumped
//!   (views would need their pipelines re-created; not supported yet).
//! - Not a point-in-time snapshot across collections (like `mongodump`
//!   without `--oplog`): each collection is read with one cursor in natural
//!   order. The row counts are the documents actually written, so they
//!   always match the archive.
//! - Restore drops each collection it restores first (like `mongorestore
//!   --drop`; only reached with `--force` when the server holds data),
//!   creates it with its options, inserts in batches of ≤ 1000 documents or
//!   ≤ 8 MiB, then creates its indexes (all but `_id_`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use mongodb::{Client, Database};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Inventory;
use crate::archive::{ArchiveError, Reader, Tag, Writer};
use crate::{AgentError, DbArgs, Result, Secrets};

pub const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];

pub const ROW_COUNT_METHOD: &str = "documents written to the archive per collection (exact for the archive; collections are read one after another, not at one point in time)";

const BATCH_DOCS: usize = 1000;
const BATCH_BYTES: usize = 8 << 20;

pub async fn connect(db: &DbArgs, secrets: &Secrets) -> Result<Client> {
    let timeout = Duration::from_secs(10);
    let mut options = ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: db.host.clone(),
            port: Some(db.port.unwrap_or(27017)),
        }])
        .direct_connection(true)
        .connect_timeout(timeout)
        .server_selection_timeout(timeout)
        .app_name("database-operator-agent".to_owned())
        .build();
    if secrets.db_password.is_some() {
        options.credential = Some(
            Credential::builder()
                .username(secrets.user(db.engine))
                .password(secrets.password().to_owned())
                .source(db.auth_database.clone())
                .build(),
        );
    }
    let client = Client::with_options(options).map_err(|e| mongo_err(e, "configuring"))?;
    // The driver connects lazily: authenticate now.
    client
        .database(&db.auth_database)
        .run_command(doc! {"ping": 1})
        .await
        .map_err(|e| {
            mongo_err(
                e,
                &format!("connecting to {}:{}", db.host, db.port.unwrap_or(27017)),
            )
        })?;
    Ok(client)
}

fn mongo_err(e: mongodb::error::Error, what: &str) -> AgentError {
    let auth = matches!(e.kind.as_ref(), ErrorKind::Authentication { .. })
        || matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 18);
    let msg = format!("{what}: {e}");
    if auth {
        AgentError::DbAuth(msg)
    } else {
        AgentError::Db(msg)
    }
}

/// Databases to dump, sorted.
async fn user_databases(client: &Client) -> Result<Vec<String>> {
    let mut names = client
        .list_database_names()
        .await
        .map_err(|e| mongo_err(e, "listing databases"))?;
    names.retain(|n| !SYSTEM_DATABASES.contains(&n.as_str()));
    names.sort();
    Ok(names)
}

pub async fn server_version(client: &Client) -> Result<String> {
    let info = client
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
        .map_err(|e| mongo_err(e, "buildInfo"))?;
    let mut v = info.get_str("version").unwrap_or_default().to_owned();
    if let Ok(ferret) = info.get_str("ferretdbVersion") {
        v.push_str(&format!(" (FerretDB {ferret})"));
    }
    Ok(v)
}

/// Version and databases; the counts come from the dump itself.
pub async fn inventory(db: &DbArgs, secrets: &Secrets) -> Result<(Client, Inventory)> {
    let client = connect(db, secrets).await?;
    let inv = Inventory {
        server_version: server_version(&client).await?,
        databases: user_databases(&client).await?,
        row_counts: BTreeMap::new(),
        row_count_method: ROW_COUNT_METHOD.into(),
    };
    Ok((client, inv))
}

/// Collections of a database: (name, options), real collections only.
async fn collections(database: &Database) -> Result<Vec<(String, Document)>> {
    let mut cursor = database
        .run_cursor_command(doc! {"listCollections": 1})
        .await
        .map_err(|e| mongo_err(e, &format!("listing collections of {}", database.name())))?;
    let mut out = Vec::new();
    while let Some(spec) = cursor
        .try_next()
        .await
        .map_err(|e| mongo_err(e, "listing collections"))?
    {
        let name = spec.get_str("name").unwrap_or_default().to_owned();
        let kind = spec.get_str("type").unwrap_or("collection");
        if name.is_empty() || name.starts_with("system.") || kind != "collection" {
            continue;
        }
        let options = spec.get_document("options").cloned().unwrap_or_default();
        out.push((name, options));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn indexes(database: &Database, collection: &str) -> Result<Vec<Bson>> {
    let mut cursor = database
        .run_cursor_command(doc! {"listIndexes": collection})
        .await
        .map_err(|e| mongo_err(e, &format!("listing indexes of {collection}")))?;
    let mut out = Vec::new();
    while let Some(mut spec) = cursor
        .try_next()
        .await
        .map_err(|e| mongo_err(e, "listing indexes"))?
    {
        if spec.get_str("name") == Ok("_id_") {
            continue;
        }
        spec.remove("v");
        spec.remove("ns");
        out.push(Bson::Document(spec));
    }
    Ok(out)
}

/// Writes every user collection into an archive; returns documents per
/// `db.collection`.
pub async fn dump<W: AsyncWrite + Unpin>(
    client: &Client,
    databases: &[String],
    out: W,
) -> Result<BTreeMap<String, u64>> {
    let io = |e: std::io::Error| AgentError::Other(format!("writing the archive: {e}"));
    let mut w = Writer::new(out).await.map_err(io)?;
    let mut counts = BTreeMap::new();
    let (mut total_collections, mut total_docs) = (0i64, 0i64);
    for name in databases {
        let database = client.database(name);
        for (coll, options) in collections(&database).await? {
            let indexes = indexes(&database, &coll).await?;
            w.document(
                Tag::Header,
                &doc! {"db": name, "collection": &coll, "options": options, "indexes": indexes},
            )
            .await
            .map_err(io)?;
            let mut cursor = database
                .collection::<RawDocumentBuf>(&coll)
                .find(doc! {})
                .await
                .map_err(|e| mongo_err(e, &format!("reading {name}.{coll}")))?;
            let mut n = 0i64;
            while let Some(d) = cursor
                .try_next()
                .await
                .map_err(|e| mongo_err(e, &format!("reading {name}.{coll}")))?
            {
                w.frame(Tag::Document, d.as_bytes()).await.map_err(io)?;
                n += 1;
            }
            w.document(Tag::End, &doc! {"count": n}).await.map_err(io)?;
            counts.insert(format!("{name}.{coll}"), n as u64);
            total_collections += 1;
            total_docs += n;
        }
    }
    w.document(
        Tag::Trailer,
        &doc! {"collections": total_collections, "documents": total_docs},
    )
    .await
    .map_err(io)?;
    w.finish().await.map_err(io)?;
    Ok(counts)
}

fn archive_err(e: ArchiveError) -> AgentError {
    match e {
        ArchiveError::Io(e) => AgentError::Integrity(format!("reading the backup: {e}")),
        e => AgentError::Integrity(e.to_string()),
    }
}

fn corrupt(what: &str) -> AgentError {
    AgentError::Integrity(format!("the archive is corrupt: {what}"))
}

struct Open {
    db: String,
    collection: String,
    indexes: Vec<Bson>,
    batch: Vec<RawDocumentBuf>,
    batch_bytes: usize,
    count: i64,
}

async fn flush(client: &Client, open: &mut Open) -> Result<()> {
    if open.batch.is_empty() {
        return Ok(());
    }
    client
        .database(&open.db)
        .collection::<RawDocumentBuf>(&open.collection)
        .insert_many(std::mem::take(&mut open.batch))
        .await
        .map_err(|e| {
            mongo_err(
                e,
                &format!("inserting into {}.{}", open.db, open.collection),
            )
        })?;
    open.batch_bytes = 0;
    Ok(())
}

/// Restores an archive; returns the version string of the target.
pub async fn restore(
    db: &DbArgs,
    secrets: &Secrets,
    input: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<String> {
    let client = connect(db, secrets).await?;
    let mut reader = Reader::new(input);
    let mut open: Option<Open> = None;
    let (mut collections, mut documents) = (0i64, 0i64);
    while let Some((tag, raw)) = reader.next().await.map_err(archive_err)? {
        match tag {
            Tag::Header => {
                if open.is_some() {
                    return Err(corrupt("a header inside a collection"));
                }
                let h = raw.to_document().map_err(|_| corrupt("bad header"))?;
                let name = h.get_str("db").map_err(|_| corrupt("header without db"))?;
                let coll = h
                    .get_str("collection")
                    .map_err(|_| corrupt("header without collection"))?;
                let database = client.database(name);
                database
                    .collection::<Document>(coll)
                    .drop()
                    .await
                    .map_err(|e| mongo_err(e, &format!("dropping {name}.{coll}")))?;
                let mut create = doc! {"create": coll};
                if let Ok(options) = h.get_document("options") {
                    create.extend(options.clone());
                }
                database
                    .run_command(create)
                    .await
                    .map_err(|e| mongo_err(e, &format!("creating {name}.{coll}")))?;
                open = Some(Open {
                    db: name.to_owned(),
                    collection: coll.to_owned(),
                    indexes: h.get_array("indexes").cloned().unwrap_or_default(),
                    batch: Vec::new(),
                    batch_bytes: 0,
                    count: 0,
                });
            }
            Tag::Document => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| corrupt("a document outside a collection"))?;
                o.batch_bytes += raw.as_bytes().len();
                o.batch.push(raw);
                o.count += 1;
                if o.batch.len() >= BATCH_DOCS || o.batch_bytes >= BATCH_BYTES {
                    flush(&client, o).await?;
                }
            }
            Tag::End => {
                let mut o = open
                    .take()
                    .ok_or_else(|| corrupt("an end outside a collection"))?;
                let e = raw.to_document().map_err(|_| corrupt("bad end"))?;
                if e.get_i64("count").ok() != Some(o.count) {
                    return Err(corrupt(&format!(
                        "{}.{}: {} documents, the archive says {:?}",
                        o.db,
                        o.collection,
                        o.count,
                        e.get_i64("count").ok()
                    )));
                }
                flush(&client, &mut o).await?;
                if !o.indexes.is_empty() {
                    client
                        .database(&o.db)
                        .run_command(
                            doc! {"createIndexes": &o.collection, "indexes": o.indexes.clone()},
                        )
                        .await
                        .map_err(|e| {
                            mongo_err(e, &format!("creating indexes on {}.{}", o.db, o.collection))
                        })?;
                }
                collections += 1;
                documents += o.count;
            }
            Tag::Trailer => {
                if open.is_some() {
                    return Err(corrupt("the trailer inside a collection"));
                }
                let t = raw.to_document().map_err(|_| corrupt("bad trailer"))?;
                if t.get_i64("collections").ok() != Some(collections)
                    || t.get_i64("documents").ok() != Some(documents)
                {
                    return Err(corrupt("the trailer's totals disagree"));
                }
            }
        }
    }
    server_version(&client).await
}

/// Documents per `db.collection` of every user collection.
pub async fn row_counts(db: &DbArgs, secrets: &Secrets) -> Result<BTreeMap<String, u64>> {
    let client = connect(db, secrets).await?;
    let mut out = BTreeMap::new();
    for name in user_databases(&client).await? {
        let database = client.database(&name);
        for (coll, _) in collections(&database).await? {
            let n = database
                .collection::<Document>(&coll)
                .count_documents(doc! {})
                .await
                .map_err(|e| mongo_err(e, &format!("counting {name}.{coll}")))?;
            out.insert(format!("{name}.{coll}"), n);
        }
    }
    Ok(out)
}

/// Non-system databases.
pub async fn user_data(db: &DbArgs, secrets: &Secrets) -> Result<Vec<String>> {
    let client = connect(db, secrets).await?;
    Ok(user_databases(&client)
        .await?
        .into_iter()
        .map(|d| format!("database {d:?}"))
        .collect())
}
