//! GTID replication of the mysql engine, in both flavors: the server
//! settings, the statements that make a server follow a source, fence it,
//! and promote it, and the comparison of members' GTID positions that a
//! failover judges. MariaDB is proven on real servers
//! (`tests/servers/replication_mysql.rs`); MySQL 8.4 is its unit-tested
//! twin, statement by statement (no MySQL server can be installed here).
//!
//! The dialects differ in more than names:
//! - MySQL's GTIDs are switched on (`gtid_mode`, `enforce_gtid_consistency`)
//!   and a replica positions itself (`SOURCE_AUTO_POSITION = 1`); MariaDB's
//!   are always on, and a replica starts from its own `gtid_slave_pos`
//!   (`MASTER_USE_GTID = slave_pos`).
//! - MySQL stops every login's writes on a replica with `super_read_only`.
//!   MariaDB's `read_only` does not stop a login holding `READ_ONLY ADMIN`,
//!   which `ALL PRIVILEGES` includes, so the admin login, whose writes must
//!   stop too, gives that privilege up ([`admin_without_read_only_bypass`]).
//!   Switching `read_only` needs that privilege, so on MariaDB the operator
//!   drives replication as the replication login ([`control_login`]),
//!   which holds it; on MySQL, as the admin login.
//! - A MySQL member is at least as advanced as another when its executed
//!   GTID set contains the other's; a MariaDB one when its position in every
//!   replication domain is at least the other's.
//!
//! - A MySQL source does not refuse a replica holding transactions of
//!   other servers that it lacks (errant transactions: a former primary's
//!   unreplicated writes); MariaDB's `gtid_strict_mode` does (error 1236).
//!   The MySQL instance script therefore checks, before a member with data
//!   follows, that its executed set is contained in the primary's.
//!
//! The Database controller drives both flavors the same way: their pods
//! start through [`instance_script`], and the operator observes each
//! member ([`member`]), keeps the replication login ([`ensure_login`]),
//! promotes ([`promote`]) and switches over ([`fence`], [`wait_applied`]).
//! Both are proven on real servers (MySQL from Debian unstable,
//! `tests/servers/replication_mysql_flavor.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use database_operator_api::v1::Flavor;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::{Member, SemiSync};
use crate::users::mysql::{Plan, Session, apply_with, connect, db_error};
use crate::users::quote::{mysql_account, mysql_account_at, mysql_literal};
use crate::users::{Password, Target, UserError, UserSpec};

/// The start of every server of a replicated MariaDB Database: seeding,
/// fencing and following (see the script's own comments).
pub const MARIADB_INSTANCE_SCRIPT: &str = include_str!("../engine/scripts/mariadb-instance.sh");

/// The start of every server of a replicated MySQL Database: seeding with
/// the clone plugin, refusing errant transactions, fencing and following
/// (see the script's own comments).
pub const MYSQL_INSTANCE_SCRIPT: &str = include_str!("../engine/scripts/mysql-instance.sh");

/// The instance script of `flavor`'s members.
pub fn instance_script(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => MYSQL_INSTANCE_SCRIPT,
        Flavor::Mariadb => MARIADB_INSTANCE_SCRIPT,
    }
}

/// Server settings every member of a replicated mysql Database needs (its
/// `server_id` is per member: [`server_id`]).
///
/// The relay log is named, not derived from the host name; MariaDB ignores
/// the `.replaced` directory where the instance script keeps the data of a
/// member it copied afresh (MySQL 8 ignores every directory starting with
/// a dot already).
pub fn settings(flavor: Flavor) -> String {
    let common = "log_bin = binlog\nbinlog_format = ROW\nrelay_log = relay-bin\n";
    match flavor {
        // The clone plugin copies the primary into a new replica (on the
        // primary as the donor, on the replica as the recipient).
        // Semi-synchronous replication's plugins are loaded on every
        // member, switched off until sync mode asks for them, so that the
        // operator can switch the mode on running servers.
        Flavor::Mysql => format!(
            "{common}gtid_mode = ON\nenforce_gtid_consistency = ON\nlog_replica_updates = ON\n\
             plugin_load_add = mysql_clone.so\nplugin_load_add = semisync_source.so\n\
             plugin_load_add = semisync_replica.so\n"
        ),
        // GTIDs are always on; strict mode refuses out-of-order GTIDs, which
        // only a diverged member would write.
        Flavor::Mariadb => format!(
            "{common}gtid_strict_mode = ON\nlog_slave_updates = ON\nignore_db_dirs = .replaced\n"
        ),
    }
}

/// The `server_id` of the member with StatefulSet ordinal `ordinal`: unique
/// in the Database, and never 0 (which refuses to replicate).
pub fn server_id(ordinal: u32) -> u32 {
    ordinal + 1
}

/// Where a replica's source is, and as whom it logs in.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
}

