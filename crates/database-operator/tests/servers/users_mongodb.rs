//! The MongoDB login admin against FerretDB 1.24 (testkit fixture), our
//! stand-in for MongoDB.
//!
//! What FerretDB can prove: a user is created in `admin` with
//! SCRAM-SHA-256, can authenticate through the URI the operator hands out,
//! loses the old password when it changes, and cannot log in once dropped.
//!
//! What it cannot: FerretDB 1.x has users but no authorization. It refuses
//! `createUser`/`updateUser` with roles and does not implement
//! `createRole`, and any authenticated user may read and write every
//! database. So whether readOnly stops writes, readWrite allows them,
//! dbOwner creates collections and revocation takes effect is NOT proven
//! against a server here: the exact command documents the operator sends
//! for those are pinned by the unit tests in `src/users/mongodb.rs`. These
//! tests do check that asking FerretDB for roles fails loudly (Refused)
//! rather than pretending to succeed.

use database_operator_api::v1;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use database_operator_api::v1::user::{NativePrivilege, Privilege, Role};
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use operator::users::{Password, Target, UserError, login_admin};
use testkit::servers::Ferret;

use super::users_fixture::{self, PASSWORD, apply_new, native_grant, spec};

fn target(db: &Ferret) -> Target {
    users_fixture::target(
        db,
        db.admin_user(),
        db.admin_password(),
        db.admin_database(),
    )
}

fn mongo() -> operator::users::LoginAdmin {
    login_admin(v1::Engine::Mongodb)
}

/// Logs in as `user` through the URI the operator hands applications and
/// runs a command that needs authentication.
async fn login(db: &Ferret, user: &str, password: &str) -> Result<Document, mongodb::error::Error> {
    let uri = mongo().connection_uri(user, &Password::new(password), db.host(), db.port(), "app");
    let mut options = ClientOptions::parse(format!("{uri}&directConnection=true")).await?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    let client = mongodb::Client::with_options(options)?;
    let result = client
        .database("app")
        .run_command(doc! { "connectionStatus": 1 })
        .await;
    client.shutdown().await;
    result
}

fn is_auth_failure(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        mongodb::error::ErrorKind::Authentication { .. }
    ) || e.to_string().contains("Authentication failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lifecycle_create_login_rotate_drop() -> Result<()> {
    let db = Ferret::start().await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    apply_new(mongo(), &target, &spec("app_user", &pw, &[], &[])).await?;
    let status = login(&db, "app_user", PASSWORD)
        .await
        .context("login as the new user")?;
    let who = status
        .get_document("authInfo")?
        .get_array("authenticatedUsers")?;
    ensure!(
        format!("{who:?}").contains("app_user"),
        "authenticated as {who:?}"
    );
    // Idempotent: applying the same spec again keeps it working.
    apply_new(mongo(), &target, &spec("app_user", &pw, &[], &[])).await?;
    login(&db, "app_user", PASSWORD).await?;

    let new = Password::new("new-Secret-0815");
    apply_new(mongo(), &target, &spec("app_user", &new, &[], &[])).await?;
    let err = login(&db, "app_user", PASSWORD)
        .await
        .err()
        .context("the old password still works")?;
    ensure!(is_auth_failure(&err), "unexpected error: {err}");
    login(&db, "app_user", new.expose())
        .await
        .context("login with the new password")?;

    mongo().drop_user(&target, "app_user").await?;
    let err = login(&db, "app_user", new.expose())
        .await
        .err()
        .context("the dropped user can still log in")?;
    ensure!(is_auth_failure(&err), "unexpected error: {err}");
    // Missing user = success.
    mongo().drop_user(&target, "app_user").await?;
    mongo().drop_user(&target, "never_was").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferretdb_refuses_roles_loudly() -> Result<()> {
    let db = Ferret::start().await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let privileges = [Privilege {
        role: Role::ReadOnly,
        database: "app".into(),
        schema: None,
    }];
    match apply_new(mongo(), &target, &spec("ro_user", &pw, &privileges, &[])).await {
        Err(UserError::Refused(m)) => {
            eprintln!("FerretDB refused roles: {m}");
            ensure!(!m.contains(PASSWORD), "the password leaked into {m}");
        }
        Ok(()) => bail!("FerretDB accepted roles: the role tests could run against it now"),
        Err(other) => bail!("expected Refused, got {other:?}"),
    }
    let grants = [native_grant(&[NativePrivilege::Find], Some("orders"))];
    match apply_new(mongo(), &target, &spec("ro_user", &pw, &[], &grants)).await {
        Err(UserError::Refused(m)) => eprintln!("FerretDB refused a custom role: {m}"),
        Ok(()) => bail!("FerretDB accepted a custom role"),
        Err(other) => bail!("expected Refused, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_or_reserved_names_are_refused_before_anything_is_sent() -> Result<()> {
    let db = Ferret::start().await?;
    let admin = db.client().await?;
    admin
        .database("app")
        .collection::<Document>("canary")
        .insert_one(doc! { "alive": true })
        .await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    for h in [
        "x\"}, {\"dropDatabase\": 1",
        "x'; db.dropDatabase(); //",
        "x\0y",
        "аpp", // Cyrillic а
        "$where",
    ] {
        let err = users_fixture::refusal(mongo(), &target, &spec(h, &pw, &[], &[])).await;
        assert!(matches!(err, UserError::Invalid(_)), "{h:?}: {err}");
        assert!(matches!(
            mongo().drop_user(&target, h).await,
            Err(UserError::Invalid(_))
        ));
    }
    for database in ["admin", "local", "config", "app.$cmd", "app/x", "$app"] {
        let privileges = [Privilege {
            role: Role::Admin,
            database: database.into(),
            schema: None,
        }];
        let err =
            users_fixture::refusal(mongo(), &target, &spec("ok_user", &pw, &privileges, &[])).await;
        assert!(matches!(err, UserError::Invalid(_)), "{database:?}: {err}");
    }
    let mut limited = spec("ok_user", &pw, &[], &[]);
    limited.connection_limit = Some(5);
    assert!(matches!(
        apply_new(mongo(), &target, &limited).await,
        Err(UserError::Invalid(_))
    ));
    let n = admin
        .database("app")
        .collection::<Document>("canary")
        .count_documents(doc! {})
        .await?;
    assert_eq!(n, 1);
    let users = admin
        .database("admin")
        .run_command(doc! { "usersInfo": 1 })
        .await?;
    ensure!(
        !format!("{users:?}").contains("ok_user"),
        "a refused spec created a user: {users:?}"
    );
    admin.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_is_reported_without_its_password() -> Result<()> {
    let db = Ferret::start().await?;
    users_fixture::unreachable_admin_is_reported_without_its_password(mongo(), target(&db)).await;
    Ok(())
}
