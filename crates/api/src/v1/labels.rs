//! The label keys and values every object the operator creates carries.

/// `app.kubernetes.io/name`: the application, always [`APP_NAME`].
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the Database's name.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: which part of the database (database, backup, monitoring).
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/version`: the engine version.
pub const VERSION: &str = "app.kubernetes.io/version";
/// `app.kubernetes.io/managed-by`: always [`OPERATOR`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`: the engine (postgresql, mysql, mongodb).
pub const PART_OF: &str = "app.kubernetes.io/part-of";

/// The value of `app.kubernetes.io/name` on everything we create.
pub const APP_NAME: &str = "database";
/// The operator's name: the value of `managed-by`, its field manager for
/// server-side apply, and the reporter of its events.
pub const OPERATOR: &str = "database-operator";