/// Statements that make a server replicate from `source` by GTID, starting
/// where its own GTID position says.
pub fn follow(flavor: Flavor, source: &Source<'_>) -> Result<Vec<String>, UserError> {
    let host = mysql_literal(source.host, false)?;
    let user = mysql_literal(source.user, false)?;
    let password = mysql_literal(source.password, false)?;
    let port = source.port;
    Ok(match flavor {
        Flavor::Mysql => vec![
            "STOP REPLICA".into(),
            // caching_sha2_password sends the password only over TLS or
            // RSA-encrypted: the source's public key is asked for.
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {host}, SOURCE_PORT = {port}, \
                 SOURCE_USER = {user}, SOURCE_PASSWORD = {password}, SOURCE_AUTO_POSITION = 1, \
                 GET_SOURCE_PUBLIC_KEY = 1"
            ),
            "START REPLICA".into(),
        ],
        Flavor::Mariadb => vec![
            "STOP SLAVE".into(),
            // A former primary's own transactions are in its binary log,
            // not in gtid_slave_pos: without this it would ask the new
            // primary for everything again (and strict mode refuses that).
            // For a replica both positions are the same.
            "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos".into(),
            format!(
                "CHANGE MASTER TO MASTER_HOST = {host}, MASTER_PORT = {port}, \
                 MASTER_USER = {user}, MASTER_PASSWORD = {password}, MASTER_USE_GTID = slave_pos"
            ),
            "START SLAVE".into(),
        ],
    })
}

/// Statements that stop (`on`) or allow writes by clients on a server.
pub fn read_only(flavor: Flavor, on: bool) -> Vec<String> {
    let value = if on { "ON" } else { "OFF" };
    match (flavor, on) {
        // super_read_only implies read_only, and stops SUPER holders too.
        (Flavor::Mysql, true) => vec!["SET GLOBAL super_read_only = ON".into()],
        (Flavor::Mysql, false) => vec![
            "SET GLOBAL super_read_only = OFF".into(),
            "SET GLOBAL read_only = OFF".into(),
        ],
        (Flavor::Mariadb, _) => vec![format!("SET GLOBAL read_only = {value}")],
    }
}

/// Statements that make a replica a primary: it forgets its source and
/// takes writes. The caller first waits until it has applied what it
/// received.
pub fn promotion(flavor: Flavor) -> Vec<String> {
    let mut statements: Vec<String> = match flavor {
        Flavor::Mysql => vec!["STOP REPLICA".into(), "RESET REPLICA ALL".into()],
        Flavor::Mariadb => vec!["STOP SLAVE".into(), "RESET SLAVE ALL".into()],
    };
    statements.extend(read_only(flavor, false));
    statements
}

/// The statement that shows a replica's threads and positions.
pub fn replica_status(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => "SHOW REPLICA STATUS",
        Flavor::Mariadb => "SHOW SLAVE STATUS",
    }
}

/// The statement that reads a member's GTID position: what it executed.
pub fn position_query(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
        Flavor::Mariadb => "SELECT @@GLOBAL.gtid_current_pos",
    }
}

/// The login the operator runs [`follow`], [`read_only`] and [`promotion`]
/// as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlLogin {
    /// The Database's admin login.
    Admin,
    /// The replication login ([`super::LOGIN`]).
    Replication,
}

/// See [`ControlLogin`].
pub fn control_login(flavor: Flavor) -> ControlLogin {
    match flavor {
        Flavor::Mysql => ControlLogin::Admin,
        // The admin login has given up READ_ONLY ADMIN, which switching
        // read_only needs.
        Flavor::Mariadb => ControlLogin::Replication,
    }
}

/// Grants of the replication login `user` on the source.
pub fn login_grants(flavor: Flavor, user: &str) -> Result<Vec<String>, UserError> {
    let account = mysql_account(user)?;
    Ok(match flavor {
        // BACKUP_ADMIN lets a new replica clone the source (clone plugin).
        Flavor::Mysql => vec![format!(
            "GRANT REPLICATION SLAVE, BACKUP_ADMIN ON *.* TO {account}"
        )],
        // Streaming, and what the operator drives replication with
        // (ControlLogin::Replication): CHANGE MASTER, START/STOP SLAVE, SET
        // GLOBAL gtid_slave_pos (REPLICATION SLAVE ADMIN), RESET SLAVE
        // (RELOAD as well), SHOW SLAVE STATUS (SLAVE MONITOR), positions
        // (BINLOG MONITOR), and read_only (READ_ONLY ADMIN).
        Flavor::Mariadb => vec![format!(
            "GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, \
             BINLOG MONITOR, READ_ONLY ADMIN ON *.* TO {account}"
        )],
    })
}

/// MariaDB: the statements that take `READ_ONLY ADMIN` from the admin login
/// `user` at each of its `hosts` (`root` exists as `root@'%'` and
/// `root@localhost` in the image), so that `read_only` stops its writes
/// too; run on the primary, they reach every member by replication. MySQL
/// needs none (`super_read_only`). The hosts come from `mysql.user`
/// ([`ADMIN_HOSTS_QUERY`]).
pub fn admin_without_read_only_bypass(
    flavor: Flavor,
    user: &str,
    hosts: &[String],
) -> Result<Vec<String>, UserError> {
    if flavor == Flavor::Mysql {
        return Ok(Vec::new());
    }
    hosts
        .iter()
        .map(|host| {
            Ok(format!(
                "REVOKE READ_ONLY ADMIN ON *.* FROM {}",
                mysql_account_at(user, host)?
            ))
        })
        .collect()
}

/// Whether a login whose `SHOW GRANTS` lines are `grants` holds
/// `READ_ONLY ADMIN` on `*.*` (by name, or within `ALL PRIVILEGES`).
pub fn holds_read_only_bypass(grants: &[String]) -> bool {
    grants.iter().any(|line| {
        let Some((privileges, _)) = line.split_once(" ON *.* TO ") else {
            return false;
        };
        privileges.contains("ALL PRIVILEGES") || privileges.contains("READ_ONLY ADMIN")
    })
}

/// The hosts of a login (bound to its name): what
/// [`admin_without_read_only_bypass`] revokes at.
pub const ADMIN_HOSTS_QUERY: &str = "SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host";

