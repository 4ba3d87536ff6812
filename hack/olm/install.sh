#!/usr/bin/env bash
# Builds the OLM bundle validator (hack/olm/validate: the
# operator-framework's own validators, from their Go module) once into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/olm-validate-<api version>-<source hash>/validate
# and prints that path. tests/pure/olm.rs runs it on bundle/.
set -euo pipefail
source "$(dirname "$0")/../lib/build-once.sh"
cd "$(dirname "$0")/validate"

API_VERSION="$(sed -n 's/^require github.com\/operator-framework\/api \(v[^ ]*\)$/\1/p' go.mod)"
DIR="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}/olm-validate-${API_VERSION}-$(sha256sum main.go | cut -c1-12)"

build() {
  command -v go >/dev/null || { echo "error: 'go' not found in PATH" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  cp main.go go.mod "$work/"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy && CGO_ENABLED=0 GOFLAGS=-mod=mod go build \
    -trimpath -buildvcs=false -o "${DIR}/validate.tmp" .)
  rm -rf "$work"
}

build_once "${DIR}" validate build
