#!/bin/sh
# database-operator: the start of every MariaDB server of a replicated
# Database (the mysql engine's mariadb flavor). The operator writes this
# file into <name>-config; the tests run this same file against real
# servers.
#
# The operator alone decides which pod is the primary, and says so in the
# pod's label example.com/role, read here through the downward API. Every
# member runs with server_id = its StatefulSet ordinal + 1.
# - The primary starts as it is (on an empty volume the image's entrypoint
#   initialises the server). A primary whose data is still a replica's
#   (master.info: the operator chose it and has not promoted it yet) starts
#   read-only and without replicating: only the operator promotes.
# - A replica on an empty volume copies the primary: a private server (no
#   network, no grant checks) is initialised and loaded with a consistent
#   dump of the primary (mariadb-dump --single-transaction --gtid
#   --master-data), which also sets its GTID position, written with the
#   binary log off so that the copy adds no transaction of its own.
# - A replica with data (restarted, or a former primary that may hold
#   writes the primary never received) first asks the primary for its GTID
#   position, from a private server. When the primary refuses it (error
#   1236: the position is not in the primary's history, or the binary logs
#   it needs are gone), its data is kept as <DATADIR>/.replaced (the server
#   ignores that directory: ignore_db_dirs) and it copies the primary afresh.
# - Every replica runs read-only (the admin login holds no READ_ONLY ADMIN,
#   so its writes stop too) and replicates from the primary Service by GTID
#   (MASTER_USE_GTID = slave_pos), so that after a promotion it follows the
#   new primary; its side of semi-synchronous replication as a primary is
#   off (the operator turns it on when it promotes it).
#
# Arguments: the server command, run with exec and this member's options
# added.
# Environment:
#   DATADIR                the data directory
#   POD_NAME               this pod (its ordinal gives the server_id)
#   ROLE_FILE              the downward API file of the pod's labels
#   PRIMARY_HOST           the primary Service's host name
#   PRIMARY_PORT           its port (default 3306)
#   REPLICATION_USER       the replication login
#   REPLICATION_PASSWORD   its password
#   MARIADB_ROOT_PASSWORD  the admin login's (root) password, to copy the primary
#   ROLE_WAIT_SECONDS      how long to wait for the role label (default 600)
#   FOLLOW_CHECK_SECONDS   how long to wait for the primary's answer to a
#                          replica's position (default 30)
set -eu

say() { echo "instance: $*" >&2; }

role() {
    sed -n 's/^example\.com\/role="\(.*\)"$/\1/p' "$ROLE_FILE" 2>/dev/null || true
}

: "${DATADIR:?DATADIR is required}" "${POD_NAME:?POD_NAME is required}"
ordinal=${POD_NAME##*-}
case "$ordinal" in
'' | *[!0-9]*)
    say "POD_NAME ${POD_NAME} does not end in an ordinal"
    exit 1
    ;;
esac
server_id=$((ordinal + 1))

waited=0
while role=$(role) && [ -z "$role" ]; do
    if [ "$waited" -ge "${ROLE_WAIT_SECONDS:-600}" ]; then
        say "the operator has not given this pod a role (label example.com/role) in ${waited}s"
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

case "$role" in
primary)
    if [ -f "$DATADIR/master.info" ]; then
        say "role primary, data of a replica: read-only and not replicating until the operator promotes it"
        exec "$@" --server-id="$server_id" --read-only=ON --skip-slave-start
    fi
    if [ ! -d "$DATADIR/mysql" ]; then
        # The image's entrypoint initialises the server: in sync mode its
        # first commits would wait for a replica that cannot exist yet. The
        # operator turns the primary's side on once a replica streams.
        say "role primary, initialising"
        exec "$@" --server-id="$server_id" --rpl-semi-sync-master-enabled=OFF
    fi
    say "role primary"
    exec "$@" --server-id="$server_id"
    ;;
replica) ;;
*)
    say "unknown role ${role}"
    exit 1
    ;;
esac

: "${PRIMARY_HOST:?PRIMARY_HOST is required}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${MARIADB_ROOT_PASSWORD:?}"
port=${PRIMARY_PORT:-3306}
private_socket="$DATADIR/dbop-private.sock"

