//! PostgreSQL streaming replication, as the operator drives it: the
//! replication login (which `pg_rewind` also uses, with the four functions
//! it needs instead of superuser), one physical slot per replica on the
//! primary, promotion with `pg_promote()`, and each member's state.
//!
//! What runs in the pods is [`INSTANCE_SCRIPT`].

use std::collections::BTreeSet;

use tokio_postgres::error::SqlState;

use super::Member;
use crate::users::postgresql::{connect, db_error, ensure_role};
use crate::users::quote::{pg_ident, pg_literal};
use crate::users::{Password, Target, UserError, UserSpec};

/// The start of every server of a replicated PostgreSQL Database: seeding,
/// fencing and standby settings (see the script's own comments).
pub const INSTANCE_SCRIPT: &str = include_str!("../engine/scripts/postgresql-instance.sh");

/// What `pg_rewind` calls on the source server: granted to the replication
/// login so that it needs no superuser.
pub const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// The server settings streaming replication needs, for a data volume of
/// `volume_bytes`:
/// - `wal_log_hints` and `full_page_writes` (the default, stated), without
///   which `pg_rewind` cannot fence a former primary;
/// - `wal_keep_size`, so that the WAL a replica needs after a failover
///   outlives the new primary's first checkpoints (a promoted standby has
///   no slots until the operator makes them);
/// - `max_slot_wal_keep_size`, so that a lost replica's slot cannot fill
///   the primary's disk;
/// - `hot_standby_feedback`, so that queries on replicas are not cancelled
///   by vacuum on the primary.
///
/// Sync mode relies on `synchronous_commit = on`, PostgreSQL's default,
/// which these settings leave alone (a session that lowers it for its own
/// transactions waits for no replica).
pub fn settings(volume_bytes: u64) -> String {
    let mib = volume_bytes / (1024 * 1024);
    let keep = (mib / 8).clamp(64, 1024);
    let slot_keep = (mib / 4).max(keep * 2);
    format!(
        "wal_log_hints = on\n\
         full_page_writes = on\n\
         wal_keep_size = {keep}MB\n\
         max_slot_wal_keep_size = {slot_keep}MB\n\
         hot_standby_feedback = on\n"
    )
}

/// Connections the replication login may hold: one per replica streaming,
/// plus seeding and rewinding ones.
pub const LOGIN_CONNECTION_LIMIT: i32 = 20;

/// The slot of `pod`: what the instance script names it (`[a-z0-9_]`, 63
/// characters at most).
pub fn slot_name(pod: &str) -> String {
    pod.chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// Whether `slot` is one the operator keeps for a pod of the StatefulSet
/// `statefulset` (`<name>_<ordinal>`), and so may drop.
fn is_ours(slot: &str, statefulset: &str) -> bool {
    slot.strip_prefix(&slot_name(statefulset))
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Statements that give `username` replication and what `pg_rewind` needs.
pub fn login_grants(username: &str) -> Result<Vec<String>, UserError> {
    let user = pg_ident(username)?;
    let mut statements = vec![format!("ALTER ROLE {user} REPLICATION")];
    statements.extend(
        REWIND_FUNCTIONS
            .iter()
            .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {user}")),
    );
    Ok(statements)
}

/// Creates or updates the replication login ([`super::LOGIN`]) on the
/// primary (`target`) with `password`: connection limit, REPLICATION and
/// the rewind functions.
pub async fn ensure_login(target: &Target, password: &Password) -> Result<(), UserError> {
    let username = super::LOGIN;
    target.refuse_admin(username)?;
    let client = connect(target, &target.default_database).await?;
    let secrets = [password.expose(), target.admin_password.expose()];
    // In sync mode a commit waits for a replica, and no replica can copy
    // the primary before this login exists: these commits wait for none.
    client
        .batch_execute("SET synchronous_commit = local")
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    let user = UserSpec::operator_login(username, password, LOGIN_CONNECTION_LIMIT);
    ensure_role(&client, &user, &secrets).await?;
    for sql in login_grants(username)? {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| db_error(&e, &secrets))?;
    }
    Ok(())
}

/// What [`ensure_slots`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Unwanted slots still in use (a replica streaming through them):
    /// dropped by a later call.
    pub busy: Vec<String>,
}

