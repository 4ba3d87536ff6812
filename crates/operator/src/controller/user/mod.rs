//! The DatabaseUser controller: makes a login inside the Database's engine
//! match the spec, and keeps the credentials Secret(s) an application uses.

use std::collections::BTreeSet;
use std::sync::Arc;

use database_operator_api::v1::Database;
use database_operator_api::v1::condition::{Condition, set_condition, types};
use database_operator_api::v1::database::Phase;
use database_operator_api::v1::user::{
    DatabaseUser, DatabaseUserStatus, UserDeletionPolicy, UserPhase,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PartialObjectMeta, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use crate::apply::apply_if_changed;
use crate::apply::patch_params;
use crate::builders::credentials::{USER_LABEL, credentials_secret, secret_name, user_label_value};
use crate::builders::meta::Names;
use crate::builders::secret::generate_password;
use crate::controller::Context;
use crate::controller::shared::clock::now;
use crate::controller::shared::events::publish;
use crate::controller::shared::reconcile::{
    drive, error_policy, finalized, key, scoped_controller,
};
use crate::controller::shared::requeue;
use crate::controller::shared::stores::{fetch, referencing};
use crate::engine::{PASSWORD_KEY, USERNAME_KEY, driver_of};
use crate::error::{Error, Result, describe};
use crate::users::{Granted, Password, Target, UserError, UserSpec, login_admin};

/// The finalizer that drops the login before the DatabaseUser goes away.
pub(crate) const FINALIZER: &str = "example.com/databaseuser-cleanup";

/// Runs the DatabaseUser controller until shutdown.
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let scope = &ctx.settings.scope;
    let controller = scoped_controller::<DatabaseUser>(&ctx);
    ctx.health.track_store("databaseuser", controller.store());
    let users = controller.store();
    let by_database = users.clone();
    let by_password = users;
    let credentials = scope
        .watch::<PartialObjectMeta<Secret>>(
            &client,
            &watcher::Config::default().labels(USER_LABEL).any_semantic(),
            None,
        )
        .modify(|s| s.managed_fields_mut().clear())
        .touched_objects();
    let databases = scope.touched::<Database>(&client, &watcher::Config::default().any_semantic());
    // Only the password Secrets users name, which reconcile labels: never
    // a watch of every Secret, not even of their metadata.
    let passwords = scope.touched::<PartialObjectMeta<Secret>>(
        &client,
        &watcher::Config::default()
            .labels(PASSWORD_SECRET_LABEL)
            .any_semantic(),
    );
    let outcomes = controller
        .owns_stream(credentials)
        // A Database becoming Running (or going away) wakes its users.
        .watches_stream(databases, move |db| {
            referencing(&by_database, &db, |u| &u.spec.database_ref.name)
        })
        // A changed password Secret rotates the password.
        .watches_stream(passwords, move |secret| {
            let namespace = secret.namespace();
            by_password
                .state()
                .into_iter()
                .filter(|u| u.namespace() == namespace && names_password(u, &secret.name_any()))
                .map(|u| ObjectRef::from_obj(&*u))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx);
    drive(outcomes).await;
}

/// On the password Secrets that DatabaseUsers name: what the password
/// watch selects. Added when a user first reads the Secret, removed when
/// the last user naming it goes.
pub(crate) const PASSWORD_SECRET_LABEL: &str = "example.com/password-secret";

/// Whether `user` takes its password from the Secret `name`.
fn names_password(user: &DatabaseUser, name: &str) -> bool {
    user.spec
        .password_secret_ref
        .as_ref()
        .is_some_and(|r| r.name == name)
}

pub(crate) async fn reconcile(user: Arc<DatabaseUser>, ctx: Arc<Context>) -> Result<Action> {
    let ctx = &*ctx;
    finalized(
        "databaseuser",
        user,
        ctx,
        FINALIZER,
        |event, namespace| async move {
            match event {
                Finalizer::Apply(user) => apply(&user, ctx, &namespace).await,
                Finalizer::Cleanup(user) => cleanup(&user, ctx, &namespace).await,
            }
        },
    )
    .await
}

/// Why the login is not (yet) what the spec says.
enum Blocked {
    /// Something outside the spec must change first; retried with backoff.
    Waiting(&'static str, String),
    /// The spec cannot be realised as written.
    Failed(&'static str, String),
}

/// What a successful apply granted and from which password Secret version.
struct Realised {
    password_version: Option<String>,
    secret_namespaces: Vec<String>,
}

async fn apply(user: &DatabaseUser, ctx: &Context, namespace: &str) -> Result<Action> {
    let outcome = realise(user, ctx, namespace).await?;
    let previous = user.status.clone().unwrap_or_default();
    let mut status = DatabaseUserStatus {
        observed_generation: user.metadata.generation,
        ..previous.clone()
    };
    let now = now();
    let action = match &outcome {
        Ok(realised) => {
            status.phase = Some(UserPhase::Ready);
            status.secret_name = Some(secret_name(user));
            status.granted_privileges = user.spec.privileges.clone();
            status.granted_native_grants = user.spec.native_grants.clone();
            status.password_secret_version = realised.password_version.clone();
            status.secret_namespaces = realised.secret_namespaces.clone();
            let ready = Condition::new(
                types::READY,
                true,
                "UserReady",
                "the login matches the spec",
                user.metadata.generation,
            );
            set_condition(&mut status.conditions, ready, &now);
            ctx.backoff.reset(&key(user));
            Action::requeue(ctx.settings.resync)
        }
        Err(blocked) => {
            let (phase, reason, message, next) = match blocked {
                Blocked::Waiting(reason, message) => {
                    info!(user = %key(user), reason, %message, "waiting");
                    let next = ctx.backoff.next_delay(&key(user));
                    (UserPhase::Pending, reason, message, next)
                }
                Blocked::Failed(reason, message) => {
                    warn!(user = %key(user), reason, %message, "cannot realise the spec");
                    let next = requeue::AFTER_ENGINE_REFUSAL;
                    (UserPhase::Failed, reason, message, next)
                }
            };
            status.phase = Some(phase);
            let not_ready = Condition::new(
                types::READY,
                false,
                reason,
                message,
                user.metadata.generation,
            );
            set_condition(&mut status.conditions, not_ready, &now);
            Action::requeue(next)
        }
    };
    if status != previous {
        let api = Api::<DatabaseUser>::namespaced(ctx.client.clone(), namespace);
        let params = patch_params();
        api.patch_status(
            &user.name_any(),
            &params,
            &Patch::Merge(serde_json::json!({
                "status": crate::diff::merge_patch(Some(&previous), &status)?,
            })),
        )
        .await?;
        announce(user, ctx, &previous, &status, &outcome).await;
    }
    Ok(action)
}

async fn announce(
    user: &DatabaseUser,
    ctx: &Context,
    previous: &DatabaseUserStatus,
    status: &DatabaseUserStatus,
    outcome: &std::result::Result<Realised, Blocked>,
) {
    let rotated = previous.password_secret_version.is_some()
        && previous.password_secret_version != status.password_secret_version
        && status.phase == Some(UserPhase::Ready);
    let (kind, reason, note) = match outcome {
        _ if rotated => (
            EventType::Normal,
            "PasswordRotated",
            "set the new password from the password Secret".to_owned(),
        ),
        Ok(_) if previous.phase != Some(UserPhase::Ready) => (
            EventType::Normal,
            "Ready",
            format!("login {} matches the spec", user.spec.username),
        ),
        Err(Blocked::Failed(reason, message)) if previous.phase != Some(UserPhase::Failed) => {
            (EventType::Warning, *reason, message.clone())
        }
        _ => return,
    };
    publish(ctx, user, kind, reason, note).await;
}

/// Everything between reading the spec and a login that matches it.
async fn realise(
    user: &DatabaseUser,
    ctx: &Context,
    namespace: &str,
) -> Result<std::result::Result<Realised, Blocked>> {
    let db_name = &user.spec.database_ref.name;
    let Some(db) = Api::<Database>::namespaced(ctx.client.clone(), namespace)
        .get_opt(db_name)
        .await?
    else {
        return Ok(Err(Blocked::Waiting(
            "DatabaseNotFound",
            format!("Database {db_name} does not exist"),
        )));
    };
    let phase = db.status.as_ref().and_then(|s| s.phase);
    if phase != Some(Phase::Running) {
        let now = phase.map_or_else(|| "not started".into(), |p| p.to_string());
        return Ok(Err(Blocked::Waiting(
            "DatabaseNotReady",
            format!("waiting for Database {db_name} to be Running (now {now})"),
        )));
    }
    let not_allowed: Vec<&String> = user
        .spec
        .secret_namespaces
        .iter()
        .filter(|ns| ns.as_str() != namespace && !db.spec.user_secret_namespaces.contains(ns))
        .collect();
    if !not_allowed.is_empty() {
        return Ok(Err(Blocked::Failed(
            "NamespaceNotAllowed",
            format!(
                "spec.secretNamespaces: {not_allowed:?} not listed in Database {db_name}'s spec.userSecretNamespaces"
            ),
        )));
    }
    let unwatched: Vec<&String> = user
        .spec
        .secret_namespaces
        .iter()
        .filter(|ns| !ctx.settings.scope.contains(ns))
        .collect();
    if !unwatched.is_empty() {
        return Ok(Err(Blocked::Failed(
            "NamespaceNotWatched",
            format!(
                "spec.secretNamespaces: {unwatched:?} are outside the operator's {}; it holds no rights there",
                ctx.settings.scope
            ),
        )));
    }
    let engine = login_admin(db.spec.engine);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let own_secret = secrets.get_opt(&secret_name(user)).await?;
    let (password, password_version) =
        match password_of(user, &secrets, own_secret.as_ref()).await? {
            Ok(found) => found,
            Err(blocked) => return Ok(Err(blocked)),
        };
    let spec = UserSpec::of(&user.spec, &password);
    if let Err(error) = engine.validate(&spec) {
        return Ok(Err(Blocked::Failed("InvalidSpec", error.to_string())));
    }
    let target = match target_of(&db, ctx, namespace).await? {
        Ok(target) => target,
        Err(blocked) => return Ok(Err(blocked)),
    };
    let previous = user.status.clone().unwrap_or_default();
    let granted = Granted {
        privileges: &previous.granted_privileges,
        native_grants: &previous.granted_native_grants,
    };
    match engine.apply(&target, &spec, &granted).await {
        Ok(()) => {}
        Err(UserError::Unreachable(message)) => {
            return Ok(Err(Blocked::Waiting(
                "DatabaseUnreachable",
                stable(&message),
            )));
        }
        Err(UserError::Refused(message)) => {
            return Ok(Err(Blocked::Failed("Refused", stable(&message))));
        }
        Err(UserError::Invalid(message)) => {
            return Ok(Err(Blocked::Failed("InvalidSpec", stable(&message))));
        }
    }
    let secret_namespaces =
        deliver_credentials(user, &db, ctx, namespace, &password, own_secret.as_ref()).await?;
    info!(user = %key(user), "login matches the spec");
    Ok(Ok(Realised {
        password_version,
        secret_namespaces,
    }))
}

/// An engine's message without the parts that differ on every attempt
/// (memory addresses in FerretDB's errors, for one): a condition message
/// that changes each time would rewrite status on every reconcile, and each
/// write would trigger the next reconcile.
fn stable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits = rest[at + 2..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .count();
        out.push_str(if digits > 0 { "0x…" } else { "0x" });
        rest = &rest[at + 2 + digits..];
    }
    out.push_str(rest);
    out
}

/// The password to set, and the version of the Secret it came from (None
/// when the operator generated it).
async fn password_of(
    user: &DatabaseUser,
    secrets: &Api<Secret>,
    own_secret: Option<&Secret>,
) -> Result<std::result::Result<(Password, Option<String>), Blocked>> {
    if let Some(reference) = &user.spec.password_secret_ref {
        let Some(secret) = secrets.get_opt(&reference.name).await? else {
            return Ok(Err(Blocked::Waiting(
                "PasswordSecretNotFound",
                format!("Secret {} does not exist", reference.name),
            )));
        };
        let Some(value) = secret_value(&secret, &reference.key) else {
            return Ok(Err(Blocked::Failed(
                "PasswordKeyNotFound",
                format!(
                    "Secret {} has no non-empty key {}",
                    reference.name, reference.key
                ),
            )));
        };
        if !secret.labels().contains_key(PASSWORD_SECRET_LABEL) {
            label_password_secret(secrets, &reference.name, Some("true")).await?;
        }
        return Ok(Ok((Password::new(value), secret.resource_version())));
    }
    // A generated password lives in the credentials Secret; reuse it.
    let existing = own_secret.and_then(|s| secret_value(s, PASSWORD_KEY));
    Ok(Ok((
        Password::new(existing.unwrap_or_else(generate_password)),
        None,
    )))
}

/// Sets (`Some`) or removes (`None`) the label that puts the password
/// Secret `name` in the operator's watch. A merge patch, not an apply: a
/// Secret that is not there stays absent rather than made empty.
async fn label_password_secret(
    secrets: &Api<Secret>,
    name: &str,
    value: Option<&str>,
) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"labels": {PASSWORD_SECRET_LABEL: value}}});
    // A Secret that does not exist yet is labelled once it does: the
    // reconcile that waits for it runs again.
    crate::apply::patch_metadata(secrets, name, &patch).await?;
    Ok(())
}

