#!/bin/sh
# database-operator: the start of every MongoDB server of a replicated
# Database. The operator writes this file into <name>-config.
#
# Every member runs as a member of the replica set named after the
# Database (--replSet), and authenticates to the other members with the
# keyfile kept in the Secret <name>-replication. mongod refuses a keyfile
# that others may read, and a Secret volume's files are readable by the
# pod's group, so the key comes in through the environment and is written
# here, readable by the server's user alone. MongoDB elects its own
# primary; the operator initiates the set on pod 0 and adds and removes
# members as the Database scales.
#
# Arguments: the image's entrypoint and the server command with its options
# (run with exec, the replica-set options added). On an empty volume the
# image's entrypoint creates the admin login on a temporary server without
# --replSet, then starts the member.
# Environment:
#   DATADIR          the data directory, where the keyfile is written
#   REPLICA_SET      the replica set's name
#   REPLICA_SET_KEY  the members' shared key
set -eu

say() { echo "instance: $*" >&2; }

: "${DATADIR:?DATADIR is required}" "${REPLICA_SET:?REPLICA_SET is required}" "${REPLICA_SET_KEY:?REPLICA_SET_KEY is required}"

keyfile="$DATADIR/dbop-keyfile"
umask 077
rm -f "$keyfile"
printf '%s\n' "$REPLICA_SET_KEY" >"$keyfile"
chmod 400 "$keyfile"

say "member of replica set ${REPLICA_SET}"
exec "$@" --replSet "$REPLICA_SET" --keyFile "$keyfile"
