//! The S3 side: the object store, the object layout and what S3 errors mean.
//!
//! Layout under `--prefix` (leading and trailing `/` ignored):
//!
//! ```text
//! <prefix>/<key-name>/dump.sql.zst        PostgreSQL and MySQL (SQL script, zstd)
//! <prefix>/<key-name>/dump.archive.zst    MongoDB (agent archive, zstd)
//! <prefix>/<key-name>/manifest.json       written last: the backup is complete
//! ```

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::{AgentError, Result, S3Args};
use database_operator_api::v1::Engine;

pub const MANIFEST_FILE: &str = "manifest.json";

/// The bucket, the prefix and the store that reaches them.
#[derive(Clone, Debug)]
pub struct Store {
    pub store: Arc<dyn ObjectStore>,
    pub bucket: String,
    prefix: String,
}

impl Store {
    /// From the flags; credentials from the environment only.
    pub fn from_args(args: &S3Args) -> Result<Store> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&args.bucket)
            .with_region(&args.region)
            .with_virtual_hosted_style_request(!args.force_path_style)
            // The agent hashes the object itself and checks it against the
            // manifest at every restore; signing each part's SHA-256 as well
            // would hash every byte twice.
            .with_unsigned_payload(true)
            .with_retry(RetryConfig {
                max_retries: 10,
                retry_timeout: Duration::from_secs(args.s3_retry_timeout_seconds),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(endpoint) = args.endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let key = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty());
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty());
        match (key, secret) {
            (Some(k), Some(s)) => {
                builder = builder.with_access_key_id(k).with_secret_access_key(s);
                if let Ok(token) = std::env::var("AWS_SESSION_TOKEN")
                    && !token.is_empty()
                {
                    builder = builder.with_token(token);
                }
            }
            (None, None) => {
                // The pod's own identity (web identity token, container or
                // instance metadata), as object_store finds it in the
                // environment.
                for (k, v) in std::env::vars() {
                    let identity = matches!(
                        k.as_str(),
                        "AWS_WEB_IDENTITY_TOKEN_FILE"
                            | "AWS_ROLE_ARN"
                            | "AWS_ROLE_SESSION_NAME"
                            | "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
                            | "AWS_CONTAINER_CREDENTIALS_FULL_URI"
                            | "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
                    );
                    if identity && let Ok(key) = k.to_ascii_lowercase().parse() {
                        builder = builder.with_config(key, v);
                    }
                }
            }
            _ => {
                return Err(AgentError::Usage(
                    "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (pod identity)"
                        .into(),
                ));
            }
        }
        let store = builder
            .build()
            .map_err(|e| AgentError::Usage(format!("S3 configuration: {e}")))?;
        Ok(Store {
            store: Arc::new(store),
            bucket: args.bucket.clone(),
            prefix: normalize_prefix(&args.prefix),
        })
    }

    /// A store over anything (tests use the in-memory store).
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> Store {
        Store {
            store,
            bucket: bucket.to_owned(),
            prefix: normalize_prefix(prefix),
        }
    }

    /// `<prefix>/` or nothing: where every backup lives.
    pub fn root(&self) -> Option<Path> {
        (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()))
    }

    /// `<prefix>/<key>`.
    pub fn backup_dir(&self, key: &str) -> Path {
        match self.root() {
            Some(root) => root.clone().join(key),
            None => Path::from(key),
        }
    }

    pub fn manifest_path(&self, key: &str) -> Path {
        self.backup_dir(key).join(MANIFEST_FILE)
    }

    pub fn dump_path(&self, key: &str, engine: Engine) -> Path {
        self.backup_dir(key).join(dump_file_name(engine))
    }

    /// `s3://bucket/path`.
    pub fn location(&self, path: &Path) -> String {
        format!("s3://{}/{}", self.bucket, path)
    }

    /// The key a listed object belongs to, if it sits at `<prefix>/<key>/<file>`.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
        let skip = self.root().map_or(0, |r| r.parts().count());
        if parts.len() != skip + 2 {
            return None;
        }
        Some(parts[skip].clone())
    }
}

fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_matches('/').to_owned()
}

/// `dump.sql.zst` or `dump.archive.zst`.
pub fn dump_file_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgresql | Engine::Mysql => "dump.sql.zst",
        Engine::Mongodb => "dump.archive.zst",
    }
}