/// Takes the watch label off the password Secret of `user` when no other
/// DatabaseUser in its namespace names that Secret.
async fn release_password_secret(
    user: &DatabaseUser,
    ctx: &Context,
    namespace: &str,
) -> Result<()> {
    let Some(reference) = &user.spec.password_secret_ref else {
        return Ok(());
    };
    let others = Api::<DatabaseUser>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    let still_named = others.items.iter().any(|other| {
        other.uid() != user.uid()
            && other.metadata.deletion_timestamp.is_none()
            && names_password(other, &reference.name)
    });
    if still_named {
        return Ok(());
    }
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    label_password_secret(&secrets, &reference.name, None).await
}

pub(crate) use crate::builders::secret::secret_value;

/// Where the primary answers and the admin credentials, or None while the
/// admin Secret has none.
pub(crate) async fn admin_target(
    db: &Database,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<Target>> {
    Ok(target_of(db, ctx, namespace).await?.ok())
}

/// Where the primary answers and the admin credentials to use there.
async fn target_of(
    db: &Database,
    ctx: &Context,
    namespace: &str,
) -> Result<std::result::Result<Target, Blocked>> {
    let names = Names(&db.name_any());
    let admin = fetch(
        &Api::<Secret>::namespaced(ctx.client.clone(), namespace),
        &names.secret(),
    )
    .await?;
    let credentials = admin.as_ref().and_then(|s| {
        Some((
            secret_value(s, USERNAME_KEY)?,
            secret_value(s, PASSWORD_KEY)?,
        ))
    });
    let Some((admin_user, admin_password)) = credentials else {
        return Ok(Err(Blocked::Waiting(
            "AdminSecretNotReady",
            format!("Secret {} has no admin credentials yet", names.secret()),
        )));
    };
    let engine = driver_of(&db.spec);
    let port = u16::try_from(engine.port()).expect("engine ports fit in u16");
    let (host, port) = ctx
        .settings
        .resolver
        .resolve(&names.primary(), namespace, port);
    Ok(Ok(Target {
        host,
        port,
        admin_user,
        admin_password: Password::new(admin_password),
        default_database: engine.maintenance_database().to_owned(),
    }))
}

/// Applies the credentials Secret in the user's namespace and each allowed
/// extra namespace, and removes copies from namespaces no longer listed.
async fn deliver_credentials(
    user: &DatabaseUser,
    db: &Database,
    ctx: &Context,
    namespace: &str,
    password: &Password,
    own_secret: Option<&Secret>,
) -> Result<Vec<String>> {
    let wanted: BTreeSet<String> = std::iter::once(namespace.to_owned())
        .chain(user.spec.secret_namespaces.iter().cloned())
        .collect();
    for target in &wanted {
        let secrets = Api::<Secret>::namespaced(ctx.client.clone(), target);
        let live = if target == namespace {
            own_secret.cloned()
        } else {
            secrets.get_opt(&secret_name(user)).await?
        };
        apply_if_changed(
            &secrets,
            credentials_secret(user, db, target, password),
            live.as_ref(),
        )
        .await?;
    }
    remove_copies(user, ctx, |ns| wanted.contains(ns)).await?;
    Ok(wanted.into_iter().filter(|ns| ns != namespace).collect())
}

/// Deletes the credentials copies of `user` in namespaces where `keep` is false.
async fn remove_copies(
    user: &DatabaseUser,
    ctx: &Context,
    keep: impl Fn(&str) -> bool,
) -> Result<()> {
    let selector = format!("{USER_LABEL}={}", user_label_value(user));
    let mut copies = Vec::new();
    for api in ctx.settings.scope.apis::<Secret>(&ctx.client) {
        copies.extend(
            api.list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items,
        );
    }
    for copy in copies {
        let copy_namespace = copy.namespace().unwrap_or_default();
        if keep(&copy_namespace) {
            continue;
        }
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &copy_namespace);
        crate::apply::delete(&api, &copy.name_any()).await?;
    }
    Ok(())
}