/// A member's GTID position, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// MySQL's executed GTID set: per source UUID, closed intervals.
    Mysql(BTreeMap<String, Vec<(u64, u64)>>),
    /// MariaDB's position: per replication domain, the last sequence number.
    Mariadb(BTreeMap<u32, u64>),
}

impl Position {
    /// Parses `@@gtid_executed` (`uuid:1-5:7,uuid2:1-3`) or
    /// `@@gtid_current_pos` (`0-1-42,1-2-7`).
    pub fn parse(flavor: Flavor, text: &str) -> Option<Position> {
        let parts = text.split(',').map(str::trim).filter(|p| !p.is_empty());
        match flavor {
            Flavor::Mysql => {
                let mut set: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
                for part in parts {
                    let mut fields = part.split(':');
                    let uuid = fields.next()?.to_ascii_lowercase();
                    let intervals = set.entry(uuid).or_default();
                    for interval in fields {
                        let (start, end) = match interval.split_once('-') {
                            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                            None => {
                                let n = interval.parse().ok()?;
                                (n, n)
                            }
                        };
                        if start > end {
                            return None;
                        }
                        intervals.push((start, end));
                    }
                }
                Some(Position::Mysql(set))
            }
            Flavor::Mariadb => {
                let mut domains = BTreeMap::new();
                for part in parts {
                    let mut fields = part.split('-');
                    let domain: u32 = fields.next()?.parse().ok()?;
                    let _server: u32 = fields.next()?.parse().ok()?;
                    let seq: u64 = fields.next()?.parse().ok()?;
                    if fields.next().is_some() {
                        return None;
                    }
                    domains.insert(domain, seq);
                }
                Some(Position::Mariadb(domains))
            }
        }
    }

    /// Whether this position holds every transaction of `other`.
    pub fn contains(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::Mysql(mine), Position::Mysql(theirs)) => {
                theirs.iter().all(|(uuid, intervals)| {
                    let have = mine.get(uuid).map(Vec::as_slice).unwrap_or_default();
                    intervals.iter().all(|&(start, end)| {
                        // Each interval inside one of ours (the server
                        // prints its sets merged).
                        have.iter().any(|&(a, b)| a <= start && end <= b)
                    })
                })
            }
            (Position::Mariadb(mine), Position::Mariadb(theirs)) => theirs
                .iter()
                .all(|(domain, seq)| mine.get(domain).is_some_and(|have| have >= seq)),
            _ => false,
        }
    }
}

/// The member to promote: one whose position contains every other's, the
/// first such by name for a tie. `None` when none does (the members
/// diverged: each holds transactions another lacks, and promoting any
/// loses some).
pub fn most_advanced(members: &[(String, Position)]) -> Option<&str> {
    members
        .iter()
        .filter(|(_, mine)| members.iter().all(|(_, other)| mine.contains(other)))
        .map(|(pod, _)| pod.as_str())
        .min()
}

/// The columns of the replica status statement ([`replica_status`]) the
/// operator reads, in each flavor's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusColumns {
    pub source_host: &'static str,
    pub io_running: &'static str,
    pub sql_running: &'static str,
    /// The source's binary log file and offset received so far.
    pub received_file: &'static str,
    pub received_offset: &'static str,
    /// The source's binary log file and offset applied so far.
    pub applied_file: &'static str,
    pub applied_offset: &'static str,
    pub io_errno: &'static str,
    pub io_error: &'static str,
}

/// See [`StatusColumns`].
pub fn status_columns(flavor: Flavor) -> StatusColumns {
    match flavor {
        Flavor::Mysql => StatusColumns {
            source_host: "Source_Host",
            io_running: "Replica_IO_Running",
            sql_running: "Replica_SQL_Running",
            received_file: "Source_Log_File",
            received_offset: "Read_Source_Log_Pos",
            applied_file: "Relay_Source_Log_File",
            applied_offset: "Exec_Source_Log_Pos",
            io_errno: "Last_IO_Errno",
            io_error: "Last_IO_Error",
        },
        Flavor::Mariadb => StatusColumns {
            source_host: "Master_Host",
            io_running: "Slave_IO_Running",
            sql_running: "Slave_SQL_Running",
            received_file: "Master_Log_File",
            received_offset: "Read_Master_Log_Pos",
            applied_file: "Relay_Master_Log_File",
            applied_offset: "Exec_Master_Log_Pos",
            io_errno: "Last_IO_Errno",
            io_error: "Last_IO_Error",
        },
    }
}

/// The statement that shows a primary's own binary log file and offset.
pub fn binlog_status(flavor: Flavor) -> &'static str {
    match flavor {
        // SHOW MASTER STATUS is gone in 8.4.
        Flavor::Mysql => "SHOW BINARY LOG STATUS",
        Flavor::Mariadb => "SHOW MASTER STATUS",
    }
}

/// The error a source answers a replica whose GTID position is not in its
/// binary logs (ER_MASTER_FATAL_ERROR_READING_BINLOG, in both flavors).
pub const POSITION_REFUSED: u64 = 1236;

/// Binary log coordinates as one number that grows along a source's
/// binary log: the file's number (`binlog.000042` → 42) × 2³² + the offset
/// (a binary log file never reaches 4 GiB: `max_binlog_size` ≤ 1 GiB).
pub fn coordinates(file: &str, offset: u64) -> Option<u64> {
    let number: u64 = file.rsplit_once('.')?.1.parse().ok()?;
    Some((number << 32) | offset.min(u64::from(u32::MAX)))
}

