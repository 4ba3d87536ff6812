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
//! This module is not yet driven by the Database controller, which
//! replicates PostgreSQL only so far (README, Limitations).

use std::collections::BTreeMap;

use database_operator_api::v1::Flavor;

use crate::users::UserError;
use crate::users::quote::{mysql_account, mysql_account_at, mysql_literal};

/// Server settings every member of a replicated mysql Database needs (its
/// `server_id` is per member: [`server_id`]).
pub fn settings(flavor: Flavor) -> String {
    let common = "log_bin = binlog\nbinlog_format = ROW\n";
    match flavor {
        Flavor::Mysql => format!(
            "{common}gtid_mode = ON\nenforce_gtid_consistency = ON\nlog_replica_updates = ON\n"
        ),
        // GTIDs are always on; strict mode refuses out-of-order GTIDs, which
        // only a diverged member would write.
        Flavor::Mariadb => format!("{common}gtid_strict_mode = ON\nlog_slave_updates = ON\n"),
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
pub fn promote(flavor: Flavor) -> Vec<String> {
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

/// The login the operator runs [`follow`], [`read_only`] and [`promote`]
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
            promote(Flavor::Mysql),
            [
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            promote(Flavor::Mariadb),
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