/// A key name is one path segment: letters, digits, `.`, `_`, `-`.
pub fn validate_key_name(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AgentError::Usage(format!(
            "--key-name {key:?}: use 1..128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// S3 error codes that mean the credentials were refused (with what to
/// check). S3 answers 403 for a wrong key id, a wrong secret and a denied
/// policy alike; some S3-compatible servers answer other statuses (versitygw:
/// 404 `XAdminUserNotFound` for an unknown key id), so the code decides.
const AUTH_CODES: &[(&str, &str)] = &[
    (
        "InvalidAccessKeyId",
        "the access key id is unknown: check AWS_ACCESS_KEY_ID",
    ),
    (
        "XAdminUserNotFound",
        "the access key id is unknown: check AWS_ACCESS_KEY_ID",
    ),
    (
        "SignatureDoesNotMatch",
        "the signature does not match: check AWS_SECRET_ACCESS_KEY",
    ),
    (
        "AccessDenied",
        "access denied: the key is valid but may not use this bucket/prefix",
    ),
    ("ExpiredToken", "the credentials expired"),
    ("InvalidToken", "the session token is invalid"),
];

/// `HTTP <status> <Code>: <Message>` from an S3 error, else the text.
fn concise(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].to_owned())
    };
    let status = text
        .split_once("status code: ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    match (tag("Code"), status) {
        (Some(code), status) => {
            let message = tag("Message").unwrap_or_default();
            let status = status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
            format!("{status}{code}: {message}")
        }
        (None, _) => shorten(text),
    }
}

/// What an S3 error means for the user.
pub fn s3_error(e: object_store::Error, what: &str) -> AgentError {
    let text = super::redact(&format!("{e}"));
    if let Some((_, hint)) = AUTH_CODES.iter().find(|(code, _)| text.contains(code)) {
        return AgentError::S3Auth(format!("{what}: {hint} ({})", concise(&text)));
    }
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => AgentError::S3Auth(format!(
            "{what}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({})",
            concise(&text)
        )),
        object_store::Error::NotFound { .. } if text.contains("NoSuchBucket") => AgentError::S3(
            format!("{what}: the bucket does not exist ({})", concise(&text)),
        ),
        object_store::Error::NotFound { .. } => {
            AgentError::S3(format!("{what}: not found ({})", concise(&text)))
        }
        _ => AgentError::S3(format!("{what}: {}", concise(&text))),
    }
}

/// True when the error is a plain "no such object" (not a refused
/// credential or a missing bucket dressed as a 404).
pub fn is_missing_object(e: &object_store::Error) -> bool {
    let text = e.to_string();
    matches!(e, object_store::Error::NotFound { .. })
        && !text.contains("NoSuchBucket")
        && !AUTH_CODES.iter().any(|(code, _)| text.contains(code))
}

fn shorten(s: &str) -> String {
    const MAX: usize = 600;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> Store {
        Store::new(Arc::new(object_store::memory::InMemory::new()), "b", prefix)
    }

    #[test]
    fn layout_under_a_prefix() {
        let s = store("/backups/orders/");
        assert_eq!(
            s.dump_path("k1", Engine::Postgresql).as_ref(),
            "backups/orders/k1/dump.sql.zst"
        );
        assert_eq!(
            s.dump_path("k1", Engine::Mongodb).as_ref(),
            "backups/orders/k1/dump.archive.zst"
        );
        assert_eq!(
            s.manifest_path("k1").as_ref(),
            "backups/orders/k1/manifest.json"
        );
        assert_eq!(
            s.location(&s.manifest_path("k1")),
            "s3://b/backups/orders/k1/manifest.json"
        );
        assert_eq!(
            s.key_of(&Path::from("backups/orders/k1/dump.sql.zst")),
            Some("k1".into())
        );
        assert_eq!(s.key_of(&Path::from("backups/orders/stray")), None);
        assert_eq!(s.key_of(&Path::from("backups/orders/a/b/c")), None);
    }

    #[test]
    fn layout_without_a_prefix() {
        let s = store("");
        assert_eq!(s.manifest_path("k").as_ref(), "k/manifest.json");
        assert_eq!(s.key_of(&Path::from("k/dump.sql.zst")), Some("k".into()));
    }

    #[test]
    fn s3_errors_are_short_and_name_the_credential() {
        let body = "Error performing GET http://h/b/k in 2ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?> <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message><StringToSign>AWS4…</StringToSign></Error>";
        assert_eq!(
            concise(body),
            "HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match."
        );
        let e = object_store::Error::NotFound {
            path: "k".into(),
            source: "status code: 404 <Code>XAdminUserNotFound</Code><Message>No user</Message>"
                .into(),
        };
        assert!(!is_missing_object(&e));
        let e = s3_error(e, "reading k");
        assert!(matches!(e, AgentError::S3Auth(_)), "{e}");
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = object_store::Error::NotFound {
            path: "k".into(),
            source: "status code: 404 <Code>NoSuchKey</Code>".into(),
        };
        assert!(is_missing_object(&e));
    }

    #[test]
    fn key_names() {
        for ok in ["20250101T020000Z", "nightly-1", "a.b_c"] {
            validate_key_name(ok).unwrap();
        }
        for bad in ["", "a/b", "..", ".hidden", "x y", "ü"] {
            assert!(validate_key_name(bad).is_err(), "{bad}");
        }
    }
}
