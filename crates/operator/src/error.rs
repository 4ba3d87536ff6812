//! Errors of the controllers, typed so the error policy and metrics can tell
//! them apart.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {}", describe(.0))]
    Kube(#[from] kube::Error),

    /// An object read from the API server lacks a field the API guarantees.
    #[error("object is missing {0}")]
    MissingField(&'static str),

    /// Cleanup on deletion failed; retried until the deadline.
    #[error("cleanup failed: {0}")]
    Cleanup(String),

    /// A database server refused or failed what the operator asked of it
    /// (passwords already cut out of the message).
    #[error("the database: {0}")]
    Engine(String),

    /// A failure in one step of a reconcile, naming the object it concerned
    /// (`applying StatefulSet shop/orders: …`). Its kind is its cause's.
    #[error("{step} {object}: {source}")]
    Step {
        step: &'static str,
        object: String,
        source: Box<Error>,
    },
}

impl Error {
    /// Every value [`Error::kind`] can return: the `kind` label of the
    /// errors metric is this small, fixed set, so series never multiply.
    pub const KINDS: [&'static str; 8] = [
        "api_conflict",
        "api_forbidden",
        "api_refused",
        "api_unavailable",
        "transport",
        "missing_field",
        "cleanup",
        "engine",
    ];

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Step { source, .. } => source.kind(),
            // Another writer got there first: retried, normal in small doses.
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "api_conflict",
            // The server is overloaded or failing.
            Error::Kube(kube::Error::Api(status)) if status.code == 429 || status.code >= 500 => {
                "api_unavailable"
            }
            // RBAC or authentication: the operator's role lacks something.
            Error::Kube(kube::Error::Api(status)) if matches!(status.code, 401 | 403) => {
                "api_forbidden"
            }
            // The request itself was refused (validation, not found, gone).
            Error::Kube(kube::Error::Api(_)) => "api_refused",
            Error::Kube(_) => "transport",
            Error::MissingField(_) => "missing_field",
            Error::Cleanup(_) => "cleanup",
            Error::Engine(_) => "engine",
        }
    }
}

/// A database server's refusal or failure, its message already redacted.
impl From<crate::users::UserError> for Error {
    fn from(error: crate::users::UserError) -> Self {
        Error::Engine(error.to_string())
    }
}

/// The finalizer helper's error, as ours.
impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
            F::UnnamedObject => Error::MissingField("metadata.name"),
            F::InvalidFinalizer => Error::MissingField("a valid finalizer name"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The client error underneath any step context.
    pub fn as_kube(&self) -> Option<&kube::Error> {
        match self {
            Error::Kube(error) => Some(error),
            Error::Step { source, .. } => source.as_kube(),
            _ => None,
        }
    }
}

/// Names the step and the object of a failure: `.step("applying", child)`.
pub trait StepContext<T> {
    fn step(self, step: &'static str, object: impl std::fmt::Display) -> Result<T>;

    /// [`StepContext::step`] for a stage of several steps: a failure that
    /// already names its step keeps it; any other is named by the stage.
    fn within(self, stage: &'static str, object: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> StepContext<T> for std::result::Result<T, E> {
    fn step(self, step: &'static str, object: impl std::fmt::Display) -> Result<T> {
        self.map_err(|error| Error::Step {
            step,
            object: object.to_string(),
            source: Box::new(error.into()),
        })
    }

    fn within(self, stage: &'static str, object: impl std::fmt::Display) -> Result<T> {
        self.map_err(|error| match error.into() {
            named @ Error::Step { .. } => named,
            bare => Error::Step {
                step: stage,
                object: object.to_string(),
                source: Box::new(bare),
            },
        })
    }
}

/// Whether the API server said the object does not exist (404).
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether the API server refused a write because another got there first
/// (409: the object exists, or changed since it was read).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether an API error means the request itself is wrong (so retrying the
/// same spec cannot help) rather than the server being unavailable.
pub fn is_permanent(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 422))
}

/// A one-line description of a client error: the API server's own message
/// for API errors, rather than the whole debug dump of the response.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_names_a_bare_failure_and_keeps_a_named_one() {
        let bare: Result<()> = Err(Error::MissingField("metadata.uid"));
        let named = bare.within("writing the status of", "shop/orders");
        assert_eq!(
            named.as_ref().unwrap_err().to_string(),
            "writing the status of shop/orders: object is missing metadata.uid"
        );
        let again = named.within("the replication step of", "shop/orders");
        assert_eq!(
            again.unwrap_err().to_string(),
            "writing the status of shop/orders: object is missing metadata.uid"
        );
    }

    fn api(code: u16) -> Error {
        let mut status = kube::core::Status::failure("refused", "Test");
        status.code = code;
        Error::Kube(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn a_step_names_its_object_and_keeps_its_causes_kind() {
        let error = Err::<(), _>(api(422))
            .step("applying", "StatefulSet shop/orders")
            .unwrap_err();
        assert_eq!(error.kind(), "api_refused");
        assert!(
            error
                .to_string()
                .starts_with("applying StatefulSet shop/orders: Kubernetes API: refused")
        );
        assert!(error.as_kube().is_some_and(is_permanent));
    }

    #[test]
    fn every_kind_is_in_the_fixed_label_set() {
        let cases = [
            (api(409), "api_conflict"),
            (api(403), "api_forbidden"),
            (api(401), "api_forbidden"),
            (api(404), "api_refused"),
            (api(422), "api_refused"),
            (api(429), "api_unavailable"),
            (api(503), "api_unavailable"),
            (Error::MissingField("metadata.name"), "missing_field"),
            (Error::Cleanup("volumes".into()), "cleanup"),
            (
                Err::<(), _>(api(409))
                    .step("applying", "StatefulSet a/b")
                    .unwrap_err(),
                "api_conflict",
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert!(Error::KINDS.contains(&kind));
        }
    }
}
