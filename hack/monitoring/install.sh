#!/usr/bin/env bash
# Installs what the monitoring tests need:
#   - promtool, from Debian's `prometheus` package (checks and unit-tests the
#     alert rules the operator generates);
#   - the three Prometheus exporters the operator runs as sidecars, built from
#     their Go modules at the versions the operator pins (the image tags in
#     crates/operator/src/builders/monitoring/exporter.rs), into
#       ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/exporters/<name>-<version>/<name>
#     The metric-name tests run them against the testkit's real servers.
# Idempotent: what is there already is kept.
#
# Environment: DATABASE_OPERATOR_CACHE  cache root (default ~/.cache/database-operator)
set -euo pipefail

# Pinned versions: the Rust side reads these lines (include_str!), so the
# image tags and the binaries tested never disagree. These are the newest
# versions the Go module proxy reachable here serves.
POSTGRES_EXPORTER_VERSION="v0.17.1"
MYSQLD_EXPORTER_VERSION="v0.16.0"
MONGODB_EXPORTER_VERSION="v0.43.1"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
EXPORTERS="${CACHE_ROOT}/exporters"

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

t=$SECONDS
if command -v promtool >/dev/null; then
  echo "promtool: already installed ($(promtool --version 2>&1 | head -1))"
else
  # The package's service must not start a system-wide Prometheus.
  made_policy=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    made_policy=true
  fi
  status=0
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus || status=$?
  fi
  if $made_policy; then as_root rm -f /usr/sbin/policy-rc.d; fi
  if [[ -d /run/systemd/system ]]; then as_root systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  [[ $status == 0 ]] && command -v promtool >/dev/null || { echo "error: promtool missing after installing prometheus" >&2; exit 1; }
  echo "promtool: installed ($(( SECONDS - t ))s)"
fi

build() { # name, module, version, package directory inside the module
  local name=$1 module=$2 version=$3 pkg=$4
  local dir="${EXPORTERS}/${name}-${version}"
  local t=$SECONDS
  if [[ -x "${dir}/${name}" ]]; then
    echo "${name}: cached ${dir}/${name}"
    return
  fi
  command -v go >/dev/null || { echo "error: 'go' not found in PATH" >&2; exit 1; }
  mkdir -p "$dir"
  exec 7>"${dir}/.build.lock"
  flock 7
  if [[ ! -x "${dir}/${name}" ]]; then
    # Not `go install module@version`: that asks the proxy for the module's
    # version list (for deprecation notices), which the proxy here refuses
    # for these modules. Download the pinned version and build it in place.
    local work src
    work="$(mktemp -d)"
    src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "${module}@${version}" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$src" && -d "$src" ]] || { echo "error: could not download ${module}@${version}" >&2; exit 1; }
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -buildvcs=false \
      -ldflags "-X github.com/prometheus/common/version.Version=${version#v}" \
      -o "${dir}/${name}.tmp" "./${pkg}")
    rm -rf "$work"
    mv -f "${dir}/${name}.tmp" "${dir}/${name}"
    echo "${name}: built ${dir}/${name} ($(( SECONDS - t ))s)"
  fi
  exec 7>&-
}

build postgres_exporter github.com/prometheus-community/postgres_exporter "$POSTGRES_EXPORTER_VERSION" cmd/postgres_exporter
build mysqld_exporter github.com/prometheus/mysqld_exporter "$MYSQLD_EXPORTER_VERSION" .
build mongodb_exporter github.com/percona/mongodb_exporter "$MONGODB_EXPORTER_VERSION" .