/// A column of a status row as text (files, Yes/No) or a number.
fn text(row: &Row, column: &str) -> String {
    match row.get_opt::<Value, _>(column) {
        Some(Ok(Value::Bytes(b))) => String::from_utf8_lossy(&b).into_owned(),
        Some(Ok(Value::Int(n))) => n.to_string(),
        Some(Ok(Value::UInt(n))) => n.to_string(),
        _ => String::new(),
    }
}

fn number(row: &Row, column: &str) -> u64 {
    text(row, column).parse().unwrap_or(0)
}

/// A replica's view of itself from its status row: (received, applied)
/// coordinates, both threads running, the IO thread's error number.
fn replica_view(flavor: Flavor, row: &Row) -> (Option<u64>, u64, bool, u64) {
    let c = status_columns(flavor);
    let received = coordinates(&text(row, c.received_file), number(row, c.received_offset));
    let applied = coordinates(&text(row, c.applied_file), number(row, c.applied_offset));
    let running = text(row, c.io_running) == "Yes" && text(row, c.sql_running) == "Yes";
    (
        received,
        applied.unwrap_or(0),
        running,
        number(row, c.io_errno),
    )
}

/// The replica status row of a server with a source configured (`None`: a
/// primary; `RESET SLAVE ALL` leaves no row, and a row without a host is
/// no source).
async fn source_row(
    session: &mut Session,
    flavor: Flavor,
    secrets: &[&str],
) -> Result<Option<Row>, UserError> {
    let rows: Vec<Row> = session
        .conn
        .query(replica_status(flavor))
        .await
        .map_err(|e| db_error(&e, secrets))?;
    let host = status_columns(flavor).source_host;
    Ok(rows.into_iter().find(|r| !text(r, host).is_empty()))
}

/// Asks `target` what it is.
pub async fn member(flavor: Flavor, target: &Target) -> Result<Member, UserError> {
    let secrets = [target.admin_password.expose()];
    let mut session = connect(target, &secrets).await?;
    let result = async {
        let settings: Option<(i64, i64, i64, Option<String>)> = session
            .conn
            .query_first(settings_query(flavor))
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        let (read_only, source, replica, waiting) = settings.unwrap_or_default();
        let read_only = read_only != 0;
        let semi_sync = Some(SemiSync {
            source: source != 0,
            replica: replica != 0,
            waiting: waiting.is_some_and(|v| v.eq_ignore_ascii_case("ON")),
        });
        if let Some(row) = source_row(&mut session, flavor, &secrets).await? {
            let (received, applied, running, errno) = replica_view(flavor, &row);
            return Ok(Member {
                in_recovery: true,
                timeline: if errno == POSITION_REFUSED { 0 } else { 1 },
                lsn: applied,
                received_lsn: received,
                streaming: running,
                read_only,
                synchronous_standby_names: String::new(),
                semi_sync,
            });
        }
        let binlog: Option<Row> = session
            .conn
            .query_first(binlog_status(flavor))
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        let lsn = binlog
            .and_then(|row| coordinates(&text(&row, "File"), number(&row, "Position")))
            .unwrap_or(0);
        Ok(Member {
            in_recovery: false,
            timeline: 1,
            lsn,
            received_lsn: None,
            streaming: false,
            read_only,
            synchronous_standby_names: String::new(),
            semi_sync,
        })
    }
    .await;
    let _ = session.conn.disconnect().await;
    result
}

/// How long a primary's commit waits for a replica's acknowledgement in
/// sync mode before the primary falls back to asynchronous commits. Longer
/// than a replica needs to reconnect after a restart or a failover (a few
/// seconds), so routine events do not end the guarantee; short enough that
/// a primary that lost every replica stalls its writers for half a minute,
/// not for ever. The fallback is surfaced (status, event), and MariaDB
/// returns to semi-synchronous commits by itself once a replica catches up.
pub const SEMI_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The semi-synchronous replication variables, in each flavor's words:
/// (the primary side enabled, the replica side enabled, the primary's
/// status, its wait point, its timeout).
pub fn semi_sync_variables(
    flavor: Flavor,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    match flavor {
        Flavor::Mysql => (
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_replica_enabled",
            "Rpl_semi_sync_source_status",
            "rpl_semi_sync_source_wait_point",
            "rpl_semi_sync_source_timeout",
        ),
        Flavor::Mariadb => (
            "rpl_semi_sync_master_enabled",
            "rpl_semi_sync_slave_enabled",
            "Rpl_semi_sync_master_status",
            "rpl_semi_sync_master_wait_point",
            "rpl_semi_sync_master_timeout",
        ),
    }
}

/// The server settings of sync mode (`on`) or of asynchronous replication,
/// for a file every member reads at its start: both sides on, so that a
/// primary's commits wait from its first one. A replica's primary side
/// must be off (its applier's commits would wait for acknowledgements no
/// one sends): the instance script starts replicas with it off, and the
/// operator turns it on when it promotes one. `AFTER_SYNC`: a commit
/// becomes visible to other sessions only once a replica has acknowledged
/// it, so no client reads a write a failover may lose.
pub fn semi_sync_settings(flavor: Flavor, on: bool, timeout: Duration) -> String {
    let (source, replica, _, wait_point, timeout_variable) = semi_sync_variables(flavor);
    if !on {
        return "# Asynchronous replication (spec.replication.mode: async).\n".to_owned();
    }
    // MySQL's semi-sync plugins are loaded by [`settings`]; MariaDB has
    // it built in.
    format!(
        "# Semi-synchronous replication (spec.replication.mode: sync); the operator\n\
         # also applies these to running servers.\n\
         [mysqld]\n{source} = ON\n{replica} = ON\n{wait_point} = AFTER_SYNC\n\
         {timeout_variable} = {}\n",
        timeout.as_millis()
    )
}

