//! `manifest.json`: what a complete backup holds. Written last; a backup
//! without one is incomplete and is never restored.
//!
//! ```json
//! {
//!   "formatVersion": 1,
//!   "engine": "postgresql",
//!   "serverVersion": "15.8 (Debian 15.8-0+deb12u1)",
//!   "dumpTool": "pg_dumpall (PostgreSQL) 15.8",
//!   "databases": ["orders", "postgres"],
//!   "object": "backups/orders/20250101T020000Z/dump.sql.zst",
//!   "sizeBytes": 123456,
//!   "sha256": "<hex of the stored object>",
//!   "uncompressedBytes": 987654,
//!   "compression": "zstd",
//!   "startTime": "2025-01-01T02:00:00Z",
//!   "completionTime": "2025-01-01T02:03:10Z",
//!   "operatorVersion": "0.1.0",
//!   "rowCounts": {"orders.public.invoices": 5000},
//!   "rowCountMethod": "…what the counts mean…"
//! }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AgentError, Result};
use database_operator_api::v1::Engine;

/// The manifest format this agent writes; it refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// The compression of every dump object.
pub const COMPRESSION: &str = "zstd";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub engine: Engine,
    pub server_version: String,
    #[serde(default)]
    pub dump_tool: String,
    pub databases: Vec<String>,
    /// Key of the dump object in the bucket.
    pub object: String,
    /// Size of the stored (compressed) object.
    pub size_bytes: u64,
    /// SHA-256 (hex) of the stored object.
    pub sha256: String,
    /// Size of the dump before compression.
    #[serde(default)]
    pub uncompressed_bytes: u64,
    pub compression: String,
    /// RFC 3339.
    pub start_time: String,
    /// RFC 3339: when the dump object was complete.
    pub completion_time: String,
    pub operator_version: String,
    /// Rows per table (`db.schema.table` for PostgreSQL, `db.table` for
    /// MySQL, `db.collection` for MongoDB).
    #[serde(default)]
    pub row_counts: BTreeMap<String, u64>,
    /// What the counts mean (when and how they were taken).
    #[serde(default)]
    pub row_count_method: String,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serialises")
    }

    /// Parses and checks a manifest read from the bucket.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| AgentError::Integrity(format!("manifest.json is not valid: {e}")))?;
        if m.format_version > FORMAT_VERSION || m.format_version == 0 {
            return Err(AgentError::Integrity(format!(
                "manifest format version {} is not supported by this agent (supports {FORMAT_VERSION})",
                m.format_version
            )));
        }
        if m.compression != COMPRESSION {
            return Err(AgentError::Integrity(format!(
                "compression {:?} is not supported (only {COMPRESSION})",
                m.compression
            )));
        }
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AgentError::Integrity(
                "manifest.json has no valid sha256".into(),
            ));
        }
        Ok(m)
    }

    pub fn completion(&self) -> Option<jiff::Timestamp> {
        self.completion_time.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            engine: Engine::Postgresql,
            server_version: "15.8".into(),
            dump_tool: "pg_dumpall (PostgreSQL) 15.8".into(),
            databases: vec!["app".into(), "postgres".into()],
            object: "p/k/dump.sql.zst".into(),
            size_bytes: 42,
            sha256: "a".repeat(64),
            uncompressed_bytes: 100,
            compression: COMPRESSION.into(),
            start_time: "2025-01-01T02:00:00Z".into(),
            completion_time: "2025-01-01T02:03:10Z".into(),
            operator_version: env!("CARGO_PKG_VERSION").into(),
            row_counts: [("app.public.t".to_owned(), 5)].into(),
            row_count_method: "exact".into(),
        }
    }

    #[test]
    fn round_trips_with_camel_case_fields() {
        let m = sample();
        let json = m.to_json();
        for field in [
            "\"formatVersion\": 1",
            "\"engine\": \"postgresql\"",
            "\"serverVersion\"",
            "\"sizeBytes\": 42",
            "\"sha256\"",
            "\"compression\": \"zstd\"",
            "\"startTime\"",
            "\"completionTime\"",
            "\"operatorVersion\"",
            "\"rowCounts\"",
            "\"databases\"",
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        assert_eq!(m.completion().unwrap().to_string(), "2025-01-01T02:03:10Z");
    }

    #[test]
    fn refuses_newer_formats_and_garbage() {
        let mut m = sample();
        m.format_version = FORMAT_VERSION + 1;
        assert!(matches!(
            Manifest::from_json(m.to_json().as_bytes()),
            Err(AgentError::Integrity(_))
        ));
        let mut m = sample();
        m.sha256 = "xyz".into();
        assert!(Manifest::from_json(m.to_json().as_bytes()).is_err());
        assert!(Manifest::from_json(b"{\"formatVersion\":1").is_err());
        assert!(Manifest::from_json(b"not json").is_err());
    }

    #[test]
    fn older_optional_fields_default() {
        let json = r#"{"formatVersion":1,"engine":"mongodb","serverVersion":"7.0.0",
            "databases":[],"object":"k/dump.archive.zst","sizeBytes":1,
            "sha256":"0000000000000000000000000000000000000000000000000000000000000000",
            "compression":"zstd","startTime":"2025-01-01T00:00:00Z",
            "completionTime":"2025-01-01T00:00:01Z","operatorVersion":"0.1.0"}"#;
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        assert!(m.row_counts.is_empty());
        assert_eq!(m.engine, Engine::Mongodb);
    }
}
