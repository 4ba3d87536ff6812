//! The PostgreSQL login admin against a real PostgreSQL (testkit fixture):
//! each test logs in as the user it made and proves what it can and cannot
//! do.

use database_operator_api::v1;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use database_operator_api::v1::user::{NativePrivilege, Role};
use operator::users::quote::{pg_ident, pg_literal};
use operator::users::{Password, Target, UserError, login_admin};
use testkit::servers::Postgres;

use super::users_fixture::{
    self, PASSWORD, apply_new, had, had_native, native_grant, privilege, spec,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

fn target(pg: &Postgres) -> Target {
    users_fixture::target(pg, pg.admin_user(), pg.admin_password(), "postgres")
}

fn pgm() -> operator::users::LoginAdmin {
    login_admin(v1::Engine::Postgresql)
}

/// Logs in as `user` through the URI the operator hands applications.
async fn login(
    pg: &Postgres,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let uri = pgm().connection_uri(user, &Password::new(password), pg.host(), pg.port(), db);
    let (client, connection) = tokio_postgres::connect(&uri, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A superuser client on `db`.
async fn admin_on(pg: &Postgres, db: &str) -> Result<Client> {
    let (client, connection) = pg.config().dbname(db).connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Database `app` with admin-owned `items` (one row, serial id) and
/// `canary`, which an injected DROP would remove.
async fn setup(pg: &Postgres) -> Result<Client> {
    let admin = pg.connect().await?;
    admin.batch_execute("CREATE DATABASE app").await?;
    let app = admin_on(pg, "app").await?;
    app.batch_execute(
        "CREATE TABLE items (id serial PRIMARY KEY, name text);
         INSERT INTO items (name) VALUES ('first');
         CREATE TABLE canary (id int); INSERT INTO canary VALUES (1);",
    )
    .await?;
    Ok(app)
}

fn denied(result: Result<impl Sized, tokio_postgres::Error>) -> bool {
    matches!(result, Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE))
}

async fn canary_alive(app: &Client) -> Result<()> {
    let n: i64 = app
        .query_one("SELECT count(*) FROM canary", &[])
        .await
        .context("canary table is gone")?
        .get(0);
    ensure!(n == 1, "canary has {n} rows");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_and_cannot_write() -> Result<()> {
    let pg = Postgres::start().await?;
    let app = setup(&pg).await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);
    let privileges = [privilege(Role::ReadOnly, "app")];
    apply_new(pgm(), &target, &spec("reader", &pw, &privileges, &[])).await?;

    let me = login(&pg, "reader", PASSWORD, "app").await?;
    let name: String = me.query_one("SELECT name FROM items", &[]).await?.get(0);
    assert_eq!(name, "first");
    me.query_one("SELECT nextval('items_id_seq')", &[])
        .await
        .err()
        .context("readOnly must not advance a sequence")?;
    assert!(denied(
        me.execute("INSERT INTO items (name) VALUES ('x')", &[])
            .await
    ));
    assert!(denied(me.execute("UPDATE items SET name = 'x'", &[]).await));
    assert!(denied(me.execute("DELETE FROM items", &[]).await));
    assert!(denied(me.batch_execute("CREATE TABLE mine (id int)").await));

    // Default privileges: a table the admin creates later is readable too.
    app.batch_execute("CREATE TABLE later (v int); INSERT INTO later VALUES (7)")
        .await?;
    let v: i32 = me.query_one("SELECT v FROM later", &[]).await?.get(0);
    assert_eq!(v, 7);

    // No CREATE on the database either.
    assert!(denied(me.batch_execute("CREATE SCHEMA nope").await));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_writes_and_admin_creates_tables() -> Result<()> {
    let pg = Postgres::start().await?;
    let _app = setup(&pg).await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);
    let rw = [privilege(Role::ReadWrite, "app")];
    apply_new(pgm(), &target, &spec("writer", &pw, &rw, &[])).await?;
    let me = login(&pg, "writer", PASSWORD, "app").await?;
    me.execute("INSERT INTO items (name) VALUES ('second')", &[])
        .await
        .context("readWrite INSERT (uses the serial's sequence)")?;
    me.execute(
        "UPDATE items SET name = 'renamed' WHERE name = 'second'",
        &[],
    )
    .await?;
    me.execute("DELETE FROM items WHERE name = 'renamed'", &[])
        .await?;
    assert!(denied(me.batch_execute("CREATE TABLE mine (id int)").await));
    assert!(denied(me.batch_execute("TRUNCATE items").await));

    let admin_role = [privilege(Role::Admin, "app")];
    pgm()
        .apply(&target, &spec("writer", &pw, &admin_role, &[]), &had(&rw))
        .await?;
    me.batch_execute("CREATE TABLE mine (id int); INSERT INTO mine VALUES (1); DROP TABLE mine")
        .await
        .context("admin CREATE TABLE")?;
    me.batch_execute("TRUNCATE items").await?;
    me.batch_execute("CREATE TEMPORARY TABLE scratch (id int)")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_takes_effect_and_spares_other_users() -> Result<()> {
    let pg = Postgres::start().await?;
    let app = setup(&pg).await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);

    // Another user, made by hand, with the same kind of grants.
    app.batch_execute(
        "CREATE ROLE bystander LOGIN PASSWORD 'bystander';
         GRANT SELECT, INSERT ON items TO bystander;
         GRANT USAGE ON SEQUENCE items_id_seq TO bystander;",
    )
    .await?;
    let acl_before: String = app
        .query_one(
            "SELECT relacl::text FROM pg_class WHERE relname = 'items'",
            &[],
        )
        .await?
        .get(0);

    let rw = [privilege(Role::ReadWrite, "app")];
    apply_new(pgm(), &target, &spec("shifty", &pw, &rw, &[])).await?;
    // Applying the same spec again is harmless.
    let same = had(&rw);
    pgm()
        .apply(&target, &spec("shifty", &pw, &rw, &[]), &same)
        .await?;
    let me = login(&pg, "shifty", PASSWORD, "app").await?;
    me.execute("INSERT INTO items (name) VALUES ('w')", &[])
        .await?;

    // readWrite → readOnly: writes stop, reads go on.
    let ro = [privilege(Role::ReadOnly, "app")];
    pgm()
        .apply(&target, &spec("shifty", &pw, &ro, &[]), &same)
        .await?;
    assert!(denied(
        me.execute("INSERT INTO items (name) VALUES ('x')", &[])
            .await
    ));
    me.query("SELECT * FROM items", &[]).await?;
    // Default privileges were revoked too: a new admin table is readable
    // but not writable.
    app.batch_execute("CREATE TABLE newer (v int)").await?;
    me.query("SELECT * FROM newer", &[]).await?;
    assert!(denied(
        me.execute("INSERT INTO newer VALUES (1)", &[]).await
    ));

    // readOnly → nothing: reads stop.
    pgm()
        .apply(&target, &spec("shifty", &pw, &[], &[]), &had(&ro))
        .await?;
    assert!(denied(me.query("SELECT * FROM items", &[]).await));
    assert!(denied(me.query("SELECT * FROM newer", &[]).await));

    // The bystander's grants are as they were, and only its own.
    let acl_after: String = app
        .query_one(
            "SELECT relacl::text FROM pg_class WHERE relname = 'items'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(acl_before, acl_after);
    let bystander = login(&pg, "bystander", "bystander", "app").await?;
    bystander
        .execute("INSERT INTO items (name) VALUES ('b')", &[])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grants_are_exact() -> Result<()> {
    let pg = Postgres::start().await?;
    let _app = setup(&pg).await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);
    let grants = [native_grant(
        &[NativePrivilege::Select, NativePrivilege::Insert],
        Some("canary"),
    )];
    apply_new(pgm(), &target, &spec("narrow", &pw, &[], &grants)).await?;
    let me = login(&pg, "narrow", PASSWORD, "app").await?;
    me.query("SELECT * FROM canary", &[]).await?;
    me.execute("INSERT INTO canary VALUES (2)", &[]).await?;
    me.execute("DELETE FROM canary WHERE id = 2", &[])
        .await
        .err()
        .context("DELETE was not granted")?;
    assert!(denied(me.query("SELECT * FROM items", &[]).await));

    // Removing the native grant revokes it.
    pgm()
        .apply(
            &target,
            &spec("narrow", &pw, &[], &[]),
            &had_native(&grants),
        )
        .await?;
    assert!(denied(me.query("SELECT * FROM canary", &[]).await));

    // A keyword PostgreSQL has no use for is refused before anything runs.
    let bad = [native_grant(&[NativePrivilege::Find], None)];
    let err = users_fixture::refusal(pgm(), &target, &spec("narrow", &pw, &[], &bad)).await;
    assert!(matches!(err, UserError::Invalid(_)), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_locks_out_the_old_one_and_never_reaches_the_log() -> Result<()> {
    let pg = Postgres::start().await?;
    let _app = setup(&pg).await?;
    let admin = pg.connect().await?;
    // Log every statement, so the log would show a cleartext password.
    admin
        .batch_execute("ALTER SYSTEM SET log_statement = 'all'")
        .await?;
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let target = target(&pg);
    let old = Password::new("old-Secret-4711");
    let new = Password::new("new-Secret-0815");
    let ro = [privilege(Role::ReadOnly, "app")];
    let mut user = spec("rotor", &old, &ro, &[]);
    user.connection_limit = Some(3);
    apply_new(pgm(), &target, &user).await?;
    login(&pg, "rotor", old.expose(), "app").await?;

    let row = admin
        .query_one(
            "SELECT rolpassword, rolconnlimit FROM pg_authid WHERE rolname = 'rotor'",
            &[],
        )
        .await?;
    let verifier: String = row.get(0);
    let limit: i32 = row.get(1);
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert_eq!(limit, 3);

    // Steady state: the same password is not rewritten.
    let granted = had(&ro);
    pgm().apply(&target, &user, &granted).await?;
    let again: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'rotor'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(verifier, again);

    let user = spec("rotor", &new, &ro, &[]);
    pgm().apply(&target, &user, &granted).await?;
    let err = login(&pg, "rotor", old.expose(), "app")
        .await
        .err()
        .context("the old password still works")?;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    login(&pg, "rotor", new.expose(), "app").await?;
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_authid WHERE rolname = 'rotor'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(limit, -1, "no limit declared any more");

    let log = std::fs::read_to_string(pg.log_path())?;
    ensure!(
        log.contains("ALTER ROLE"),
        "statements are not being logged"
    );
    for secret in [old.expose(), new.expose()] {
        ensure!(
            !log.contains(secret),
            "the server log holds a cleartext password"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_user_removes_the_login_and_keeps_its_tables() -> Result<()> {
    let pg = Postgres::start().await?;
    let app = setup(&pg).await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);
    let admin_role = [privilege(Role::Admin, "app")];
    apply_new(pgm(), &target, &spec("leaver", &pw, &admin_role, &[])).await?;
    let me = login(&pg, "leaver", PASSWORD, "app").await?;
    me.batch_execute(
        "CREATE TABLE owned_by_leaver (id int); INSERT INTO owned_by_leaver VALUES (1)",
    )
    .await?;
    // A session of its own, open while it is dropped.
    pgm().drop_user(&target, "leaver").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    me.query("SELECT 1", &[])
        .await
        .err()
        .context("the user's open session survived the drop")?;
    let err = login(&pg, "leaver", PASSWORD, "app")
        .await
        .err()
        .context("the dropped user can still log in")?;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    let owner: String = app
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'owned_by_leaver'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(owner, "postgres", "its table was reassigned to the admin");
    // Missing user = success.
    pgm().drop_user(&target, "leaver").await?;
    pgm().drop_user(&target, "never_was").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_is_refused_before_the_role_exists() -> Result<()> {
    let pg = Postgres::start().await?;
    let target = target(&pg);
    let pw = Password::new(PASSWORD);
    let privileges = [privilege(Role::ReadOnly, "nope")];
    let err = users_fixture::refusal(pgm(), &target, &spec("early", &pw, &privileges, &[])).await;
    match &err {
        UserError::Refused(m) => assert!(m.contains("\"nope\" does not exist"), "{m}"),
        other => bail!("expected Refused, got {other:?}"),
    }
    let admin = pg.connect().await?;
    let n: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'early'", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);
    // The previous apply named a database that is gone: nothing to revoke.
    pgm()
        .apply(&target, &spec("early", &pw, &[], &[]), &had(&privileges))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_quoting_is_inert() -> Result<()> {
    let pg = Postgres::start().await?;
    let app = setup(&pg).await?;
    let target = target(&pg);
    let hostile = [
        "x\"; DROP TABLE canary; --",
        "x'; DROP TABLE canary; --",
        "x\\'; DROP TABLE canary; --",
        "x/*",
        "x\0y",
        "аpp", // Cyrillic а
    ];
    users_fixture::hostile_names_are_refused(pgm(), &target, &hostile).await;
    // The second line of defense, on the server itself: quoted hostile
    // names and values are single tokens.
    for h in hostile.iter().filter(|h| !h.contains('\0') && h.is_ascii()) {
        app.batch_execute(&format!("CREATE TABLE {} (id int)", pg_ident(h)?))
            .await?;
        let n: i64 = app
            .query_one("SELECT count(*) FROM pg_class WHERE relname = $1", &[h])
            .await?
            .get(0);
        assert_eq!(n, 1, "{h:?}");
        for scs in ["on", "off"] {
            app.batch_execute(&format!("SET standard_conforming_strings = {scs}"))
                .await?;
            let back: String = app
                .query_one(&format!("SELECT {}::text", pg_literal(h)?), &[])
                .await?
                .get(0);
            assert_eq!(&back, h, "standard_conforming_strings = {scs}");
        }
    }
    assert!(pg_ident("x\0y").is_err() && pg_ident("аpp").is_err());
    canary_alive(&app).await?;
    let admin = pg.connect().await?;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'ok_user'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 0, "nothing was created for a refused spec");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_is_reported_without_its_password() -> Result<()> {
    let pg = Postgres::start().await?;
    users_fixture::unreachable_admin_is_reported_without_its_password(pgm(), target(&pg)).await;
    Ok(())
}