/// The sides of semi-synchronous replication a member needs: a primary's
/// side on the primary only, a replica's side on every member, both only
/// in sync mode.
pub fn wanted_semi_sync(sync: bool, primary: bool) -> (bool, bool) {
    (sync && primary, sync)
}

/// Statements that give a running member the primary's side (`source`)
/// and the replica's side (`replica`) of semi-synchronous replication. A
/// replica's side takes effect when its receiver reconnects: a member whose
/// replica side changes while it `replicates` restarts it.
pub fn semi_sync(
    flavor: Flavor,
    (source, replica): (bool, bool),
    timeout: Duration,
    restart_receiver: bool,
) -> Vec<String> {
    let (source_variable, replica_variable, _, wait_point, timeout_variable) =
        semi_sync_variables(flavor);
    let on = |b: bool| if b { "ON" } else { "OFF" };
    let mut statements = Vec::new();
    if source {
        statements.push(format!("SET GLOBAL {wait_point} = AFTER_SYNC"));
        statements.push(format!(
            "SET GLOBAL {timeout_variable} = {}",
            timeout.as_millis()
        ));
    }
    statements.push(format!("SET GLOBAL {source_variable} = {}", on(source)));
    statements.push(format!("SET GLOBAL {replica_variable} = {}", on(replica)));
    if restart_receiver {
        statements.extend(
            match flavor {
                Flavor::Mysql => ["STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"],
                Flavor::Mariadb => ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"],
            }
            .map(str::to_owned),
        );
    }
    statements
}

/// Applies [`semi_sync`] to the member `target`, with
/// [`SEMI_SYNC_TIMEOUT`].
pub async fn set_semi_sync(
    flavor: Flavor,
    target: &Target,
    sides: (bool, bool),
    restart_receiver: bool,
) -> Result<(), UserError> {
    run(
        target,
        &semi_sync(flavor, sides, SEMI_SYNC_TIMEOUT, restart_receiver),
    )
    .await
}

/// Turns the primary's side of semi-synchronous replication off and on
/// again on `target`, in one session: a promoted replica's side was off
/// (or, on by hand, waiting for no one), and its commits must wait for a
/// replica from its first one.
pub async fn restart_semi_sync_source(flavor: Flavor, target: &Target) -> Result<(), UserError> {
    let mut statements = semi_sync(flavor, (false, true), SEMI_SYNC_TIMEOUT, false);
    statements.extend(semi_sync(flavor, (true, true), SEMI_SYNC_TIMEOUT, false));
    run(target, &statements).await
}

/// One round trip for what [`member`] reads besides the replica status:
/// `read_only`, the two sides of semi-synchronous replication, and whether
/// the primary's side waits now (a status variable, from the flavor's
/// status table).
pub fn settings_query(flavor: Flavor) -> String {
    let (source, replica, status, _, _) = semi_sync_variables(flavor);
    let table = match flavor {
        Flavor::Mysql => "performance_schema.global_status",
        Flavor::Mariadb => "information_schema.GLOBAL_STATUS",
    };
    format!(
        "SELECT @@GLOBAL.read_only, @@GLOBAL.{source}, @@GLOBAL.{replica}, \
         (SELECT VARIABLE_VALUE FROM {table} WHERE VARIABLE_NAME = '{status}')"
    )
}

/// Connections the replication login may hold: one per replica, plus the
/// operator's own.
pub const LOGIN_CONNECTION_LIMIT: i32 = 20;

/// Creates or updates the replication login ([`super::LOGIN`]) on the
/// primary (`target`, the admin login) with `password` and its grants, and
/// takes the read-only bypass from the admin login at every host it has
/// ([`admin_without_read_only_bypass`]). Replication carries both to every
/// replica.
pub async fn ensure_login(
    flavor: Flavor,
    target: &Target,
    password: &Password,
) -> Result<(), UserError> {
    let username = super::LOGIN;
    target.refuse_admin(username)?;
    let secrets = [password.expose(), target.admin_password.expose()];
    let mut session = connect(target, &secrets).await?;
    let result = async {
        let hosts: Vec<String> = session
            .conn
            .exec(ADMIN_HOSTS_QUERY, (target.admin_user.as_str(),))
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        let own: Vec<String> = session
            .conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        let exists: Option<i64> = session
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM mysql.user WHERE User = ?",
                (username,),
            )
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        // The login's password never changes (the Secret is immutable) and
        // its grants are given with it, so a login that exists is left as
        // it is and nothing is written: in sync mode a write here would
        // wait for a replica, which a new primary may not have yet.
        // MariaDB: granting READ_ONLY ADMIN needs it, so the login is made
        // while the admin login still holds it, and the admin gives it up
        // in the same pass (replicated to every member).
        let bypass = holds_read_only_bypass(&own);
        let exists = exists.unwrap_or(0) > 0;
        if exists && (flavor == Flavor::Mysql || !bypass) {
            return Ok(());
        }
        let mut grant = Vec::new();
        if flavor == Flavor::Mysql || bypass {
            grant = login_grants(flavor, username)?;
            grant.extend(admin_without_read_only_bypass(
                flavor,
                &target.admin_user,
                &hosts,
            )?);
        }
        let user = UserSpec::operator_login(username, password, LOGIN_CONNECTION_LIMIT);
        let plan = Plan {
            revoke: Vec::new(),
            grant,
        };
        apply_with(&mut session, &user, &BTreeSet::new(), &plan, &secrets).await
    }
    .await;
    let _ = session.conn.disconnect().await;
    result
}

