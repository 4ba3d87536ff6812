//! The MySQL login admin against a real MariaDB (testkit fixture): each
//! test logs in as the account it made and proves what it can and cannot
//! do. (MySQL 8's dialect — caching_sha2_password — is covered by the unit
//! tests of the generated SQL; no MySQL server is available here.)

use anyhow::{Context, Result, bail, ensure};
use database_operator_api::v1;
use database_operator_api::v1::user::{NativePrivilege, Role};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use operator::users::quote::{mysql_account, mysql_ident, mysql_literal};
use operator::users::{Password, Target, UserError, login_admin};
use testkit::servers::Mariadb;

use super::users_fixture::{
    self, PASSWORD, apply_new, had, had_native, native_grant, privilege, spec,
};

const ER_DBACCESS_DENIED: u16 = 1044;
const ER_ACCESS_DENIED: u16 = 1045;
const ER_TABLEACCESS_DENIED: u16 = 1142;
const ER_TOO_MANY_USER_CONNECTIONS: u16 = 1203;
const ER_USER_LIMIT_REACHED: u16 = 1226;

fn target(db: &Mariadb) -> Target {
    users_fixture::target(db, db.admin_user(), db.admin_password(), "mysql")
}

fn my() -> operator::users::LoginAdmin {
    login_admin(v1::Engine::Mysql)
}

/// Logs in as `user` over TCP through the URI the operator hands
/// applications.
async fn login(
    db: &Mariadb,
    user: &str,
    password: &str,
    schema: &str,
) -> Result<Conn, mysql_async::Error> {
    let uri = my().connection_uri(user, &Password::new(password), db.host(), db.port(), schema);
    let opts = Opts::from_url(&format!("{uri}?prefer_socket=false"))?;
    Conn::new(opts).await
}

fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

fn denied<T>(result: Result<T, mysql_async::Error>) -> bool {
    matches!(&result, Err(e) if matches!(code(e), Some(ER_TABLEACCESS_DENIED | ER_DBACCESS_DENIED)))
}

/// Schema `app` with `items` (one row) and `canary`, which an injected DROP
/// would remove.
async fn setup(db: &Mariadb) -> Result<Conn> {
    let mut root = db.connect().await?;
    root.query_drop(
        "CREATE DATABASE app;
         CREATE TABLE app.items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50));
         INSERT INTO app.items (name) VALUES ('first');
         CREATE TABLE app.canary (id int); INSERT INTO app.canary VALUES (1);",
    )
    .await?;
    Ok(root)
}

