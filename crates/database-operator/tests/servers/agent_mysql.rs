//! `database-operator agent` against real MariaDB 10.11 servers (via
//! `mariadb-dump` and `mariadb`) and a real S3 server.

use mysql_async::prelude::Queryable;
use testkit::agent_cli::{Bucket, agent, env_for};
use testkit::servers::Mariadb;

async fn fill(db: &Mariadb) {
    let mut c = db.connect().await.unwrap();
    c.query_drop(
        r"CREATE DATABASE shop CHARACTER SET utf8mb4;
          CREATE DATABASE `weird-name` CHARACTER SET utf8mb4;
          CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(200) NOT NULL,
              email VARCHAR(200) NULL, note TEXT NULL, created DATETIME(6) NULL) ENGINE=InnoDB;
          CREATE TABLE shop.blobs (id INT PRIMARY KEY, data VARBINARY(64) NOT NULL, big LONGBLOB NULL) ENGINE=InnoDB;
          CREATE TABLE shop.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL,
              amount DECIMAL(12,2), doc JSON NULL, INDEX (customer)) ENGINE=InnoDB;
          CREATE TABLE shop.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT) ENGINE=InnoDB;
          CREATE TRIGGER shop.orders_audit AFTER INSERT ON shop.orders FOR EACH ROW
              INSERT INTO shop.audit (order_id) VALUES (NEW.id);
          CREATE PROCEDURE shop.total(OUT t DECIMAL(20,2)) SELECT SUM(amount) INTO t FROM shop.orders;
          CREATE TABLE `weird-name`.`tab le` (id INT PRIMARY KEY, v VARCHAR(50)) ENGINE=InnoDB;",
    )
    .await
    .unwrap();
    c.query_drop(
        r"USE shop;
          INSERT INTO shop.customers
            SELECT seq, CONCAT('Kunde ', seq, ' — naïve café ☃ 日本語 🎉'),
                   IF(seq % 7 = 0, NULL, CONCAT('c', seq, '@example.com')),
                   IF(seq % 3 = 0, NULL, CONCAT(REPEAT('x', seq % 50), '\t\n\\''')),
                   IF(seq % 5 = 0, NULL, TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE)
            FROM seq_1_to_5000;
          INSERT INTO shop.blobs
            SELECT seq, UNHEX(CONCAT(MD5(seq), '00FF')), IF(seq % 2 = 0, NULL, UNHEX('000102FFFE0A0D5C27'))
            FROM seq_1_to_3000;
          INSERT INTO shop.orders (customer, amount, doc)
            SELECT 1 + seq % 5000, seq * 1.25, IF(seq % 4 = 0, NULL, JSON_OBJECT('k', seq, 'emoji', '🎉'))
            FROM seq_1_to_4000;
          INSERT INTO `weird-name`.`tab le` SELECT seq, CONCAT('ü', seq) FROM seq_1_to_1000;",
    )
    .await
    .unwrap();
}

type Rows = Vec<(String, Vec<Vec<mysql_async::Value>>)>;

async fn snapshot(db: &Mariadb) -> Rows {
    let mut c = db.connect().await.unwrap();
    let tables: Vec<(String, String)> = c
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables
             WHERE table_type = 'BASE TABLE'
               AND table_schema NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema')
             ORDER BY 1, 2",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for (schema, table) in tables {
        let rows: Vec<mysql_async::Row> = c
            .query(format!("SELECT * FROM `{schema}`.`{table}` ORDER BY 1"))
            .await
            .unwrap();
        let rows = rows.into_iter().map(mysql_async::Row::unwrap).collect();
        out.push((format!("{schema}.{table}"), rows));
    }
    out
}

#[tokio::test]
async fn mysql_backup_restore_verify_round_trip() {
    let bucket = Bucket::start().await;
    let source = Mariadb::start().await.unwrap();
    fill(&source).await;
    let before = snapshot(&source).await;
    assert_eq!(before.len(), 5);
    assert_eq!(
        before.iter().map(|t| t.1.len()).sum::<usize>(),
        5000 + 3000 + 4000 + 4000 + 1000
    );

    let run = bucket
        .on(&source, "mysql")
        .run("backup", &["--key-name", "m1"])
        .await
        .ok();
    let result = run.json();
    assert_eq!(
        result["location"],
        format!("s3://{}/mysql/m1/dump.sql.zst", testkit::agent_cli::BUCKET)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("mysql/m1/manifest.json").await).unwrap();
    assert_eq!(manifest["engine"], "mysql");
    assert!(
        manifest["serverVersion"]
            .as_str()
            .unwrap()
            .contains("MariaDB")
    );
    assert!(manifest["dumpTool"].as_str().unwrap().contains("MariaDB"));
    assert_eq!(
        manifest["databases"],
        serde_json::json!(["shop", "weird-name"])
    );
    assert_eq!(manifest["rowCounts"]["shop.customers"], 5000);
    assert_eq!(manifest["rowCounts"]["weird-name.tab le"], 1000);
    assert_eq!(manifest["sha256"], result["sha256"]);

    // A fresh server: equal rows, its root password untouched, routines
    // and triggers back.
    let target = Mariadb::start().await.unwrap();
    bucket
        .on(&target, "mysql")
        .run("restore", &["--key-name", "m1"])
        .await
        .ok();
    assert_eq!(snapshot(&target).await, before);
    let mut c = target
        .connect()
        .await
        .expect("the target's root password still works");
    c.query_drop("FLUSH PRIVILEGES").await.unwrap();
    drop(c);
    let mut c = target.connect().await.expect("and after FLUSH PRIVILEGES");
    c.query_drop("INSERT INTO shop.orders (customer, amount) VALUES (1, 1.00)")
        .await
        .unwrap();
    let audited: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM shop.audit")
        .await
        .unwrap();
    assert_eq!(audited, Some(4001), "the trigger was restored");
    c.query_drop("CALL shop.total(@t)").await.unwrap();
    drop(c);

    // Verify into another fresh server.
    let drill = Mariadb::start().await.unwrap();
    let v = bucket
        .on(&drill, "mysql")
        .run("verify", &["--key-name", "m1"])
        .await
        .ok()
        .json();
    assert_eq!(v["verified"], true);
    assert_eq!(v["rows"], 17_000);

    // Non-empty target: refused, then --force.
    bucket
        .on(&target, "mysql")
        .run("restore", &["--key-name", "m1"])
        .await
        .failed(6, "already holds user data");
    bucket
        .on(&target, "mysql")
        .run("restore", &["--key-name", "m1", "--force"])
        .await
        .ok();
    assert_eq!(snapshot(&target).await, before);

    // Wrong password: named as the database's refusal.
    agent(
        &bucket
            .on(&source, "mysql")
            .args("backup", &["--key-name", "m2"]),
        &env_for(&bucket, source.admin_user(), "wrong-password"),
    )
    .await
    .failed(4, "the database refused the login");
}
