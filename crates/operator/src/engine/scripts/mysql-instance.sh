#!/bin/sh
# database-operator: the start of every MySQL server of a replicated
# Database (the mysql engine's mysql flavor). The operator writes this file
# into <name>-config; the tests run this same file against real servers.
#
# The operator alone decides which pod is the primary, and says so in the
# pod's label example.com/role, read here through the downward API. Every
# member runs with server_id = its StatefulSet ordinal + 1, GTIDs on
# (gtid_mode, enforce_gtid_consistency) and the clone plugin loaded.
# - The primary starts as it is (on an empty volume the image's entrypoint
#   initialises the server). A primary whose data is still a replica's (a
#   replication source configured: the operator chose it and has not
#   promoted it yet) starts with super_read_only and without replicating:
#   only the operator promotes.
# - A replica on an empty volume copies the primary with the clone plugin:
#   an empty server is initialised, started privately (no network) and
#   asked to CLONE INSTANCE FROM the primary Service as the replication
#   login (BACKUP_ADMIN on the primary). The copy holds the primary's data,
#   logins and executed GTID set. The server stops after a clone (it has no
#   supervisor to restart it): it is started privately once more to point it
#   at the primary (SOURCE_AUTO_POSITION = 1).
# - A replica with data (restarted, or a former primary that may hold
#   writes the primary never received) asks the primary whether it may
#   follow: its executed GTID set must be contained in the primary's (a
#   MySQL source does not refuse a replica's transactions of other servers,
#   so a former primary's unreplicated writes would stay unnoticed: errant
#   transactions), and the primary must still have every transaction it
#   lacks (gtid_purged). When either fails, its data is kept as
#   <DATADIR>/.replaced (MySQL ignores directories starting with a dot) and
#   it copies the primary afresh.
# - Every replica runs with super_read_only (which stops every login's
#   writes, the admin's too) and replicates from the primary Service by GTID
#   auto-positioning, so that after a promotion it follows the new primary;
#   its side of semi-synchronous replication as a primary is off (the
#   operator turns it on when it promotes it).
#
# Arguments: the image's entrypoint (docker-entrypoint.sh, only used to
# initialise a primary's empty volume) and the server command, run with
# exec and this member's options added.
# Environment:
#   DATADIR                the data directory
#   POD_NAME               this pod (its ordinal gives the server_id)
#   ROLE_FILE              the downward API file of the pod's labels
#   PRIMARY_HOST           the primary Service's host name
#   PRIMARY_PORT           its port (default 3306)
#   REPLICATION_USER       the replication login
#   REPLICATION_PASSWORD   its password
#   MYSQL_ROOT_PASSWORD    the admin login's (root) password, which a copy has
#   ROLE_WAIT_SECONDS      how long to wait for the role label (default 600)
#   FOLLOW_CHECK_SECONDS   how long to wait for the primary's answer to a
#                          member with data (default 30)
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

# The image's entrypoint initialises an empty volume; every other start
# runs the server itself.
entrypoint=
case "${1:-}" in
docker-entrypoint.sh | */docker-entrypoint.sh)
    entrypoint=$1
    shift
    ;;
esac

waited=0
while role=$(role) && [ -z "$role" ]; do
    if [ "$waited" -ge "${ROLE_WAIT_SECONDS:-600}" ]; then
        say "the operator has not given this pod a role (label example.com/role) in ${waited}s"
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

private_socket="$DATADIR/dbop-private.sock"
# Written when the member starts as a replica: a primary's start then looks
# whether its data is still a replica's.
replica_mark="$DATADIR/dbop-replica"

# SQL on the private server, as root (its password is the primary's once
# the server holds a copy); --raw: a GTID set of several servers spans
# lines, which --batch alone would print as "\n".
private_sql() {
    MYSQL_PWD="${private_password-}" mysql --socket="$private_socket" -u root --batch --raw --skip-column-names "$@"
}

