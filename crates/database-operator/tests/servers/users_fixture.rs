//! What the `users_*` modules share: the hostile password every test login
//! gets, the login admin's inputs, and the checks that read the same on
//! every engine.

use database_operator_api::v1::user::{NativeGrant, NativePrivilege, Privilege, Role};
use operator::users::{Granted, LoginAdmin, Password, Target, UserError, UserSpec};
use testkit::servers::Instance;

/// Every character that needs quoting in SQL, a URI or a shell.
pub(crate) const PASSWORD: &str = "p@ss:w/rd?#%'\"\\; -- /*é";

/// How the operator reaches `server` as `admin_user`, on `default_database`.
pub(crate) fn target(
    server: &Instance,
    admin_user: &str,
    admin_password: &str,
    default_database: &str,
) -> Target {
    Target {
        host: server.host().to_owned(),
        port: server.port(),
        admin_user: admin_user.to_owned(),
        admin_password: Password::new(admin_password),
        default_database: default_database.to_owned(),
    }
}

pub(crate) fn privilege(role: Role, database: &str) -> Privilege {
    Privilege {
        role,
        database: database.into(),
        schema: None,
    }
}

/// A user without a connection limit.
pub(crate) fn spec<'a>(
    username: &'a str,
    password: &'a Password,
    privileges: &'a [Privilege],
    native_grants: &'a [NativeGrant],
) -> UserSpec<'a> {
    UserSpec {
        username,
        password,
        connection_limit: None,
        privileges,
        native_grants,
    }
}

/// A wrong admin password and a closed port both read as Unreachable, and
/// neither the admin's password nor the user's shows in the error.
pub(crate) async fn unreachable_admin_is_reported_without_its_password(
    admin: LoginAdmin,
    target: Target,
) {
    let pw = Password::new(PASSWORD);
    let mut wrong = target.clone();
    wrong.admin_password = Password::new("wrong-admin-secret");
    let err = admin
        .apply(&wrong, &spec("someone", &pw, &[], &[]), &Granted::default())
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Unreachable(_)), "{err}");
    assert!(!err.to_string().contains("wrong-admin-secret"));
    assert!(!format!("{err:?}").contains(PASSWORD));

    let mut closed = target;
    closed.port = 1;
    let err = admin.drop_user(&closed, "someone").await.unwrap_err();
    assert!(matches!(err, UserError::Unreachable(_)), "{err}");
}

/// Every name in `hostile` is refused before anything reaches the engine:
/// as a username, as a database in a privilege, and as a user to drop.
pub(crate) async fn hostile_names_are_refused(
    admin: LoginAdmin,
    target: &Target,
    hostile: &[&str],
) {
    let pw = Password::new(PASSWORD);
    for &h in hostile {
        let err = refusal(admin, target, &spec(h, &pw, &[], &[])).await;
        assert!(matches!(err, UserError::Invalid(_)), "{h:?}: {err}");
        let privileges = [privilege(Role::Admin, h)];
        let err = refusal(admin, target, &spec("ok_user", &pw, &privileges, &[])).await;
        assert!(matches!(err, UserError::Invalid(_)), "{h:?}: {err}");
        assert!(matches!(
            admin.drop_user(target, h).await,
            Err(UserError::Invalid(_))
        ));
    }
}

/// Applies `user` as a new login and returns why the login admin refused
/// it; a spec it accepts fails the test.
pub(crate) async fn refusal(admin: LoginAdmin, target: &Target, user: &UserSpec<'_>) -> UserError {
    apply_new(admin, target, user)
        .await
        .expect_err("the spec was accepted")
}

/// What an apply of `privileges` (and no native grants) granted.
pub(crate) fn had(privileges: &[Privilege]) -> Granted<'_> {
    Granted {
        privileges,
        native_grants: &[],
    }
}

/// What an apply of `native_grants` (and no roles) granted.
pub(crate) fn had_native(native_grants: &[NativeGrant]) -> Granted<'_> {
    Granted {
        privileges: &[],
        native_grants,
    }
}

/// `privileges` on database `app`: on `table` when one is named, else on
/// the whole database.
pub(crate) fn native_grant(privileges: &[NativePrivilege], table: Option<&str>) -> NativeGrant {
    NativeGrant {
        privileges: privileges.to_vec(),
        database: "app".into(),
        schema: None,
        table: table.map(Into::into),
    }
}

/// Applies `user` as a login nothing was granted to before.
pub(crate) async fn apply_new(
    admin: LoginAdmin,
    target: &Target,
    user: &UserSpec<'_>,
) -> Result<(), UserError> {
    admin.apply(target, user, &Granted::default()).await
}
