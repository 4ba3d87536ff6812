#!/usr/bin/env bash
# Installs the database servers that the testkit's `servers` fixtures start
# (crates/testkit/src/servers/): PostgreSQL and MariaDB from Debian's
# packages, MySQL from Debian unstable's packages unpacked beside the
# system (${MYSQL_DIR}), FerretDB (a MongoDB wire-protocol server on SQLite, our
# stand-in for mongod) built from its Go module into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/servers/ferretdb-<version>/bin/ferretdb
# and versitygw (an S3 gateway; its posix backend stores buckets and objects
# as folders and files) built from its Go module into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/servers/versitygw-<version>/bin/versitygw
# It also creates the system user the servers run as when tests run as root
# (PostgreSQL refuses to run as root). Idempotent: what is there already is
# kept, so a second run takes about a second. The packages' own services
# (the system-wide postgresql/mariadb instances) are not started: tests
# start private instances on free loopback ports.
#
# Usage: hack/servers/install.sh [--force-ferretdb] [--force-versitygw] [--with-mongo-tools]
#   --force-ferretdb    rebuild FerretDB even if the cached binary is there
#   --force-versitygw   rebuild versitygw even if the cached binary is there
#   --with-mongo-tools  also try to build mongodump/mongorestore (see below)
# Environment:
#   DATABASE_OPERATOR_CACHE  cache root (default ~/.cache/database-operator)
#
# Needs root (or sudo) for apt-get/useradd; Go (>= 1.24, >= 1.25 for versitygw) and the Go module
# proxy for FerretDB and versitygw.
set -euo pipefail

# Pinned versions. The Rust fixtures read FERRETDB_VERSION and CACHE_LAYOUT
# from this file (include_str!), so the two never disagree about the cache.
FERRETDB_VERSION="v1.24.2"
# Bump when the cache folder's contents (or the patch below) change, to force
# a rebuild.
CACHE_LAYOUT="2"
# versitygw release (github.com/versity/versitygw, Apache-2.0) and its own
# cache layout; the S3 fixture reads both from here.
VERSITYGW_VERSION="v1.8.0"
VERSITYGW_LAYOUT="1"
# MySQL from Debian sid, unpacked beside the system (see below); the Rust
# fixtures read MYSQL_DIR from here.
MYSQL_DIR="/opt/database-operator/mysql"
MYSQL_LAYOUT="2"
MYSQL_DEBIAN_MIRROR="http://deb.debian.org/debian"
# System user the fixtures run servers as when the tests run as root.
TEST_USER="dbtest"
# mongo-tools has no v-prefixed tags; a commit of 100.10.0. The Go module
# proxy reachable here answers 403 for this module (any version), so this
# is opt-in and allowed to fail.
MONGO_TOOLS_COMMIT="38b6cf3d7595330c9a6d3e258c25d87e8d700580"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
FERRET_DIR="${CACHE_ROOT}/servers/ferretdb-${FERRETDB_VERSION}"
FERRET_STAMP="${FERRET_DIR}/bin/.complete"
WANT_FERRET_STAMP="ferretdb=${FERRETDB_VERSION} layout=${CACHE_LAYOUT}"
VERSITYGW_DIR="${CACHE_ROOT}/servers/versitygw-${VERSITYGW_VERSION}"
VERSITYGW_STAMP="${VERSITYGW_DIR}/bin/.complete"
WANT_VERSITYGW_STAMP="versitygw=${VERSITYGW_VERSION} layout=${VERSITYGW_LAYOUT}"
MYSQL_STAMP="${MYSQL_DIR}/bin/.complete"
WANT_MYSQL_STAMP="mysql layout=${MYSQL_LAYOUT}"
MONGO_TOOLS_DIR="${CACHE_ROOT}/servers/mongo-tools-${MONGO_TOOLS_COMMIT:0:12}"

force_ferretdb=false
force_versitygw=false
with_mongo_tools=false
for arg in "$@"; do
  case "$arg" in
    --force-ferretdb) force_ferretdb=true ;;
    --force-versitygw) force_versitygw=true ;;
    --with-mongo-tools) with_mongo_tools=true ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null && SUDO="sudo" || SUDO=""
fi
as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@";
  elif [[ -n "$SUDO" ]]; then sudo "$@";
  else echo "error: need root (or sudo) for: $*" >&2; return 1; fi
}

report() { # component, start seconds, what happened
  echo "$1: $3 ($(( SECONDS - $2 ))s)"
}

# --- Debian packages -------------------------------------------------------

