#!/usr/bin/env bash
# Fetches third-party CustomResourceDefinitions that integration tests install
# into the local control plane, from the projects' own Go modules (through
# the Go module proxy), into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/crds/<set>-<version>/
# Nothing is committed: the files come from the pinned module versions below.
# Idempotent: a set already in the cache is kept (its .complete stamp), so a
# second run takes well under a second.
#
# One function per CRD set; to add a set, pin its version, write a
# fetch_<set> function like fetch_velero and call it at the bottom.
#
# Usage: hack/crds/fetch.sh [--force]
# Environment:
#   DATABASE_OPERATOR_CACHE  cache root (default ~/.cache/database-operator)
#
# Needs Go and the Go module proxy.
set -euo pipefail

# Pinned versions. The Rust fixtures (crates/testkit/src/crds.rs) read these
# lines (include_str!), so the tests and the cache never disagree.
VELERO_VERSION="v1.18.3"
# prometheus-operator: the newest release the Go module proxy reachable here
# serves (v0.86.0 and later answer 403). tests/monitoring_e2e.rs reads it too.
PROMETHEUS_OPERATOR_VERSION="v0.85.0"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
force=false
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
  esac
done

log() { echo "[crds] $*" >&2; }

# module_dir MODULE@VERSION: downloads the module (verified against the
# checksum database) and prints the folder it was unpacked into.
module_dir() {
  local json dir scratch
  # Outside any module, so no go.mod around decides what is downloaded.
  scratch=$(mktemp -d)
  json=$(cd "$scratch" && go mod download -json "$1") || { rmdir "$scratch"; return 1; }
  rmdir "$scratch"
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [[ -z "$dir" || ! -d "$dir" ]]; then
    echo "go mod download $1 gave no module folder:" >&2
    printf '%s\n' "$json" >&2
    return 1
  fi
  printf '%s\n' "$dir"
}

# copy_set NAME VERSION SOURCE_DIR FILE...: copies FILEs (relative to
# SOURCE_DIR) into the cache folder of the set, stamped when complete.
copy_set() {
  local name=$1 version=$2 source=$3
  shift 3
  local dest="${CACHE_ROOT}/crds/${name}-${version}"
  local tmp="${dest}.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for file in "$@"; do
    install -m 0644 "${source}/${file}" "${tmp}/$(basename "$file")"
  done
  echo "${name}=${version}" >"${tmp}/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  log "${name} ${version}: $(ls "$dest" | tr '\n' ' ')-> ${dest}"
}

# is_cached NAME VERSION: whether the set is complete in the cache.
is_cached() {
  ! $force && [[ "$(cat "${CACHE_ROOT}/crds/$1-$2/.complete" 2>/dev/null)" == "$1=$2" ]]
}

# Velero (github.com/vmware-tanzu/velero, Apache-2.0): the Schedule CRD,
# which the operator writes for spec.backup.method: velero.
fetch_velero() {
  if is_cached velero "$VELERO_VERSION"; then
    return
  fi
  local dir
  dir=$(module_dir "github.com/vmware-tanzu/velero@${VELERO_VERSION}")
  copy_set velero "$VELERO_VERSION" "$dir" \
    config/crd/v1/bases/velero.io_schedules.yaml
}

# prometheus-operator (github.com/prometheus-operator/prometheus-operator,
# Apache-2.0): ServiceMonitor and PrometheusRule, which a DatabaseMonitor
# becomes.
fetch_prometheus_operator() {
  if is_cached prometheus-operator "$PROMETHEUS_OPERATOR_VERSION"; then
    return
  fi
  local dir
  dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}")
  copy_set prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" "$dir" \
    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
    example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
}

fetch_velero
fetch_prometheus_operator