/// Makes the primary (`target`) keep exactly one physical slot per pod in
/// `replicas` among the slots of the StatefulSet `statefulset`: creates the
/// missing ones, drops the others once nothing streams through them.
/// Other slots are not touched.
pub async fn ensure_slots(
    target: &Target,
    statefulset: &str,
    replicas: &[String],
) -> Result<Slots, UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    let wanted: BTreeSet<String> = replicas.iter().map(|p| slot_name(p)).collect();
    let rows = client
        .query(
            "SELECT slot_name::text, active FROM pg_replication_slots WHERE slot_type = 'physical'",
            &[],
        )
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    let existing: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut changes = Slots::default();
    for slot in &wanted {
        if existing.iter().any(|(name, _)| name == slot) {
            continue;
        }
        match client
            // Reserving at once: the slot keeps WAL from now on, not from
            // its replica's first connection.
            .execute("SELECT pg_create_physical_replication_slot($1, true)", &[slot])
            .await
        {
            Ok(_) => changes.created.push(slot.clone()),
            // Created meanwhile.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => return Err(db_error(&e, &secrets)),
        }
    }
    for (slot, active) in existing {
        if wanted.contains(&slot) || !is_ours(&slot, statefulset) {
            continue;
        }
        if active {
            changes.busy.push(slot);
            continue;
        }
        match client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => changes.dropped.push(slot),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => changes.busy.push(slot),
            Err(e) => return Err(db_error(&e, &secrets)),
        }
    }
    Ok(changes)
}

/// Promotes the standby `target`, waits (up to a minute) until it takes
/// writes on its new timeline, and checkpoints it: until that checkpoint
/// its control file still names the old timeline, and `pg_rewind` run
/// against it would find nothing to rewind in a former primary that
/// diverged. A server that is already a primary is only checkpointed.
pub async fn promote(target: &Target) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    let row = client
        .query_one(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(true, 60) ELSE true END",
            &[],
        )
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    if !row.get::<_, bool>(0) {
        return Err(UserError::Refused(format!(
            "{}:{} did not finish its promotion within 60 s",
            target.host, target.port
        )));
    }
    // A former primary fenced by a switchover carries its fence in
    // postgresql.auto.conf: a primary takes writes.
    set_read_only(&client, false, &secrets).await?;
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|e| db_error(&e, &secrets))
}

/// Makes new transactions on `client`'s server read-only by default (`on`),
/// or not.
async fn set_read_only(
    client: &tokio_postgres::Client,
    on: bool,
    secrets: &[&str],
) -> Result<(), UserError> {
    let value = on.then(|| "on".to_owned());
    alter_system(client, "default_transaction_read_only", value, secrets).await
}

/// Sets the server setting `name` to `value` (a literal; `None` resets it)
/// in `postgresql.auto.conf`, and reloads the configuration.
async fn alter_system(
    client: &tokio_postgres::Client,
    name: &str,
    value: Option<String>,
    secrets: &[&str],
) -> Result<(), UserError> {
    let set = match value {
        Some(value) => format!("ALTER SYSTEM SET {name} = {}", pg_literal(&value)?),
        None => format!("ALTER SYSTEM RESET {name}"),
    };
    // One statement at a time: ALTER SYSTEM refuses to run inside the
    // transaction a multi-statement string becomes.
    for sql in [set.as_str(), "SELECT pg_reload_conf()"] {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| db_error(&e, secrets))?;
    }
    Ok(())
}

/// Stops writes on the primary `target` for a switchover: new transactions
/// are read-only (`default_transaction_read_only`, reloaded), and every
/// other client session ends, so a transaction in flight aborts rather than
/// commits. Returns the WAL position after which nothing more is written:
/// once a replica has replayed it, it holds every acknowledged write.
///
/// The fenced server still writes a little WAL (running-transactions
/// records, its shutdown checkpoint when its pod restarts) that another
/// replica still streaming from it may receive and the promoted one never
/// has: that replica cannot follow the new primary until it is rewound,
/// which the operator does by restarting it
/// (`decide::cannot_follow`).
pub async fn fence(target: &Target) -> Result<u64, UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    set_read_only(&client, true, &secrets).await?;
    // The reload reaches new sessions once the postmaster has read it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let fresh = connect(target, &target.default_database).await?;
        let on: String = fresh
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .map_err(|e| db_error(&e, &secrets))?
            .get(0);
        if on == "on" {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UserError::Refused(
                "the primary did not reload default_transaction_read_only".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // pg_terminate_backend only signals: a session may still commit until
    // it has ended, so the WAL position is read once every one has.
    let sessions: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| db_error(&e, &secrets))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid",
            &[&sessions],
        )
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int4[])",
                &[&sessions],
            )
            .await
            .map_err(|e| db_error(&e, &secrets))?
            .get(0);
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UserError::Refused(format!(
                "{left} session(s) of the old primary did not end"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lsn: String = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text", &[])
        .await
        .map_err(|e| db_error(&e, &secrets))?
        .get(0);
    lsn.parse()
        .map_err(|_| UserError::Refused(format!("unexpected WAL position {lsn:?}")))
}

/// The `synchronous_standby_names` of every member of a Database whose
/// pods are `pods`: in sync mode a commit waits until any one of them (by
/// the application name the instance script gives each replica, its slot
/// name) has flushed it; in async mode nothing waits (`""`).
///
/// Every member carries the same list, the primary's own name included
/// (it never streams from itself), so that a standby promoted by a failover
/// waits for the others from its first commit: the list is a property of
/// the Database, not of the current primary. A new replica copying the
/// primary (`pg_basebackup`, without a slot) never counts as confirming.
pub fn synchronous_standby_names(pods: &[String], sync: bool) -> String {
    if !sync || pods.is_empty() {
        return String::new();
    }
    let names: Vec<String> = pods
        .iter()
        .map(|p| format!("\"{}\"", slot_name(p)))
        .collect();
    format!("ANY 1 ({})", names.join(", "))
}

/// Sets `synchronous_standby_names` on `target` (a primary or a standby,
/// which keeps it for when it is promoted) and reloads it.
pub async fn set_synchronous_standby_names(target: &Target, names: &str) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    let value = (!names.is_empty()).then(|| names.to_owned());
    alter_system(&client, "synchronous_standby_names", value, &secrets).await
}

