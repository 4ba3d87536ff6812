#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from Go module sources, once, into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/controlplane/<k8s-version>/bin/
# A stamp file (.complete) in that folder marks a finished build; when it is
# present and lists the same pinned versions, the script does nothing.
#
# Usage: hack/controlplane/build.sh [--force]
#   --force       rebuild even if the stamp file is present
# Environment:
#   DATABASE_OPERATOR_CACHE  cache root (default ~/.cache/database-operator)
#
# Needs only Go (see go.mod "go" lines of the modules, currently >= 1.26) and
# the Go module proxy. GOCACHE/GOMODCACHE stay at Go's defaults so a rebuild
# after clearing our folder is fast.
set -euo pipefail

# Pinned versions. K8S_VERSION must match k8s-openapi's enabled feature (v1_37).
K8S_VERSION="v1.37.2"
ETCD_VERSION="v3.6.16"
KWOK_VERSION="v0.8.0"
# Bump when the cache folder's contents change, to force a rebuild.
CACHE_LAYOUT="2"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
OUT_DIR="${CACHE_ROOT}/controlplane/${K8S_VERSION}"
BIN_DIR="${OUT_DIR}/bin"
STAMP="${BIN_DIR}/.complete"
STAGES="${OUT_DIR}/etc/kwok-stages.yaml"
WANT_STAMP="k8s=${K8S_VERSION} etcd=${ETCD_VERSION} kwok=${KWOK_VERSION} layout=${CACHE_LAYOUT}"

force=false
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

is_built() { [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$WANT_STAMP" ]] && [[ -f "$STAGES" ]]; }

if ! $force && is_built; then
  echo "control plane ${K8S_VERSION} already built in ${BIN_DIR}"
  exit 0
fi

command -v go >/dev/null || { echo "error: 'go' not found in PATH (Go >= 1.26 needed)" >&2; exit 1; }

# Only one build at a time per cache folder (several test binaries may call us).
mkdir -p "$OUT_DIR"
exec 9>"${OUT_DIR}/.build.lock"
if ! flock -n 9; then
  echo "another build is running in ${OUT_DIR}; waiting for it" >&2
  flock 9
  if ! $force && is_built; then
    echo "control plane ${K8S_VERSION} built by the other process in ${BIN_DIR}"
    exit 0
  fi
fi

rm -f "$STAMP"
mkdir -p "$BIN_DIR"
WORK="${OUT_DIR}/work"
rm -rf "$WORK"
mkdir -p "$WORK"

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
# The wrapper modules are throwaway; never let Go reach for a toolchain download.
export GOTOOLCHAIN=local

total_start=$(date +%s)
step() { # name, command...
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "==> building ${name}"
  "$@"
  echo "    ${name}: $(( $(date +%s) - t0 ))s"
}

# --- Kubernetes --------------------------------------------------------------
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with local paths, so `go install ...@version` refuses it. A wrapper module
# that requires it and points each staging module it requires at the published
# v0.X.Y tag builds the same code.
k8s_wrapper() {
  local dir="${WORK}/kubernetes"
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f "$gomod" ]] || { echo "error: could not download k8s.io/kubernetes@${K8S_VERSION}" >&2; return 1; }
  local staging_version="v0.${K8S_VERSION#v1.}"
  local go_line
  go_line=$(grep -m1 '^go ' "$gomod")
  {
    echo "module local/kubernetes-build"
    echo
    echo "$go_line"
    # Keep the upstream GODEBUG defaults.
    grep '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    # Staging modules are required as "k8s.io/<name> v0.0.0" upstream.
    awk '/^require \(/{r=1;next} r&&/^\)/{r=0} r&&$2=="v0.0.0"&&$1~/^k8s\.io\//{print $1}' "$gomod" |
      sort -u | while read -r m; do echo "	${m} => ${m} ${staging_version}"; done
    echo ")"
  } > "${dir}/go.mod"
  # Resolve and write go.sum once for all commands.
  (cd "$dir" && go mod download k8s.io/kubernetes >/dev/null)
}