/// Drops the login (unless the policy keeps it) and removes copies of the
/// credentials in other namespaces. Past the deadline it lets go and says
/// what it left behind.
async fn cleanup(user: &DatabaseUser, ctx: &Context, namespace: &str) -> Result<Action> {
    let dropped = match drop_login(user, ctx, namespace).await {
        Ok(note) => note,
        Err(message)
            if crate::controller::database::cleanup::past_deadline(
                user.meta(),
                ctx.settings.cleanup_deadline,
            ) =>
        {
            let note = format!(
                "gave up dropping login {} after {:?}: {message}; it is left in the database",
                user.spec.username, ctx.settings.cleanup_deadline
            );
            publish(
                ctx,
                user,
                EventType::Warning,
                "CleanupAbandoned",
                note.clone(),
            )
            .await;
            note
        }
        Err(message) => return Err(Error::Cleanup(message)),
    };
    remove_copies(user, ctx, |_| false).await?;
    release_password_secret(user, ctx, namespace).await?;
    info!(user = %key(user), %dropped, "cleaned up");
    Ok(Action::await_change())
}

/// Drops the login; returns what happened, or why it could not.
async fn drop_login(
    user: &DatabaseUser,
    ctx: &Context,
    namespace: &str,
) -> std::result::Result<String, String> {
    if user.spec.deletion_policy == UserDeletionPolicy::Keep {
        return Ok("deletionPolicy is Keep: the login stays".into());
    }
    let db_name = &user.spec.database_ref.name;
    let db = Api::<Database>::namespaced(ctx.client.clone(), namespace)
        .get_opt(db_name)
        .await
        .map_err(|e| describe(&e))?;
    let Some(db) = db.filter(|d| d.metadata.deletion_timestamp.is_none()) else {
        return Ok(format!(
            "Database {db_name} is gone: nothing to drop the login from"
        ));
    };
    let target = match target_of(&db, ctx, namespace)
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(target) => target,
        Err(Blocked::Waiting(_, message) | Blocked::Failed(_, message)) => return Err(message),
    };
    login_admin(db.spec.engine)
        .drop_user(&target, &user.spec.username)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("dropped login {}", user.spec.username))
}

#[cfg(test)]
mod tests {
    use super::stable;

    #[test]
    fn volatile_addresses_are_masked_so_messages_are_stable() {
        let a = stable(
            "field \"roles\" with non-default value &{[0x1bdcc45b6de0] false} is not implemented",
        );
        let b = stable(
            "field \"roles\" with non-default value &{[0x32e1976cf0e0] false} is not implemented",
        );
        assert_eq!(a, b);
        assert!(a.contains("&{[0x…] false}"));
        assert_eq!(stable("plain 0x and text"), "plain 0x and text");
    }
}
