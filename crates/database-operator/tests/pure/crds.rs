//! The generated CRDs: committed copies must not drift, and the Database CRD
//! must carry every field, enum, pattern, default, subresource and printer
//! column of the seed's CRD.

use database_operator_api::v1;
use testkit::fixtures;

use serde_json::Value;

fn database_crd() -> Value {
    serde_json::to_value(v1::crds().remove(0)).unwrap()
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

/// Every generated file under deploy/ (the CRDs from the types, the RBAC
/// from `operator::rbac`) matches the code.
#[test]
fn committed_manifests_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let files = operator::crd::generated_files();
    assert!(
        files
            .iter()
            .any(|(p, _)| p == "deploy/operator/clusterrole.yaml")
    );
    assert!(
        files
            .iter()
            .any(|(p, _)| p == "charts/database-operator/templates/_rules.tpl")
    );
    for dir in ["deploy/crds/", "charts/database-operator/crds/"] {
        assert_eq!(
            files.iter().filter(|(p, _)| p.starts_with(dir)).count(),
            4,
            "{dir}"
        );
    }
    for (path, contents) in files {
        let committed = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
        assert!(
            committed == contents,
            "{path} is out of date: run `make manifests` (cargo run -p database-operator -- manifests)"
        );
    }
}

#[test]
fn database_crd_has_the_seeds_names_scope_and_version() {
    let crd = database_crd();
    assert_eq!(at(&crd, "metadata.name"), "databases.example.com");
    assert_eq!(at(&crd, "spec.group"), "example.com");
    assert_eq!(at(&crd, "spec.scope"), "Namespaced");
    assert_eq!(at(&crd, "spec.names.kind"), "Database");
    assert_eq!(at(&crd, "spec.names.plural"), "databases");
    assert_eq!(at(&crd, "spec.names.singular"), "database");
    assert_eq!(at(&crd, "spec.names.listKind"), "DatabaseList");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
}

