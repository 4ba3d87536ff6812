#!/usr/bin/env bash
# Builds helm from its Go module, once, into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/helm-<version>/helm
# and prints that path. The chart tests (tests/control_plane/helm.rs) run it:
# no binary download is reachable here, the Go module proxy is.
#
# Environment: DATABASE_OPERATOR_CACHE  cache root (default ~/.cache/database-operator)
set -euo pipefail

HELM_VERSION="v3.22.0"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
DIR="${CACHE_ROOT}/helm-${HELM_VERSION}"

if [[ -x "${DIR}/helm" ]]; then
  echo "${DIR}/helm"
  exit 0
fi
command -v go >/dev/null || { echo "error: 'go' not found in PATH" >&2; exit 1; }
mkdir -p "${DIR}"
exec 7>"${DIR}/.build.lock"
flock 7
if [[ ! -x "${DIR}/helm" ]]; then
  t=$SECONDS
  # Not `go install module@version`: download the pinned version and build
  # it in place, as hack/monitoring/install.sh does for the exporters.
  work="$(mktemp -d)"
  src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$src" && -d "$src" ]] || { echo "error: could not download helm.sh/helm/v3@${HELM_VERSION}" >&2; exit 1; }
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -buildvcs=false \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    -o "${DIR}/helm.tmp" ./cmd/helm) >&2
  rm -rf "$work"
  mv -f "${DIR}/helm.tmp" "${DIR}/helm"
  echo "helm: built ${DIR}/helm ($(( SECONDS - t ))s)" >&2
fi
exec 7>&-
echo "${DIR}/helm"
