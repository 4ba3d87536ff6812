#!/usr/bin/env bash
# Builds helm from its Go module, once, into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/helm-<version>/helm
# and prints that path. The chart tests run it: no binary download is
# reachable here, the Go module proxy is.
set -euo pipefail
source "$(dirname "$0")/../lib/build-once.sh"

HELM_VERSION="v3.22.0"
DIR="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}/helm-${HELM_VERSION}"

build() {
  command -v go >/dev/null || { echo "error: 'go' not found in PATH" >&2; exit 1; }
  # Not `go install module@version`: download the pinned version and build
  # it in place, as hack/monitoring/install.sh does for the exporters.
  local work src
  work="$(mktemp -d)"
  src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$src" && -d "$src" ]] || { echo "error: could not download helm.sh/helm/v3@${HELM_VERSION}" >&2; exit 1; }
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -buildvcs=false \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    -o "${DIR}/helm.tmp" ./cmd/helm)
  rm -rf "$work"
}

build_once "${DIR}" helm build