# Starts the server for this script alone: no network, no replication. Its
# process id is in $private_pid.
private_start() {
    rm -f "$private_socket"
    "$@" --server-id="$server_id" --skip-networking --skip-replica-start --socket="$private_socket" \
        --mysqlx=OFF &
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
    MYSQL_PWD="${private_password-}" mysqladmin --socket="$private_socket" -u root shutdown
    wait "$private_pid" || true
}

case "$role" in
primary)
    if [ -f "$replica_mark" ]; then
        private_password=${MYSQL_ROOT_PASSWORD:?}
        private_start "$@"
        source=$(private_sql -e 'SELECT COUNT(*) FROM performance_schema.replication_connection_configuration')
        private_stop
        if [ "$source" != 0 ]; then
            say "role primary, data of a replica: read-only and not replicating until the operator promotes it"
            exec "$@" --server-id="$server_id" --super-read-only=ON --skip-replica-start
        fi
        rm -f "$replica_mark"
    fi
    if [ ! -d "$DATADIR/mysql" ] && [ -n "$entrypoint" ]; then
        # The image's entrypoint initialises the server: in sync mode its
        # first commits would wait for a replica that cannot exist yet. The
        # operator turns the primary's side on once a replica streams.
        say "role primary, initialising"
        exec "$entrypoint" "$@" --server-id="$server_id" --loose-rpl-semi-sync-source-enabled=OFF
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

: "${PRIMARY_HOST:?PRIMARY_HOST is required}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${MYSQL_ROOT_PASSWORD:?}"
port=${PRIMARY_PORT:-3306}

# A string literal for SQL, with ' and \ escaped: the values never reach
# an argument list, only the client's standard input.
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/[\\\\']/\\\\&/g")"; }

# The statement that points this server at the primary Service.
change_source() {
    printf 'CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, SOURCE_USER = %s, SOURCE_PASSWORD = %s, SOURCE_AUTO_POSITION = 1, GET_SOURCE_PUBLIC_KEY = 1, SOURCE_CONNECT_RETRY = 5;\n' \
        "$(literal "$PRIMARY_HOST")" "$port" "$(literal "$REPLICATION_USER")" "$(literal "$REPLICATION_PASSWORD")"
}

# SQL on the primary, as the replication login.
primary_sql() {
    MYSQL_PWD="$REPLICATION_PASSWORD" mysql --protocol=tcp -h "$PRIMARY_HOST" -P "$port" -u "$REPLICATION_USER" \
        --get-server-public-key --connect-timeout=5 --batch --skip-column-names "$@"
}

primary_up() {
    mysqladmin ping --protocol=tcp -h "$PRIMARY_HOST" -P "$port" --connect-timeout=2 >/dev/null 2>&1
}

# Whether the clone ended with the server's own restart, which it cannot do
# without a supervisor (error 3707): the copy is in place.
clone_restarts() {
    case "$(cat "$DATADIR/dbop-clone.err")" in
    *"ERROR 3707"*) return 0 ;;
    *) return 1 ;;
    esac
}

# Copies the primary into the empty data directory.
seed() {
    until primary_up; do
        say "waiting for the primary at ${PRIMARY_HOST}:${port} to copy it"
        sleep 2
    done
    mkdir -p "$DATADIR"
    say "initialising an empty server"
    "$@" --server-id="$server_id" --initialize-insecure >/dev/null 2>&1 || {
        say "initialising the data directory failed"
        exit 1
    }
    private_password=
    private_start "$@"
    say "copying the primary (CLONE INSTANCE)"
    until {
        printf 'SET GLOBAL clone_valid_donor_list = %s;\n' "$(literal "${PRIMARY_HOST}:${port}")"
        printf 'CLONE INSTANCE FROM %s@%s:%s IDENTIFIED BY %s;\n' \
            "$(literal "$REPLICATION_USER")" "$(literal "$PRIMARY_HOST")" "$port" "$(literal "$REPLICATION_PASSWORD")"
    } | private_sql 2>"$DATADIR/dbop-clone.err" || clone_restarts; do
        say "copying the primary failed ($(cat "$DATADIR/dbop-clone.err")); retrying"
        sleep 5
    done
    rm -f "$DATADIR/dbop-clone.err"
    # Without a supervisor the server stops once the copy is in place
    # (error 3707); its next start finishes the clone.
    wait "$private_pid" || true
    private_password=$MYSQL_ROOT_PASSWORD
    private_start "$@"
    change_source | private_sql
    say "copied the primary at GTID set $(private_sql -e 'SELECT @@GLOBAL.gtid_executed' | tr -d '\n')"
    private_stop
}