k8s_ldflags() {
  local major minor
  major=$(echo "$K8S_VERSION" | sed 's/^v\([0-9]*\)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed 's/^v[0-9]*\.\([0-9]*\)\..*/\1/')
  local commit
  # The proxy's .info has no commit; record the release as the "commit" so it
  # is obvious these are not official release binaries.
  commit="module-proxy-${K8S_VERSION}"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    flags+=" -X ${pkg}.gitMajor=${major}"
    flags+=" -X ${pkg}.gitMinor=${minor}"
    flags+=" -X ${pkg}.gitCommit=${commit}"
    flags+=" -X ${pkg}.gitTreeState=clean"
    flags+=" -X ${pkg}.buildDate=${date}"
  done
  echo "$flags"
}

build_k8s_cmd() { # cmd name
  local cmd=$1
  (cd "${WORK}/kubernetes" &&
    go build -trimpath -ldflags "$(k8s_ldflags)" -o "${BIN_DIR}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}")
  mv -f "${BIN_DIR}/${cmd}.tmp" "${BIN_DIR}/${cmd}"
}

# --- etcd --------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 holds etcd's main package but replaces its sibling
# modules with ../ paths; its require lines already pin the same versions, so
# a wrapper that just requires it resolves them from the proxy.
build_etcd() {
  local dir="${WORK}/etcd"
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module local/etcd-build"
    echo
    grep -m1 '^go ' "$gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
  } > "${dir}/go.mod"
  (cd "$dir" &&
    go mod download go.etcd.io/etcd/server/v3 >/dev/null &&
    go build -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
      -o "${BIN_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv -f "${BIN_DIR}/etcd.tmp" "${BIN_DIR}/etcd"
}

# --- kwok --------------------------------------------------------------------
build_kwok() {
  GOBIN="${WORK}/gobin" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION}" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv -f "${WORK}/gobin/kwok" "${BIN_DIR}/kwok"
}

# --- kwok stages ---------------------------------------------------------------
# The kwok binary simulates nothing unless given Stage objects (kwokctl adds
# its defaults itself). Take the fast node/pod stages from the same kwok module
# version, so they always match the binary.
install_kwok_stages() {
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local src="${dir}/kustomize/stage"
  mkdir -p "$(dirname "$STAGES")"
  local f
  for f in node/fast/node-initialize.yaml \
           node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml \
           pod/fast/pod-complete.yaml \
           pod/fast/pod-delete.yaml; do
    [[ -f "${src}/${f}" ]] || { echo "error: ${src}/${f} missing" >&2; return 1; }
    echo "---"
    if [[ "$f" == pod/fast/pod-ready.yaml ]]; then
      # A database takes a moment to accept connections; a pod that is Ready
      # the instant it is scheduled hides the operator's Creating phase.
      sed '/^spec:/a\  delay:\n    durationMilliseconds: 1000\n    jitterDurationMilliseconds: 2000' "${src}/${f}"
    else
      cat "${src}/${f}"
    fi
  done > "${STAGES}.tmp"
  mv -f "${STAGES}.tmp" "$STAGES"
}

echo "building control plane into ${BIN_DIR}"
echo "  kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION}"
# One component after another: the machine has 2 cores and linking
# kube-apiserver alone takes a few GiB.
step etcd build_etcd
step "kubernetes wrapper module" k8s_wrapper
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  step "$cmd" build_k8s_cmd "$cmd"
done
step kwok build_kwok
step "kwok stages" install_kwok_stages

rm -rf "$WORK"
echo "$WANT_STAMP" > "$STAMP"
echo "total: $(( $(date +%s) - total_start ))s"
"${BIN_DIR}/kubectl" version --client 2>/dev/null | head -1 || true
echo "control plane ready in ${BIN_DIR}"