pg_ready() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    [[ -x "$bin/initdb" && -x "$bin/postgres" && -x "$bin/pg_ctl" && -x "$bin/pg_dump" \
       && -x "$bin/pg_dumpall" && -x "$bin/psql" && -x "$bin/pg_isready" ]] && return 0
  done
  return 1
}
mariadb_ready() {
  [[ -x /usr/sbin/mariadbd ]] && command -v mariadb-install-db >/dev/null \
    && command -v mysqladmin >/dev/null && command -v mariadb-dump >/dev/null \
    && command -v mysqldump >/dev/null && command -v mysql >/dev/null
}

apt_install() { # packages...
  # Keep the packages' init scripts from starting system-wide instances.
  local made_policy=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    made_policy=true
  fi
  local status=0
  # An empty package list (fresh image) needs one update first.
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" || status=$?
  fi
  if $made_policy; then as_root rm -f /usr/sbin/policy-rc.d; fi
  # Where systemd runs, policy-rc.d may not have been consulted: stop and
  # disable the system services (only theirs, by unit name).
  if [[ -d /run/systemd/system ]]; then
    local unit
    for unit in postgresql mariadb; do
      as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
  return $status
}

t=$SECONDS
if pg_ready; then
  report postgresql $t "already installed ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ' | sed 's/ $//'))"
else
  apt_install postgresql postgresql-client
  pg_ready || { echo "error: PostgreSQL binaries missing after install" >&2; exit 1; }
  report postgresql $t "installed"
fi

t=$SECONDS
if mariadb_ready; then
  report mariadb $t "already installed ($(/usr/sbin/mariadbd --version 2>/dev/null | head -1))"
else
  apt_install mariadb-server mariadb-client
  mariadb_ready || { echo "error: MariaDB binaries missing after install" >&2; exit 1; }
  report mariadb $t "installed"
fi

# --- MySQL (Debian sid, beside the system) ------------------------------------
#
# Debian's stable releases ship MariaDB only; unstable (sid) ships Oracle's
# MySQL (mysql-server-core, 9.7 at the time of writing, the successor of
# 8.4 LTS with the same replication statements). Its binaries need sid's C
# library, so they are not installed into the system: apt resolves
# mysql-server-core and mysql-client-core against sid with a private state
# folder, the packages are unpacked into ${MYSQL_DIR}/root (nothing of the
# system changes), and small wrappers in ${MYSQL_DIR}/bin run each program
# through sid's own dynamic loader with sid's libraries. The folder is
# outside $HOME so that the servers' system user can run it.
# The version is whatever sid has when first installed; it is kept (and
# named in ${MYSQL_DIR}/bin/.complete) until the folder is removed.

mysql_ready() {
  [[ -f "$MYSQL_STAMP" && "$(head -1 "$MYSQL_STAMP")" == "$WANT_MYSQL_STAMP" && -x "${MYSQL_DIR}/bin/mysqld" ]]
}

t=$SECONDS
if mysql_ready; then
  report mysql $t "cached ${MYSQL_DIR} ($(sed -n 2p "$MYSQL_STAMP"))"