async fn canary_alive(root: &mut Conn) -> Result<()> {
    let n: Option<i64> = root
        .query_first("SELECT count(*) FROM app.canary")
        .await
        .context("canary table is gone")?;
    ensure!(n == Some(1), "canary has {n:?} rows");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_and_cannot_write() -> Result<()> {
    let db = Mariadb::start().await?;
    let _root = setup(&db).await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let ro = [privilege(Role::ReadOnly, "app")];
    apply_new(my(), &target, &spec("reader", &pw, &ro, &[])).await?;
    let mut me = login(&db, "reader", PASSWORD, "app").await?;
    let name: Option<String> = me.query_first("SELECT name FROM items").await?;
    assert_eq!(name.as_deref(), Some("first"));
    assert!(denied(
        me.query_drop("INSERT INTO items (name) VALUES ('x')").await
    ));
    assert!(denied(me.query_drop("UPDATE items SET name = 'x'").await));
    assert!(denied(me.query_drop("DELETE FROM items").await));
    assert!(denied(me.query_drop("CREATE TABLE mine (id int)").await));
    // Nothing on another schema.
    assert!(denied(me.query_drop("SELECT * FROM mysql.user").await));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_writes_and_admin_creates_tables() -> Result<()> {
    let db = Mariadb::start().await?;
    let _root = setup(&db).await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let rw = [privilege(Role::ReadWrite, "app")];
    apply_new(my(), &target, &spec("writer", &pw, &rw, &[])).await?;
    let mut me = login(&db, "writer", PASSWORD, "app").await?;
    me.query_drop("INSERT INTO items (name) VALUES ('second')")
        .await?;
    me.query_drop("UPDATE items SET name = 'renamed' WHERE name = 'second'")
        .await?;
    me.query_drop("DELETE FROM items WHERE name = 'renamed'")
        .await?;
    me.query_drop("CREATE TEMPORARY TABLE scratch (id int)")
        .await?;
    assert!(denied(me.query_drop("CREATE TABLE mine (id int)").await));

    let admin_role = [privilege(Role::Admin, "app")];
    let granted = had(&rw);
    my().apply(&target, &spec("writer", &pw, &admin_role, &[]), &granted)
        .await?;
    // Privileges are read at login for schema-level grants: log in again.
    let mut me = login(&db, "writer", PASSWORD, "app").await?;
    me.query_drop("CREATE TABLE mine (id int)").await?;
    me.query_drop("DROP TABLE mine").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_takes_effect_and_spares_other_accounts() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = setup(&db).await?;
    root.query_drop(
        "CREATE USER 'bystander'@'%' IDENTIFIED BY 'bystander';
         GRANT SELECT, INSERT ON app.* TO 'bystander'@'%';",
    )
    .await?;
    let bystander_before: Vec<String> = root.query("SHOW GRANTS FOR 'bystander'@'%'").await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);

    let admin_role = [privilege(Role::Admin, "app")];
    apply_new(my(), &target, &spec("shifty", &pw, &admin_role, &[])).await?;
    // Again, unchanged: harmless.
    let as_admin = had(&admin_role);
    my().apply(&target, &spec("shifty", &pw, &admin_role, &[]), &as_admin)
        .await?;

    // admin → readWrite: no more CREATE, writes go on.
    let rw = [privilege(Role::ReadWrite, "app")];
    my().apply(&target, &spec("shifty", &pw, &rw, &[]), &as_admin)
        .await?;
    let mut me = login(&db, "shifty", PASSWORD, "app").await?;
    assert!(denied(me.query_drop("CREATE TABLE mine (id int)").await));
    me.query_drop("INSERT INTO items (name) VALUES ('w')")
        .await?;

    // readWrite → readOnly.
    let ro = [privilege(Role::ReadOnly, "app")];
    let as_rw = had(&rw);
    my().apply(&target, &spec("shifty", &pw, &ro, &[]), &as_rw)
        .await?;
    let mut me = login(&db, "shifty", PASSWORD, "app").await?;
    assert!(denied(
        me.query_drop("INSERT INTO items (name) VALUES ('x')").await
    ));
    me.query_drop("SELECT * FROM items").await?;

    // readOnly → nothing.
    let as_ro = had(&ro);
    my().apply(&target, &spec("shifty", &pw, &[], &[]), &as_ro)
        .await?;
    let grants: Vec<String> = root.query("SHOW GRANTS FOR 'shifty'@'%'").await?;
    ensure!(
        grants.iter().all(|g| g.starts_with("GRANT USAGE ON *.*")),
        "left over: {grants:?}"
    );
    let err = login(&db, "shifty", PASSWORD, "app")
        .await
        .err()
        .context("still may use app")?;
    assert_eq!(code(&err), Some(ER_DBACCESS_DENIED), "{err}");

    let bystander_after: Vec<String> = root.query("SHOW GRANTS FOR 'bystander'@'%'").await?;
    assert_eq!(bystander_before, bystander_after);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_grants_do_not_match_by_wildcard() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = db.connect().await?;
    root.query_drop(
        "CREATE DATABASE app_1; CREATE TABLE app_1.t (id int);
         CREATE DATABASE appx1; CREATE TABLE appx1.t (id int);",
    )
    .await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let privileges = [privilege(Role::ReadWrite, "app_1")];
    apply_new(my(), &target, &spec("wild", &pw, &privileges, &[])).await?;
    let mut me = login(&db, "wild", PASSWORD, "app_1").await?;
    me.query_drop("INSERT INTO app_1.t VALUES (1)").await?;
    assert!(denied(me.query_drop("SELECT * FROM appx1.t").await));
    assert!(denied(
        me.query_drop("INSERT INTO appx1.t VALUES (1)").await
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grants_are_exact() -> Result<()> {
    let db = Mariadb::start().await?;
    let _root = setup(&db).await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let grants = [native_grant(
        &[NativePrivilege::Select, NativePrivilege::Insert],
        Some("canary"),
    )];
    apply_new(my(), &target, &spec("narrow", &pw, &[], &grants)).await?;
    let mut me = login(&db, "narrow", PASSWORD, "app").await?;
    me.query_drop("SELECT * FROM canary").await?;
    me.query_drop("INSERT INTO canary VALUES (2)").await?;
    assert!(denied(
        me.query_drop("DELETE FROM canary WHERE id = 2").await
    ));
    assert!(denied(me.query_drop("SELECT * FROM items").await));

    my().apply(
        &target,
        &spec("narrow", &pw, &[], &[]),
        &had_native(&grants),
    )
    .await?;
    // Table-level privileges are checked per statement.
    assert!(denied(me.query_drop("SELECT * FROM canary").await));

    let bad = [native_grant(&[NativePrivilege::Truncate], None)];
    let err = users_fixture::refusal(my(), &target, &spec("narrow", &pw, &[], &bad)).await;
    assert!(matches!(err, UserError::Invalid(_)), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_locks_out_the_old_one_and_limits_connections() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = setup(&db).await?;
    let target = target(&db);
    let old = Password::new("old-Secret-4711");
    let new = Password::new("new-Secret-0815");
    let ro = [privilege(Role::ReadOnly, "app")];
    let mut user = spec("rotor", &old, &ro, &[]);
    user.connection_limit = Some(1);
    apply_new(my(), &target, &user).await?;

    let first = login(&db, "rotor", old.expose(), "app").await?;
    let err = login(&db, "rotor", old.expose(), "app")
        .await
        .err()
        .context("a second connection got past MAX_USER_CONNECTIONS 1")?;
    assert!(
        matches!(
            code(&err),
            Some(ER_USER_LIMIT_REACHED | ER_TOO_MANY_USER_CONNECTIONS)
        ),
        "{err}"
    );
    first.disconnect().await?;

    let granted = had(&ro);
    let user = spec("rotor", &new, &ro, &[]);
    my().apply(&target, &user, &granted).await?;
    let err = login(&db, "rotor", old.expose(), "app")
        .await
        .err()
        .context("the old password still works")?;
    assert_eq!(code(&err), Some(ER_ACCESS_DENIED), "{err}");
    let a = login(&db, "rotor", new.expose(), "app").await?;
    let b = login(&db, "rotor", new.expose(), "app").await?;
    a.disconnect().await?;
    b.disconnect().await?;
    let limit: Option<i64> = root
        .query_first("SELECT max_user_connections FROM mysql.user WHERE User = 'rotor'")
        .await?;
    assert_eq!(limit, Some(0), "no limit declared any more");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_user_removes_the_login() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = setup(&db).await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let ro = [privilege(Role::ReadOnly, "app")];
    apply_new(my(), &target, &spec("leaver", &pw, &ro, &[])).await?;
    let mut open = login(&db, "leaver", PASSWORD, "app").await?;
    my().drop_user(&target, "leaver").await?;
    open.query_drop("SELECT 1")
        .await
        .err()
        .context("the user's open session survived the drop")?;
    let err = login(&db, "leaver", PASSWORD, "app")
        .await
        .err()
        .context("the dropped user can still log in")?;
    assert_eq!(code(&err), Some(ER_ACCESS_DENIED), "{err}");
    let n: Option<i64> = root
        .query_first("SELECT count(*) FROM mysql.user WHERE User = 'leaver'")
        .await?;
    assert_eq!(n, Some(0));
    my().drop_user(&target, "leaver").await?;
    my().drop_user(&target, "never_was").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_and_server_schemas_are_refused() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = db.connect().await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let privileges = [privilege(Role::ReadOnly, "nope")];
    let err = users_fixture::refusal(my(), &target, &spec("early", &pw, &privileges, &[])).await;
    match &err {
        UserError::Refused(m) => assert!(m.contains("\"nope\" does not exist"), "{m}"),
        other => bail!("expected Refused, got {other:?}"),
    }
    let n: Option<i64> = root
        .query_first("SELECT count(*) FROM mysql.user WHERE User = 'early'")
        .await?;
    assert_eq!(n, Some(0));
    // Admin on the grant tables would be root: refused.
    let privileges = [privilege(Role::Admin, "mysql")];
    let err = users_fixture::refusal(my(), &target, &spec("early", &pw, &privileges, &[])).await;
    assert!(matches!(err, UserError::Invalid(_)), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_quoting_is_inert() -> Result<()> {
    let db = Mariadb::start().await?;
    let mut root = setup(&db).await?;
    let target = target(&db);
    let pw = Password::new(PASSWORD);
    let hostile = [
        "x'; DROP TABLE app.canary; --",
        "x`; DROP TABLE app.canary; --",
        "x\\'; DROP TABLE app.canary; --",
        "x'@'%'; DROP TABLE app.canary #",
        "x/*",
        "x\0y",
        "аpp", // Cyrillic а
    ];
    users_fixture::hostile_names_are_refused(my(), &target, &hostile).await;
    // On the server itself, quoted hostile names and values are single
    // tokens, with and without NO_BACKSLASH_ESCAPES.
    for h in hostile.iter().filter(|h| !h.contains('\0') && h.is_ascii()) {
        root.query_drop(format!("CREATE TABLE app.{} (id int)", mysql_ident(h)?))
            .await?;
        let n: Option<i64> = root
            .exec_first(
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = ?",
                (h,),
            )
            .await?;
        assert_eq!(n, Some(1), "{h:?}");
        for nbe in [false, true] {
            let mode = if nbe { "NO_BACKSLASH_ESCAPES" } else { "" };
            root.query_drop(format!("SET SESSION sql_mode = '{mode}'"))
                .await?;
            let back: Option<String> = root
                .query_first(format!("SELECT {}", mysql_literal(h, nbe)?))
                .await?;
            assert_eq!(back.as_deref(), Some(*h), "{mode}");
        }
        if !h.contains('\\') && h.len() <= 32 {
            // An account named like it, and dropped again, alone.
            let account = mysql_account(h)?;
            root.query_drop(format!("CREATE USER {account} IDENTIFIED BY 'x'"))
                .await?;
            let n: Option<i64> = root
                .exec_first("SELECT count(*) FROM mysql.user WHERE User = ?", (h,))
                .await?;
            assert_eq!(n, Some(1), "{h:?}");
            root.query_drop(format!("DROP USER {account}")).await?;
        }
    }
    root.query_drop("SET SESSION sql_mode = DEFAULT").await?;
    canary_alive(&mut root).await?;
    // And a password with every quote in it works, in both modes.
    for mode in ["NO_BACKSLASH_ESCAPES", ""] {
        root.query_drop(format!("SET GLOBAL sql_mode = '{mode}'"))
            .await?;
        apply_new(my(), &target, &spec("quoted", &pw, &[], &[])).await?;
        login(&db, "quoted", PASSWORD, "")
            .await
            .with_context(|| format!("login after apply with sql_mode '{mode}'"))?
            .disconnect()
            .await?;
    }
    root.query_drop("SET GLOBAL sql_mode = DEFAULT").await?;
    canary_alive(&mut root).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_is_reported_without_its_password() -> Result<()> {
    let db = Mariadb::start().await?;
    users_fixture::unreachable_admin_is_reported_without_its_password(my(), target(&db)).await;
    Ok(())
}
