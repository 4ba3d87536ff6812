#!/usr/bin/env bash
# Builds the OLM bundle validator (hack/olm/validate: the
# operator-framework's own validators, from their Go module) once into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/olm-validate-<api version>/validate
# and prints that path. tests/pure/olm.rs runs it on bundle/.
set -euo pipefail
cd "$(dirname "$0")/validate"

API_VERSION="$(sed -n 's/^require github.com\/operator-framework\/api \(v[^ ]*\)$/\1/p' go.mod)"
CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
DIR="${CACHE_ROOT}/olm-validate-${API_VERSION}-$(sha256sum main.go | cut -c1-12)"

if [[ -x "${DIR}/validate" ]]; then
  echo "${DIR}/validate"
  exit 0
fi
command -v go >/dev/null || { echo "error: 'go' not found in PATH" >&2; exit 1; }
mkdir -p "${DIR}"
exec 7>"${DIR}/.build.lock"
flock 7
if [[ ! -x "${DIR}/validate" ]]; then
  t=$SECONDS
  work="$(mktemp -d)"
  cp main.go go.mod "$work/"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >&2 && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -buildvcs=false -o "${DIR}/validate.tmp" .) >&2
  rm -rf "$work"
  mv -f "${DIR}/validate.tmp" "${DIR}/validate"
  echo "olm validate: built ${DIR}/validate ($(( SECONDS - t ))s)" >&2
fi
exec 7>&-
echo "${DIR}/validate"