/// Lifts a [`fence`]: the switchover did not happen.
pub async fn unfence(target: &Target) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    set_read_only(&client, false, &secrets).await
}

/// Waits until the standby `target` has replayed WAL up to `lsn`, for at
/// most `timeout`.
pub async fn wait_replayed(
    target: &Target,
    lsn: u64,
    timeout: std::time::Duration,
) -> Result<(), UserError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = member(target).await?;
        if state.in_recovery && state.lsn >= lsn {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UserError::Refused(format!(
                "{}:{} replayed up to {} of {lsn} within {}s",
                target.host,
                target.port,
                state.lsn,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Asks `target` what it is.
pub async fn member(target: &Target) -> Result<Member, UserError> {
    let secrets = [target.admin_password.expose()];
    let client = connect(target, &target.default_database).await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    CASE WHEN pg_is_in_recovery()
                         THEN (SELECT timeline_id FROM pg_control_checkpoint())::int4
                         -- A new primary's checkpoint may still name its old timeline.
                         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int4
                    END,
                    ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                           ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn)::text,
                    (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::text,
                    COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
                    (SELECT received_tli FROM pg_stat_wal_receiver)::int4,
                    current_setting('default_transaction_read_only') = 'on',
                    current_setting('synchronous_standby_names')",
            &[],
        )
        .await
        .map_err(|e| db_error(&e, &secrets))?;
    let bytes = |text: Option<String>| text.and_then(|t| t.parse::<u64>().ok());
    let in_recovery: bool = row.get(0);
    let checkpoint_timeline: i32 = row.get(1);
    let receiving_timeline: Option<i32> = row.get(5);
    Ok(Member {
        in_recovery,
        timeline: u32::try_from(receiving_timeline.unwrap_or(checkpoint_timeline)).unwrap_or(0),
        lsn: bytes(row.get(2)).unwrap_or(0),
        received_lsn: if in_recovery { bytes(row.get(3)) } else { None },
        streaming: row.get(4),
        read_only: row.get(6),
        synchronous_standby_names: row.get(7),
        semi_sync: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_the_instance_script() {
        assert_eq!(slot_name("orders-1"), "orders_1");
        assert_eq!(slot_name("a.b-C"), "a_b__");
        assert_eq!(slot_name(&"x".repeat(80)).len(), 63);
        // The script's own transformation.
        assert!(INSTANCE_SCRIPT.contains("tr -c 'a-z0-9_' '_' | cut -c1-63"));
    }

    #[test]
    fn sync_mode_waits_for_any_one_member_by_its_slot_name() {
        let pods = [
            "orders-0".to_owned(),
            "orders-1".to_owned(),
            "orders-2".to_owned(),
        ];
        assert_eq!(
            synchronous_standby_names(&pods, true),
            r#"ANY 1 ("orders_0", "orders_1", "orders_2")"#
        );
        assert_eq!(synchronous_standby_names(&pods, false), "");
        assert_eq!(synchronous_standby_names(&[], true), "");
    }

    #[test]
    fn only_our_slots_may_be_dropped() {
        assert!(is_ours("orders_1", "orders"));
        assert!(is_ours("my_db_12", "my-db"));
        assert!(!is_ours("orders_", "orders"));
        assert!(!is_ours("orders_x", "orders"));
        assert!(!is_ours("orders_archive_1", "orders"));
        assert!(!is_ours("barman", "orders"));
    }

    #[test]
    fn the_login_gets_replication_and_the_rewind_functions_only() {
        let sql = login_grants("dbop_replication").unwrap();
        assert_eq!(sql[0], r#"ALTER ROLE "dbop_replication" REPLICATION"#);
        assert_eq!(sql.len(), 5);
        assert!(
            sql[1..]
                .iter()
                .all(|s| s.starts_with("GRANT EXECUTE ON FUNCTION pg_catalog."))
        );
        assert_eq!(
            login_grants("a\"b").unwrap()[0],
            r#"ALTER ROLE "a""b" REPLICATION"#
        );
    }
}