# A string literal for SQL, with ' and \ escaped: the values never reach
# an argument list, only the client's standard input.
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/[\\\\']/\\\\&/g")"; }

# The statement that points this server at the primary Service.
change_master() {
    printf 'CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 5;\n' \
        "$(literal "$PRIMARY_HOST")" "$port" "$(literal "$REPLICATION_USER")" "$(literal "$REPLICATION_PASSWORD")"
}

# SQL on the private server.
private_sql() { mariadb --socket="$private_socket" --batch --skip-column-names "$@"; }

# Starts the server for this script alone: no network, no replication, no
# grant checks. Its process id is in $private_pid.
private_start() {
    rm -f "$private_socket"
    "$@" --server-id="$server_id" --skip-networking --skip-slave-start --skip-grant-tables \
        --socket="$private_socket" &
    private_pid=$!
    n=0
    until private_sql -e 'SELECT 1' >/dev/null 2>&1; do
        if ! kill -0 "$private_pid" 2>/dev/null; then
            say "the private server did not start"
            exit 1
        fi
        n=$((n + 1))
        if [ "$n" -ge 600 ]; then
            say "the private server did not answer in 600s"
            exit 1
        fi
        sleep 1
    done
}

private_stop() {
    mariadb-admin --socket="$private_socket" shutdown
    wait "$private_pid" || true
}

primary_up() {
    mariadb-admin ping --protocol=tcp -h "$PRIMARY_HOST" -P "$port" --connect-timeout=2 >/dev/null 2>&1
}

# One field of SHOW SLAVE STATUS on the private server.
slave_field() {
    mariadb --socket="$private_socket" -e 'SHOW SLAVE STATUS\G' | sed -n "s/^ *$1: //p"
}

# Copies the primary into the empty data directory.
seed() {
    until primary_up; do
        say "waiting for the primary at ${PRIMARY_HOST}:${port} to copy it"
        sleep 2
    done
    mkdir -p "$DATADIR"
    say "initialising an empty server"
    mariadb-install-db --datadir="$DATADIR" --skip-test-db --auth-root-authentication-method=normal >/dev/null
    private_start "$@"
    say "copying the primary (mariadb-dump --single-transaction --gtid --master-data)"
    status=$(mktemp)
    until {
        {
            MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb-dump --protocol=tcp -h "$PRIMARY_HOST" -P "$port" -u root \
                --single-transaction --gtid --master-data=1 --all-databases --routines --events --triggers \
                --ignore-table=mysql.gtid_slave_pos
            echo $? >"$status"
        } | private_sql --init-command='SET SESSION sql_log_bin = 0' && [ "$(cat "$status")" = 0 ]
    }; do
        say "copying the primary failed; retrying"
        sleep 5
    done
    rm -f "$status"
    # The copied grants take effect when the server starts for real (a
    # FLUSH PRIVILEGES here would lock this script out).
    change_master | private_sql
    say "copied the primary at GTID position $(private_sql -e 'SELECT @@GLOBAL.gtid_slave_pos')"
    private_stop
}

# Keeps what the data directory holds in .replaced, then copies the primary.
replace() {
    rm -rf "$DATADIR/.replacing"
    mkdir "$DATADIR/.replacing"
    find "$DATADIR" -mindepth 1 -maxdepth 1 ! -name .replacing ! -name .replaced \
        -exec mv {} "$DATADIR/.replacing/" \;
    rm -rf "$DATADIR/.replaced"
    mv "$DATADIR/.replacing" "$DATADIR/.replaced"
    say "kept the previous data as $DATADIR/.replaced"
    seed "$@"
}

if [ ! -d "$DATADIR/mysql" ]; then
    seed "$@"
elif primary_up; then
    if [ -f "$DATADIR/master.info" ]; then
        say "data of a replica: asking the primary for its position"
    else
        say "data of a former primary: asking the primary for its position"
    fi
    private_start "$@"
    # A former primary's own transactions are in its binary log, not in
    # gtid_slave_pos; for a replica both are the same.
    {
        echo 'STOP SLAVE;'
        echo 'SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos;'
        change_master
        echo 'START SLAVE IO_THREAD;'
    } | private_sql
    verdict=unknown
    n=0
    while [ "$n" -lt "${FOLLOW_CHECK_SECONDS:-30}" ]; do
        if [ "$(slave_field Last_IO_Errno)" = 1236 ]; then
            verdict=refused
            break
        fi
        if [ "$(slave_field Slave_IO_State)" = "Waiting for master to send event" ]; then
            verdict=follows
            break
        fi
        sleep 1
        n=$((n + 1))
    done
    if [ "$verdict" = refused ]; then
        say "the primary refused this server's position ($(slave_field Last_IO_Error)): copying the primary afresh"
        private_stop
        replace "$@"
    else
        if [ "$verdict" = unknown ]; then
            say "the primary did not answer this server's position in time: starting as a replica, which reconnects by itself"
        fi
        echo 'STOP SLAVE IO_THREAD;' | private_sql
        private_stop
    fi
elif [ ! -f "$DATADIR/master.info" ]; then
    # A former primary must not start before the primary has said it may
    # follow: it could take writes the primary never sees.
    until primary_up; do
        say "data of a former primary and no primary to follow yet: waiting"
        sleep 2
    done
    exec sh "$0" "$@"
else
    say "the primary is not reachable: starting as a replica, which reconnects by itself"
fi

say "role replica"
# A replica's commits are its applier's: in sync mode (semi-sync.cnf) they
# must not wait for acknowledgements, which only a primary receives.
exec "$@" --server-id="$server_id" --read-only=ON --rpl-semi-sync-master-enabled=OFF