# Keeps what the data directory holds in .replaced, then copies the primary.
replace() {
    rm -rf "$DATADIR/.replacing"
    mkdir "$DATADIR/.replacing"
    # (No find: the image is a slim one.)
    for entry in "$DATADIR"/* "$DATADIR"/.[!.]* "$DATADIR"/..?*; do
        [ -e "$entry" ] || continue
        case "${entry##*/}" in
        .replacing | .replaced) ;;
        *) mv "$entry" "$DATADIR/.replacing/" ;;
        esac
    done
    rm -rf "$DATADIR/.replaced"
    mv "$DATADIR/.replacing" "$DATADIR/.replaced"
    say "kept the previous data as $DATADIR/.replaced"
    seed "$@"
}

if [ ! -d "$DATADIR/mysql" ]; then
    seed "$@"
else
    say "data of a member: asking the primary whether it may follow"
    private_password=$MYSQL_ROOT_PASSWORD
    private_start "$@"
    source=$(private_sql -e 'SELECT COUNT(*) FROM performance_schema.replication_connection_configuration')
    mine=$(private_sql -e 'SELECT @@GLOBAL.gtid_executed' | tr -d '\n')
    verdict=unknown
    n=0
    while [ "$n" -lt "${FOLLOW_CHECK_SECONDS:-30}" ]; do
        if verdict=$(printf 'SELECT GTID_SUBSET(%s, @@GLOBAL.gtid_executed), GTID_SUBSET(@@GLOBAL.gtid_purged, %s);\n' \
            "$(literal "$mine")" "$(literal "$mine")" | primary_sql 2>"$DATADIR/dbop-check.err"); then
            break
        fi
        verdict=unknown
        sleep 1
        n=$((n + 1))
    done
    case "$verdict" in
    "1	1")
        change_source | private_sql
        private_stop
        ;;
    "0	"*)
        say "this server holds transactions the primary never had (GTID set ${mine}): copying the primary afresh"
        private_stop
        replace "$@"
        ;;
    unknown)
        private_stop
        if [ "$source" = 0 ]; then
            # A former primary must not start before the primary has said
            # it may follow: it could hold, or take, writes the primary
            # never sees.
            say "data of a former primary and no answer from the primary ($(cat "$DATADIR/dbop-check.err")): waiting for it"
            sleep 2
            exec sh "$0" ${entrypoint:+"$entrypoint"} "$@"
        fi
        # A member with a source has run read-only since the primary last
        # said it may follow.
        say "the primary did not answer ($(cat "$DATADIR/dbop-check.err")): starting as a replica, which reconnects by itself"
        ;;
    *)
        say "the primary no longer has transactions this server lacks (GTID set ${mine}): copying the primary afresh"
        private_stop
        replace "$@"
        ;;
    esac
    rm -f "$DATADIR/dbop-check.err"
fi

touch "$replica_mark"
say "role replica"
# A replica's commits are its applier's: in sync mode (semi-sync.cnf) they
# must not wait for acknowledgements, which only a primary receives.
exec "$@" --server-id="$server_id" --super-read-only=ON --loose-rpl-semi-sync-source-enabled=OFF
