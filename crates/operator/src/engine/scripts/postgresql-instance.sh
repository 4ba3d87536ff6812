#!/bin/sh
# database-operator: the start of every PostgreSQL server of a replicated
# Database. The operator writes this file into <name>-config; the tests run
# this same file against real servers.
#
# The operator alone decides which pod is the primary, and says so in the
# pod's label example.com/role, read here through the downward API.
# - The primary starts as it is (on an empty volume the image's entrypoint
#   initialises the cluster). A primary volume that still holds
#   standby.signal starts as a standby: only the operator promotes, with
#   pg_promote(), which starts a new timeline.
# - A replica on an empty volume copies the primary (pg_basebackup).
# - A replica whose volume ran as a primary (no standby.signal: it may hold
#   writes the new primary never received) is fenced: it is rewound to the
#   primary's history (pg_rewind), and when that fails copied afresh, its
#   old data kept beside the volume's data directory as
#   <PGDATA>.replaced. A replica that was already a standby is rewound too
#   (a no-op unless it received WAL the new primary never had).
# - A replica whose slot the primary gave up (it was away so long that its
#   WAL exceeded max_slot_wal_keep_size: the slot is "lost") can never
#   stream again: its slot is dropped and it is copied afresh (the operator
#   makes the slot again).
# - Every replica starts as a hot standby that streams from the primary
#   Service on the latest timeline, through its own replication slot.
#
# Arguments: the server command, run with exec and these settings added.
# Environment:
#   PGDATA                the data directory
#   POD_NAME              this pod (its slot and application name)
#   ROLE_FILE             the downward API file of the pod's labels
#   PRIMARY_HOST          the primary Service's host name
#   PRIMARY_PORT          its port (default 5432)
#   REPLICATION_USER      the replication login
#   REPLICATION_PASSWORD  its password
#   ROLE_WAIT_SECONDS     how long to wait for the role label (default 600)
set -eu

say() { echo "instance: $*" >&2; }

role() {
    sed -n 's/^example\.com\/role="\(.*\)"$/\1/p' "$ROLE_FILE" 2>/dev/null || true
}

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
    if [ -f "$PGDATA/standby.signal" ]; then
        say "role primary, data of a standby: starting as a standby until the operator promotes it"
    else
        say "role primary"
        exec "$@"
    fi
    ;;
replica) ;;
*)
    say "unknown role ${role}"
    exit 1
    ;;
esac

: "${PRIMARY_HOST:?PRIMARY_HOST is required}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${POD_NAME:?}"
port=${PRIMARY_PORT:-5432}
slot=$(printf '%s' "$POD_NAME" | tr -c 'a-z0-9_' '_' | cut -c1-63)

# The password goes to a file only the server's user reads, never into an
# argument list.
umask 077
passfile="$(dirname "$PGDATA")/replication.pgpass"
escaped=$(printf '%s' "$REPLICATION_PASSWORD" | sed 's/[\\:]/\\&/g')
user_escaped=$(printf '%s' "$REPLICATION_USER" | sed 's/[\\:]/\\&/g')
printf '*:*:*:%s:%s\n' "$user_escaped" "$escaped" >"$passfile"

# A conninfo value in single quotes, with ' and \ escaped.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/[\\\\']/\\\\&/g")"; }
conninfo="host=$(quote "$PRIMARY_HOST") port=$(quote "$port") user=$(quote "$REPLICATION_USER") passfile=$(quote "$passfile") application_name=$(quote "$slot")"

primary_up() {
    pg_isready -q -h "$PRIMARY_HOST" -p "$port" -d "$conninfo dbname=postgres"
}

seed() {
    until primary_up; do
        say "waiting for the primary at ${PRIMARY_HOST}:${port} to copy it"
        sleep 2
    done
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    say "copying the primary (pg_basebackup)"
    # The replication login may not exist yet on a new primary: retry.
    until find "$PGDATA" -mindepth 1 -delete &&
        pg_basebackup --pgdata="$PGDATA" --dbname="$conninfo" --wal-method=stream \
            --checkpoint=fast --no-password; do
        say "pg_basebackup failed; retrying"
        sleep 5
    done
}

# Keeps what the volume held, then copies the primary.
replace() {
    rm -rf "$PGDATA.replaced"
    mv "$PGDATA" "$PGDATA.replaced"
    say "kept the previous data as $PGDATA.replaced"
    seed
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    seed
elif primary_up; then
    if [ -f "$PGDATA/standby.signal" ]; then
        say "data of a standby: rewinding to the primary's history if it diverged"
    else
        say "data of a former primary: fencing it as a replica (pg_rewind)"
    fi
    slot_status=$(psql -XAtq -d "$conninfo dbname=postgres" \
        -c "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '$slot'" || true)
    if [ "$slot_status" = lost ]; then
        say "the primary no longer has the WAL this replica needs (its slot $slot is lost): copying the primary afresh"
        psql -XAtq -d "$conninfo dbname=postgres" -c "SELECT pg_drop_replication_slot('$slot')" >/dev/null || true
        replace
    elif ! pg_rewind --target-pgdata="$PGDATA" --source-server="$conninfo dbname=postgres"; then
        say "pg_rewind failed: copying the primary afresh"
        replace
    fi
elif [ ! -f "$PGDATA/standby.signal" ]; then
    # A former primary must not start before it is rewound: it could take
    # writes the primary never sees.
    until primary_up; do
        say "data of a former primary and no primary to rewind to yet: waiting"
        sleep 2
    done
    exec sh "$0" "$@"
else
    say "the primary is not reachable: starting as a standby, which reconnects by itself"
fi

touch "$PGDATA/standby.signal"
exec "$@" -c "primary_conninfo=$conninfo" -c "primary_slot_name=$slot" \
    -c recovery_target_timeline=latest -c hot_standby=on