#[test]
fn database_spec_has_every_seed_field_with_its_validation() {
    let crd = database_crd();
    let spec = at(
        &crd["spec"]["versions"][0],
        "schema.openAPIV3Schema.properties.spec",
    );
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        required.contains(&"engine") && required.contains(&"version"),
        "{required:?}"
    );
    let p = &spec["properties"];
    assert_eq!(
        p["engine"]["enum"],
        serde_json::json!(["postgresql", "mysql", "mongodb"])
    );
    assert_eq!(p["version"]["pattern"], r"^[0-9]+\.[0-9]+(\.[0-9]+)?$");
    assert_eq!(p["replicas"]["type"], "integer");
    assert_eq!(p["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(p["replicas"]["maximum"].as_f64(), Some(10.0));
    assert_eq!(p["replicas"]["default"], 1);
    assert_eq!(p["storage"]["required"], serde_json::json!(["size"]));
    assert_eq!(
        p["storage"]["properties"]["size"]["pattern"],
        "^[0-9]+[KMGT]i?$"
    );
    assert_eq!(p["storage"]["properties"]["storageClass"]["type"], "string");
    let backup = &p["backup"]["properties"];
    assert_eq!(backup["enabled"]["type"], "boolean");
    assert_eq!(backup["enabled"]["default"], false);
    assert_eq!(
        backup["schedule"]["pattern"],
        v1::database::SCHEDULE_PATTERN
    );
    assert_eq!(backup["retention"]["type"], "string");
    let s3 = &backup["destination"]["properties"]["s3"]["properties"];
    assert_eq!(s3["bucket"]["type"], "string");
    assert_eq!(s3["region"]["type"], "string");
    let monitoring = &p["monitoring"]["properties"];
    assert_eq!(monitoring["enabled"]["type"], "boolean");
    assert_eq!(monitoring["alerting"]["type"], "boolean");
}

#[test]
fn database_status_has_every_seed_field() {
    let crd = database_crd();
    let status = at(
        &crd["spec"]["versions"][0],
        "schema.openAPIV3Schema.properties.status.properties",
    );
    assert_eq!(
        status["phase"]["enum"],
        serde_json::json!([
            "Pending", "Creating", "Running", "Scaling", "Updating", "Failed", "Deleting"
        ])
    );
    let condition = &status["conditions"]["items"];
    let mut required: Vec<&str> = condition["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["status", "type"]);
    assert_eq!(
        condition["properties"]["status"]["enum"],
        serde_json::json!(["True", "False", "Unknown"])
    );
    assert_eq!(
        condition["properties"]["lastTransitionTime"]["format"],
        "date-time"
    );
    for field in ["reason", "message", "type"] {
        assert_eq!(condition["properties"][field]["type"], "string", "{field}");
    }
    assert_eq!(
        status["endpoints"]["properties"]["primary"]["type"],
        "string"
    );
    assert_eq!(
        status["endpoints"]["properties"]["readonly"]["type"],
        "array"
    );
    assert_eq!(
        status["endpoints"]["properties"]["readonly"]["items"]["type"],
        "string"
    );
    assert_eq!(status["observedGeneration"]["type"], "integer");
    assert_eq!(status["replicas"]["type"], "integer");
    assert_eq!(status["readyReplicas"]["type"], "integer");
}

#[test]
fn database_has_status_and_scale_subresources_and_the_seeds_printer_columns() {
    let crd = database_crd();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(
        version["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert_eq!(
        version["subresources"]["scale"]["statusReplicasPath"],
        ".status.replicas"
    );
    assert_eq!(
        version["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    let columns: Vec<(String, String, String)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
                c["jsonPath"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("Engine", "string", ".spec.engine"),
        ("Version", "string", ".spec.version"),
        ("Replicas", "integer", ".spec.replicas"),
        ("Phase", "string", ".status.phase"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn every_crd_is_namespaced_in_example_com_v1_with_a_database_ref() {
    for crd in v1::crds().into_iter().skip(1) {
        let crd = serde_json::to_value(crd).unwrap();
        assert_eq!(crd["spec"]["group"], "example.com");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["databaseRef"]["required"],
            serde_json::json!(["name"]),
            "{}",
            crd["metadata"]["name"]
        );
    }
}

#[test]
fn seed_samples_parse_and_match_the_seed_patterns() {
    let version = regex::Regex::new(v1::database::VERSION_PATTERN).unwrap();
    let size = regex::Regex::new(v1::database::STORAGE_SIZE_PATTERN).unwrap();
    let schedule = regex::Regex::new(v1::database::SCHEDULE_PATTERN).unwrap();
    for file in [
        "postgres-sample.yaml",
        "test-postgres.yaml",
        "e2e-test-db.yaml",
        "postgresql-sample.yaml",
        "mysql-sample.yaml",
        "mariadb-sample.yaml",
        "mongodb-sample.yaml",
    ] {
        let db = fixtures::sample(file);
        assert!(version.is_match(&db.spec.version), "{file}");
        assert!(size.is_match(&db.spec.storage.size), "{file}");
        assert!((1..=10).contains(&db.spec.replicas), "{file}");
        if let Some(s) = db.spec.backup.as_ref().and_then(|b| b.schedule.as_ref()) {
            assert!(schedule.is_match(s), "{file}");
        }
    }
    let e2e = fixtures::sample("e2e-test-db.yaml");
    assert_eq!(
        (e2e.spec.replicas, e2e.spec.storage.size.as_str()),
        (2, "2Gi")
    );
    let backup = e2e.spec.backup.unwrap();
    assert_eq!(
        (
            backup.enabled,
            backup.schedule.as_deref(),
            backup.retention.as_deref()
        ),
        (true, Some("0 2 * * *"), Some("7d"))
    );
}

#[test]
fn user_samples_parse_as_database_users() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/samples/users");
    let mut users = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in text.split("\n---\n") {
            let value: Value = serde_saphyr::from_str(document).unwrap();
            if value["kind"] == "DatabaseUser" {
                let user: v1::user::DatabaseUser = serde_json::from_value(value).unwrap();
                assert!(!user.spec.privileges.is_empty());
                users += 1;
            }
        }
    }
    assert_eq!(users, 2);
}
