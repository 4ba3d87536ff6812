//! `database-operator agent` against real FerretDB 1.24 servers (the
//! MongoDB stand-in) and a real S3 server. No mongodump: the agent writes
//! its own archive with the driver.

use futures::TryStreamExt;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype};
use testkit::agent_cli::{Bucket, agent, env_for};
use testkit::servers::Ferret;

async fn fill(db: &Ferret) {
    let client = db.client().await.unwrap();
    let shop = client.database("shop");
    let customers: Vec<Document> = (1..=3000)
        .map(|i| {
            let mut d = doc! {
                "_id": i,
                "name": format!("Kunde {i} — naïve café ☃ 日本語 🎉"),
                "email": if i % 7 == 0 { Bson::Null } else { Bson::String(format!("c{i}@example.com")) },
                "tags": ["a", "ü"],
                "address": {"city": "Zürich", "zip": i.to_string()},
                "created": DateTime::from_millis(1_700_000_000_000 + i as i64),
                "score": i as f64 / 3.0,
            };
            if i % 3 == 0 {
                d.insert("bin", Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 255, (i % 256) as u8] });
            }
            d
        })
        .collect();
    shop.collection::<Document>("customers")
        .insert_many(customers)
        .await
        .unwrap();
    let orders: Vec<Document> = (1..=2500)
        .map(|i| doc! {"customer": 1 + i % 3000, "amount": i as i64 * 125, "note": if i % 2 == 0 { Bson::Null } else { Bson::String("line\nbreak\t".into()) }})
        .collect();
    shop.collection::<Document>("orders")
        .insert_many(orders)
        .await
        .unwrap();
    shop.run_command(doc! {"createIndexes": "orders", "indexes": [{"key": {"customer": 1}, "name": "by_customer"}]})
        .await
        .unwrap();
    shop.run_command(doc! {"create": "empty"}).await.unwrap();
    let logs = client.database("logs");
    let events: Vec<Document> = (0..1500)
        .map(|i| doc! {"_id": format!("e{i:05}"), "level": if i % 10 == 0 { "warn" } else { "info" }})
        .collect();
    logs.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
}

/// Every document of every user collection, sorted by _id.
async fn snapshot(db: &Ferret) -> Vec<(String, Vec<Document>)> {
    let client = db.client().await.unwrap();
    let mut names = client.list_database_names().await.unwrap();
    names.retain(|n| !["admin", "local", "config"].contains(&n.as_str()));
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let database = client.database(&name);
        let mut colls = database.list_collection_names().await.unwrap();
        colls.sort();
        for coll in colls {
            let docs: Vec<Document> = database
                .collection::<Document>(&coll)
                .find(doc! {})
                .sort(doc! {"_id": 1})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            out.push((format!("{name}.{coll}"), docs));
        }
    }
    out
}

async fn index_names(db: &Ferret, database: &str, coll: &str) -> Vec<String> {
    let client = db.client().await.unwrap();
    let mut names = client
        .database(database)
        .collection::<Document>(coll)
        .list_index_names()
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn mongodb_backup_restore_verify_round_trip() {
    let bucket = Bucket::start().await;
    let source = Ferret::start().await.unwrap();
    fill(&source).await;
    let before = snapshot(&source).await;
    assert_eq!(
        before
            .iter()
            .map(|t| (t.0.as_str(), t.1.len()))
            .collect::<Vec<_>>(),
        [
            ("logs.events", 1500),
            ("shop.customers", 3000),
            ("shop.empty", 0),
            ("shop.orders", 2500)
        ]
    );

    let result = bucket
        .on(&source, "mongo")
        .run("backup", &["--key-name", "g1"])
        .await
        .ok()
        .json();
    assert_eq!(
        result["location"],
        format!(
            "s3://{}/mongo/g1/dump.archive.zst",
            testkit::agent_cli::BUCKET
        )
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("mongo/g1/manifest.json").await).unwrap();
    assert_eq!(manifest["engine"], "mongodb");
    assert_eq!(manifest["databases"], serde_json::json!(["logs", "shop"]));
    assert_eq!(manifest["rowCounts"]["shop.customers"], 3000);
    assert_eq!(manifest["rowCounts"]["shop.empty"], 0);

    let target = Ferret::start().await.unwrap();
    bucket
        .on(&target, "mongo")
        .run("restore", &["--key-name", "g1"])
        .await
        .ok();
    assert_eq!(snapshot(&target).await, before);
    assert_eq!(
        index_names(&target, "shop", "orders").await,
        ["_id_", "by_customer"]
    );

    let drill = Ferret::start().await.unwrap();
    let v = bucket
        .on(&drill, "mongo")
        .run("verify", &["--key-name", "g1"])
        .await
        .ok()
        .json();
    assert_eq!(v["verified"], true);
    assert_eq!(v["rows"], 7000);

    // Non-empty: refused; --force replaces each collection.
    bucket
        .on(&target, "mongo")
        .run("restore", &["--key-name", "g1"])
        .await
        .failed(6, "already holds user data");
    let client = target.client().await.unwrap();
    client
        .database("shop")
        .collection::<Document>("orders")
        .delete_many(doc! {"amount": {"$gt": 1000}})
        .await
        .unwrap();
    bucket
        .on(&target, "mongo")
        .run("restore", &["--key-name", "g1", "--force"])
        .await
        .ok();
    assert_eq!(snapshot(&target).await, before);

    // Wrong password.
    agent(
        &bucket
            .on(&source, "mongo")
            .args("backup", &["--key-name", "g2"]),
        &env_for(&bucket, source.admin_user(), "wrong-password"),
    )
    .await
    .failed(4, "the database refused the login");
}