else
  as_root mkdir -p "$MYSQL_DIR"
  as_root chown "$(id -u):$(id -g)" "$MYSQL_DIR"
  exec 7>"${MYSQL_DIR}/.build.lock"
  flock 7
  if mysql_ready; then
    report mysql $t "installed by another process in ${MYSQL_DIR}"
  else
    apt_dir="${MYSQL_DIR}/apt"
    rm -rf "$apt_dir" "${MYSQL_DIR}/root.tmp" "${MYSQL_DIR}/bin"
    mkdir -p "$apt_dir"/{etc/sources.list.d,etc/preferences.d,state/lists/partial,cache/archives/partial}
    touch "$apt_dir/state/status"
    echo "deb [trusted=yes] ${MYSQL_DEBIAN_MIRROR} sid main" > "$apt_dir/etc/sources.list"
    apt_opts=(
      -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
      -o "Dir::Etc::Preferences=$apt_dir/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
      -o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/state/status"
      -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1
      -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Sandbox::User=root
    )
    apt-get "${apt_opts[@]}" -qq update
    apt-get "${apt_opts[@]}" -qq install --download-only -y --no-install-recommends \
      mysql-server-core mysql-client-core >/dev/null
    mkdir -p "${MYSQL_DIR}/root.tmp"
    for deb in "$apt_dir"/cache/archives/*.deb; do dpkg-deb -x "$deb" "${MYSQL_DIR}/root.tmp"; done
    rm -rf "${MYSQL_DIR}/root" && mv "${MYSQL_DIR}/root.tmp" "${MYSQL_DIR}/root"
    root="${MYSQL_DIR}/root"
    mkdir -p "${MYSQL_DIR}/bin"
    for program in mysqld mysql mysqladmin mysqldump; do
      case "$program" in mysqld) path="$root/usr/sbin/mysqld" ;; *) path="$root/usr/bin/$program" ;; esac
      {
        echo '#!/bin/sh'
        echo "# $program from Debian sid, run with sid's loader and libraries (hack/servers/install.sh)."
        if [[ "$program" == mysqld ]]; then
          # --no-defaults and --defaults-file must come first.
          echo 'first=""'
          echo 'case "${1:-}" in --no-defaults | --defaults-file=* | --defaults-extra-file=*) first=$1; shift ;; esac'
          echo "exec \"$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\" --library-path \"$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu\" --argv0 \"$path\" \"$path\" \${first:+\"\$first\"} --basedir=\"$root/usr\" --plugin-dir=\"$root/usr/lib/mysql/plugin\" --lc-messages-dir=\"$root/usr/share/mysql\" --character-sets-dir=\"$root/usr/share/mysql/charsets\" \"\$@\""
        else
          echo "exec \"$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\" --library-path \"$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu\" --argv0 \"$path\" \"$path\" --character-sets-dir=\"$root/usr/share/mysql/charsets\" \"\$@\""
        fi
      } > "${MYSQL_DIR}/bin/$program"
      chmod 755 "${MYSQL_DIR}/bin/$program"
    done
    chmod -R a+rX "$MYSQL_DIR"
    version="$("${MYSQL_DIR}/bin/mysqld" --version)" || { echo "error: sid's mysqld does not run here" >&2; exit 1; }
    "${MYSQL_DIR}/bin/mysql" --version >/dev/null
    rm -rf "$apt_dir"
    printf '%s\n%s\n' "$WANT_MYSQL_STAMP" "$version" > "$MYSQL_STAMP"
    report mysql $t "installed ${MYSQL_DIR} ($version)"
  fi
  exec 7>&-
fi

# --- test user ---------------------------------------------------------------

t=$SECONDS
if id -u "$TEST_USER" >/dev/null 2>&1; then
  report "user $TEST_USER" $t "exists"
elif [[ "$(id -u)" == 0 || -n "$SUDO" ]]; then
  as_root useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$TEST_USER"
  report "user $TEST_USER" $t "created"
else
  report "user $TEST_USER" $t "skipped (not root; servers will run as $(id -un))"
fi

# --- FerretDB ----------------------------------------------------------------

ferret_built() {
  [[ -f "$FERRET_STAMP" && "$(cat "$FERRET_STAMP")" == "$WANT_FERRET_STAMP" && -x "${FERRET_DIR}/bin/ferretdb" ]]
}

t=$SECONDS
if ! $force_ferretdb && ferret_built; then
  report ferretdb $t "cached ${FERRET_DIR}/bin/ferretdb"
else
  command -v go >/dev/null || { echo "error: 'go' not found in PATH (Go >= 1.24 needed to build FerretDB)" >&2; exit 1; }
  mkdir -p "$FERRET_DIR"
  # One build at a time per cache folder (several test binaries may call us).
  exec 9>"${FERRET_DIR}/.build.lock"
  flock 9
  if ! $force_ferretdb && ferret_built; then
    report ferretdb $t "built by another process in ${FERRET_DIR}/bin"
  else
    work="$(mktemp -d)"
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    # `go install module@version` cannot work: FerretDB panics at start
    # unless build/version/version.txt (generated, not in the module zip)
    # names the version. So build a copy of the module with that file.
    src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@${FERRETDB_VERSION}" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$src" && -d "$src" ]] || { echo "error: could not download FerretDB ${FERRETDB_VERSION}" >&2; exit 1; }
    cp -r "$src" "$work/src"
    chmod -R u+w "$work/src"
    echo "${FERRETDB_VERSION}" > "$work/src/build/version/version.txt"
    echo "testkit" > "$work/src/build/version/package.txt"
    # One-line patch: end the SCRAM conversation (done: true) on the step
    # that validates the client's proof, as MongoDB >= 4.4 does for drivers
    # that send `skipEmptyExchange: true`. FerretDB 1.24 always answers
    # done: false there and waits for an extra empty saslContinue; the Rust
    # driver (mongodb >= 3.9) no longer sends it and fails with "expected
    # SCRAM authentication to have completed". Drivers that do send the empty
    # round trip still get done: true for it.
    sasl="$work/src/internal/handler/msg_saslcontinue.go"
    perl -0pi -e 's{"done", valid, // for compatibility[^\n]*\n}{"done", conv.Valid(), // testkit: done as soon as the proof is valid\n}; s{(\n\th\.L\.DebugContext\(connCtx, "saslContinue: step succeed", attrs\.\.\.\)\n)}{\n\tif conv.Valid() {\n\t\tconninfo.Get(connCtx).SetBypassBackendAuth()\n\t}\n$1}' "$sasl"
    if ! grep -q '"done", conv.Valid(), // testkit' "$sasl" || ! grep -q 'if conv.Valid() {' "$sasl"; then
      echo "error: patching $sasl failed (FerretDB source changed?)" >&2; exit 1
    fi
    mkdir -p "${FERRET_DIR}/bin"
    (cd "$work/src" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -buildvcs=false \
      -o "${FERRET_DIR}/bin/ferretdb.tmp" ./cmd/ferretdb)
    mv -f "${FERRET_DIR}/bin/ferretdb.tmp" "${FERRET_DIR}/bin/ferretdb"
    "${FERRET_DIR}/bin/ferretdb" --version >/dev/null
    echo "$WANT_FERRET_STAMP" > "$FERRET_STAMP"
    report ferretdb $t "built ${FERRET_DIR}/bin/ferretdb"
  fi
  exec 9>&-
fi

# --- versitygw ---------------------------------------------------------------

versitygw_built() {
  [[ -f "$VERSITYGW_STAMP" && "$(cat "$VERSITYGW_STAMP")" == "$WANT_VERSITYGW_STAMP" \
     && -x "${VERSITYGW_DIR}/bin/versitygw" ]]
}

t=$SECONDS
if ! $force_versitygw && versitygw_built; then
  report versitygw $t "cached ${VERSITYGW_DIR}/bin/versitygw"
else
  command -v go >/dev/null || { echo "error: 'go' not found in PATH (Go >= 1.25 needed to build versitygw)" >&2; exit 1; }
  mkdir -p "$VERSITYGW_DIR"
  # One build at a time per cache folder (several test binaries may call us).
  exec 8>"${VERSITYGW_DIR}/.build.lock"
  flock 8
  if ! $force_versitygw && versitygw_built; then
    report versitygw $t "built by another process in ${VERSITYGW_DIR}/bin"
  else
    # The module has no replace directives, so `go install module@version`
    # builds it as released (pure Go: the posix backend's xattrs go through
    # syscalls). The Makefile would stamp the version with -ldflags; so do we.
    rm -rf "${VERSITYGW_DIR}/bin.tmp"
    mkdir -p "${VERSITYGW_DIR}/bin.tmp"
    GOBIN="${VERSITYGW_DIR}/bin.tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
      go install -trimpath -buildvcs=false \
      -ldflags "-X=main.Version=${VERSITYGW_VERSION} -X=main.Build=testkit" \
      "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
    "${VERSITYGW_DIR}/bin.tmp/versitygw" --version | grep -q "${VERSITYGW_VERSION}" \
      || { echo "error: built versitygw does not report ${VERSITYGW_VERSION}" >&2; exit 1; }
    mkdir -p "${VERSITYGW_DIR}/bin"
    mv -f "${VERSITYGW_DIR}/bin.tmp/versitygw" "${VERSITYGW_DIR}/bin/versitygw"
    rm -rf "${VERSITYGW_DIR}/bin.tmp"
    echo "$WANT_VERSITYGW_STAMP" > "$VERSITYGW_STAMP"
    report versitygw $t "built ${VERSITYGW_DIR}/bin/versitygw"
  fi
  exec 8>&-
fi

# --- mongo-tools (optional) --------------------------------------------------

t=$SECONDS
if ! $with_mongo_tools; then
  report mongo-tools $t "skipped (opt-in: --with-mongo-tools; the Go module proxy here refuses github.com/mongodb/mongo-tools)"
elif [[ -x "${MONGO_TOOLS_DIR}/bin/mongodump" && -x "${MONGO_TOOLS_DIR}/bin/mongorestore" ]]; then
  report mongo-tools $t "cached ${MONGO_TOOLS_DIR}/bin"
elif GOBIN="${MONGO_TOOLS_DIR}/bin" go install \
    "github.com/mongodb/mongo-tools/mongodump@${MONGO_TOOLS_COMMIT}" \
    "github.com/mongodb/mongo-tools/mongorestore@${MONGO_TOOLS_COMMIT}"; then
  report mongo-tools $t "built ${MONGO_TOOLS_DIR}/bin"
else
  report mongo-tools $t "FAILED to build (see above); skipped"
fi