/// Runs `statements` on `target`.
async fn run(target: &Target, statements: &[String]) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let mut session = connect(target, &secrets).await?;
    let mut result = Ok(());
    for sql in statements {
        if let Err(e) = session.conn.query_drop(sql).await {
            result = Err(db_error(&e, &secrets));
            break;
        }
    }
    let _ = session.conn.disconnect().await;
    result
}

/// Makes the replica `target` (its [`control_login`]) the primary: it stops
/// receiving, applies everything it received (up to a minute), forgets its
/// source and takes writes. A server that is already a primary only takes
/// writes.
pub async fn promote(flavor: Flavor, target: &Target) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let stop_receiving = match flavor {
        Flavor::Mysql => "STOP REPLICA IO_THREAD",
        Flavor::Mariadb => "STOP SLAVE IO_THREAD",
    };
    let mut session = connect(target, &secrets).await?;
    let applied = async {
        if source_row(&mut session, flavor, &secrets).await?.is_none() {
            return Ok(());
        }
        session
            .conn
            .query_drop(stop_receiving)
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let Some(row) = source_row(&mut session, flavor, &secrets).await? else {
                return Ok(());
            };
            let (received, applied, _, _) = replica_view(flavor, &row);
            let applying = text(&row, status_columns(flavor).sql_running) == "Yes";
            if !applying || received.is_none_or(|r| applied >= r) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(UserError::Refused(format!(
                    "{}:{} did not apply what it received within 60 s",
                    target.host, target.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = session.conn.disconnect().await;
    applied?;
    run(target, &promotion(flavor)).await
}

/// Stops writes on the primary `target` (its [`control_login`]) for a
/// switchover: `read_only` (the admin login holds no bypass), and every
/// other client session ends, so a transaction in flight aborts rather
/// than commits. Returns the GTID position after which nothing more is
/// written: once a replica has applied it, it holds every acknowledged
/// write.
pub async fn fence(flavor: Flavor, target: &Target) -> Result<String, UserError> {
    let secrets = [target.admin_password.expose()];
    run(target, &read_only(flavor, true)).await?;
    let mut session = connect(target, &secrets).await?;
    let result = async {
        let sessions: Vec<u64> = session
            .conn
            .query(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') \
                 AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon')",
            )
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        for id in sessions {
            // A session that ended meanwhile is what we want.
            let _ = session
                .conn
                .query_drop(format!("KILL CONNECTION {id}"))
                .await;
        }
        let position: Option<String> = session
            .conn
            .query_first(position_query(flavor))
            .await
            .map_err(|e| db_error(&e, &secrets))?;
        Ok(position.unwrap_or_default())
    }
    .await;
    let _ = session.conn.disconnect().await;
    result
}

/// Lets the fenced primary `target` take writes again: a switchover that
/// could not finish.
pub async fn unfence(flavor: Flavor, target: &Target) -> Result<(), UserError> {
    run(target, &read_only(flavor, false)).await
}

/// Waits up to `timeout` until the replica `target` has applied the GTID
/// position `position` ([`fence`]).
pub async fn wait_applied(
    flavor: Flavor,
    target: &Target,
    position: &str,
    timeout: Duration,
) -> Result<(), UserError> {
    let secrets = [target.admin_password.expose()];
    let wait = match flavor {
        // 0 once applied, 1 on timeout.
        Flavor::Mysql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) = 0",
        // 0 once applied, -1 on timeout.
        Flavor::Mariadb => "SELECT MASTER_GTID_WAIT(?, ?) = 0",
    };
    let mut session = connect(target, &secrets).await?;
    let done: Result<Option<bool>, UserError> = session
        .conn
        .exec_first(wait, (position, timeout.as_secs()))
        .await
        .map_err(|e| db_error(&e, &secrets));
    let _ = session.conn.disconnect().await;
    match done? {
        Some(true) => Ok(()),
        _ => Err(UserError::Refused(format!(
            "{}:{} did not apply GTID position {position} within {}s",
            target.host,
            target.port,
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: Source<'static> = Source {
        host: "orders-primary",
        port: 3306,
        user: "dbop_replication",
        password: "pw'x",
    };

    #[test]
    fn gtids_are_switched_on_in_mysql_and_strict_in_mariadb() {
        let mysql = settings(Flavor::Mysql);
        assert!(mysql.contains("gtid_mode = ON\nenforce_gtid_consistency = ON"));
        assert!(!mysql.contains("gtid_strict_mode"));
        let maria = settings(Flavor::Mariadb);
        assert!(
            !maria.contains("gtid_mode"),
            "MariaDB has no gtid_mode: {maria}"
        );
        assert!(maria.contains("gtid_strict_mode = ON"));
        for text in [mysql, maria] {
            assert!(text.contains("log_bin = binlog\nbinlog_format = ROW"));
        }
        assert_eq!(server_id(0), 1);
    }

    #[test]
    fn following_a_source_statement_by_statement() {
        assert_eq!(
            follow(Flavor::Mysql, &SOURCE).unwrap(),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'orders-primary', SOURCE_PORT = 3306, \
                 SOURCE_USER = 'dbop_replication', SOURCE_PASSWORD = 'pw''x', SOURCE_AUTO_POSITION = 1, \
                 GET_SOURCE_PUBLIC_KEY = 1",
                "START REPLICA",
            ]
        );
        assert_eq!(
            follow(Flavor::Mariadb, &SOURCE).unwrap(),
            [
                "STOP SLAVE",
                "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos",
                "CHANGE MASTER TO MASTER_HOST = 'orders-primary', MASTER_PORT = 3306, \
                 MASTER_USER = 'dbop_replication', MASTER_PASSWORD = 'pw''x', MASTER_USE_GTID = slave_pos",
                "START SLAVE",
            ]
        );
        let hostile = Source {
            password: "a\0b",
            ..SOURCE
        };
        assert!(
            follow(Flavor::Mariadb, &hostile).is_err(),
            "a NUL never reaches SQL"
        );
    }

    #[test]
    fn fencing_and_promotion_statement_by_statement() {
        assert_eq!(
            read_only(Flavor::Mysql, true),
            ["SET GLOBAL super_read_only = ON"]
        );
        assert_eq!(
            read_only(Flavor::Mysql, false),
            [
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            read_only(Flavor::Mariadb, true),
            ["SET GLOBAL read_only = ON"]
        );
        assert_eq!(
            promotion(Flavor::Mysql),
            [
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            promotion(Flavor::Mariadb),
            [
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(replica_status(Flavor::Mysql), "SHOW REPLICA STATUS");
        assert_eq!(replica_status(Flavor::Mariadb), "SHOW SLAVE STATUS");
        let hosts = ["%".to_owned(), "localhost".to_owned()];
        assert_eq!(
            admin_without_read_only_bypass(Flavor::Mariadb, "root", &hosts).unwrap(),
            [
                "REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'",
                "REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'localhost'"
            ]
        );
        assert!(
            admin_without_read_only_bypass(Flavor::Mysql, "root", &hosts)
                .unwrap()
                .is_empty()
        );
        let hostile = ["x' OR '1".to_owned()];
        assert_eq!(
            admin_without_read_only_bypass(Flavor::Mariadb, "root", &hostile).unwrap(),
            ["REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'x'' OR ''1'"]
        );
        assert_eq!(
            login_grants(Flavor::Mysql, "dbop_replication").unwrap(),
            ["GRANT REPLICATION SLAVE, BACKUP_ADMIN ON *.* TO 'dbop_replication'@'%'"]
        );
        assert_eq!(
            login_grants(Flavor::Mariadb, "dbop_replication").unwrap(),
            [
                "GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, \
                 BINLOG MONITOR, READ_ONLY ADMIN ON *.* TO 'dbop_replication'@'%'"
            ]
        );
        assert_eq!(control_login(Flavor::Mariadb), ControlLogin::Replication);
        assert_eq!(control_login(Flavor::Mysql), ControlLogin::Admin);
    }

    #[test]
    fn sync_mode_is_semi_synchronous_after_sync_on_every_member() {
        let maria = semi_sync_settings(Flavor::Mariadb, true, Duration::from_secs(30));
        for line in [
            "rpl_semi_sync_master_enabled = ON",
            "rpl_semi_sync_slave_enabled = ON",
            "rpl_semi_sync_master_wait_point = AFTER_SYNC",
            "rpl_semi_sync_master_timeout = 30000",
        ] {
            assert!(maria.contains(line), "{maria}");
        }
        assert!(!maria.contains("plugin_load"));
        let mysql = semi_sync_settings(Flavor::Mysql, true, Duration::from_secs(30));
        // MySQL's plugins are loaded on every member, whatever the mode.
        assert!(settings(Flavor::Mysql).contains("plugin_load_add = semisync_source.so"));
        assert!(settings(Flavor::Mysql).contains("plugin_load_add = semisync_replica.so"));
        for line in [
            "rpl_semi_sync_source_enabled = ON",
            "rpl_semi_sync_replica_enabled = ON",
            "rpl_semi_sync_source_wait_point = AFTER_SYNC",
            "rpl_semi_sync_source_timeout = 30000",
        ] {
            assert!(mysql.contains(line), "{mysql}");
        }
        assert!(!semi_sync_settings(Flavor::Mariadb, false, SEMI_SYNC_TIMEOUT).contains("ON"));
        assert_eq!(
            semi_sync(
                Flavor::Mariadb,
                wanted_semi_sync(true, true),
                Duration::from_secs(2),
                false
            ),
            [
                "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
                "SET GLOBAL rpl_semi_sync_master_timeout = 2000",
                "SET GLOBAL rpl_semi_sync_master_enabled = ON",
                "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
            ]
        );
        // A replica acknowledges, and its own commits (its applier's) wait
        // for no one.
        assert_eq!(wanted_semi_sync(true, false), (false, true));
        assert_eq!(
            semi_sync(
                Flavor::Mariadb,
                wanted_semi_sync(true, false),
                SEMI_SYNC_TIMEOUT,
                true
            ),
            [
                "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
                "STOP SLAVE IO_THREAD",
                "START SLAVE IO_THREAD",
            ]
        );
        assert_eq!(
            semi_sync(
                Flavor::Mysql,
                wanted_semi_sync(false, true),
                SEMI_SYNC_TIMEOUT,
                false
            ),
            [
                "SET GLOBAL rpl_semi_sync_source_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_replica_enabled = OFF",
            ]
        );
        // The instance script starts replicas with the primary's side off.
        assert!(MARIADB_INSTANCE_SCRIPT.contains("--rpl-semi-sync-master-enabled=OFF"));
        assert!(MYSQL_INSTANCE_SCRIPT.contains("--loose-rpl-semi-sync-source-enabled=OFF"));
    }

    #[test]
    fn the_read_only_bypass_is_read_from_show_grants() {
        let all = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` IDENTIFIED BY PASSWORD '*B6' WITH GRANT OPTION".to_owned()];
        assert!(holds_read_only_bypass(&all));
        // What MariaDB 10.11 shows once READ_ONLY ADMIN is revoked.
        let revoked = [
            "GRANT SELECT, INSERT, SUPER, REPLICATION SLAVE, BINLOG MONITOR, CREATE USER, \
             REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, BINLOG ADMIN, SLAVE MONITOR ON *.* \
             TO `root`@`%` IDENTIFIED BY PASSWORD '*B6' WITH GRANT OPTION"
                .to_owned(),
        ];
        assert!(!holds_read_only_bypass(&revoked));
        let named = ["GRANT READ_ONLY ADMIN ON *.* TO `x`@`%`".to_owned()];
        assert!(holds_read_only_bypass(&named));
        let elsewhere = ["GRANT ALL PRIVILEGES ON `app`.* TO `root`@`%`".to_owned()];
        assert!(!holds_read_only_bypass(&elsewhere));
    }

    #[test]
    fn binary_log_coordinates_grow_along_the_log() {
        let a = coordinates("binlog.000003", 1_000_000).unwrap();
        let b = coordinates("binlog.000004", 4).unwrap();
        assert!(a < b);
        assert_eq!(b - coordinates("binlog.000004", 0).unwrap(), 4);
        assert_eq!(coordinates("binlog", 4), None);
        assert_eq!(coordinates("", 0), None);
        let maria = status_columns(Flavor::Mariadb);
        let mysql = status_columns(Flavor::Mysql);
        assert_eq!(
            (maria.received_file, maria.received_offset),
            ("Master_Log_File", "Read_Master_Log_Pos")
        );
        assert_eq!(
            (mysql.received_file, mysql.received_offset),
            ("Source_Log_File", "Read_Source_Log_Pos")
        );
        assert_eq!(
            (mysql.io_running, mysql.sql_running, mysql.applied_offset),
            (
                "Replica_IO_Running",
                "Replica_SQL_Running",
                "Exec_Source_Log_Pos"
            )
        );
        assert_eq!(
            settings_query(Flavor::Mariadb),
            "SELECT @@GLOBAL.read_only, @@GLOBAL.rpl_semi_sync_master_enabled, \
             @@GLOBAL.rpl_semi_sync_slave_enabled, (SELECT VARIABLE_VALUE FROM \
             information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Rpl_semi_sync_master_status')"
        );
        assert!(settings_query(Flavor::Mysql).contains(
            "FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_source_status'"
        ));
        assert_eq!(binlog_status(Flavor::Mysql), "SHOW BINARY LOG STATUS");
        assert_eq!(binlog_status(Flavor::Mariadb), "SHOW MASTER STATUS");
        // The script and the operator agree on the refusal they act on.
        assert!(MARIADB_INSTANCE_SCRIPT.contains(&format!("= {POSITION_REFUSED}")));
    }

    #[test]
    fn mysql_positions_compare_as_gtid_sets() {
        let a = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-100:102,\n5b1f2b3c-0000-0000-0000-000000000001:1-5";
        let a = Position::parse(Flavor::Mysql, a).unwrap();
        let b =
            Position::parse(Flavor::Mysql, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-99").unwrap();
        assert!(a.contains(&b) && !b.contains(&a));
        // A hole: 101 is missing from a, so a does not hold c.
        let c =
            Position::parse(Flavor::Mysql, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-101").unwrap();
        assert!(!a.contains(&c) && !c.contains(&a));
        assert_eq!(
            Position::parse(Flavor::Mysql, ""),
            Some(Position::Mysql(BTreeMap::new()))
        );
        assert_eq!(Position::parse(Flavor::Mysql, "u:5-1"), None);
        let members = [
            ("db-1".to_owned(), b.clone()),
            ("db-2".to_owned(), a.clone()),
        ];
        assert_eq!(most_advanced(&members), Some("db-2"));
        // Diverged: nobody holds everything.
        let members = [("db-1".to_owned(), a), ("db-2".to_owned(), c)];
        assert_eq!(most_advanced(&members), None);
    }

    #[test]
    fn mariadb_positions_compare_per_domain() {
        let a = Position::parse(Flavor::Mariadb, "0-1-42,1-2-7").unwrap();
        let b = Position::parse(Flavor::Mariadb, "0-1-40").unwrap();
        let c = Position::parse(Flavor::Mariadb, "0-3-41,1-2-9").unwrap();
        assert!(a.contains(&b) && !b.contains(&a));
        // Furthest in domain 0 is a, in domain 1 is c: neither holds all.
        assert!(!a.contains(&c) && !c.contains(&a));
        assert_eq!(
            most_advanced(&[("db-0".into(), b.clone()), ("db-1".into(), a.clone())]),
            Some("db-1")
        );
        assert_eq!(
            most_advanced(&[("db-0".into(), a), ("db-1".into(), c)]),
            None
        );
        // Equal positions: the first by name.
        assert_eq!(
            most_advanced(&[("db-2".into(), b.clone()), ("db-1".into(), b)]),
            Some("db-1")
        );
        for bad in ["0-1", "x-1-2", "0-1-2-3"] {
            assert_eq!(Position::parse(Flavor::Mariadb, bad), None, "{bad}");
        }
        assert!(
            !Position::parse(Flavor::Mariadb, "0-1-1")
                .unwrap()
                .contains(&Position::parse(Flavor::Mysql, "u:1").unwrap())
        );
    }
}
