#!/usr/bin/env bash
# Installs mdBook (from crates.io, without its serve/watch/search features)
# once into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/tools/mdbook-<version>/bin/mdbook
# and prints that path. tests/pure/docs.rs builds the book with it.
set -euo pipefail

MDBOOK_VERSION="0.5.4"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
ROOT="${CACHE_ROOT}/tools/mdbook-${MDBOOK_VERSION}"

if [[ -x "${ROOT}/bin/mdbook" ]]; then
  echo "${ROOT}/bin/mdbook"
  exit 0
fi
mkdir -p "${ROOT}"
exec 7>"${ROOT}/.build.lock"
flock 7
if [[ ! -x "${ROOT}/bin/mdbook" ]]; then
  t=$SECONDS
  # Its own target folder: the workspace's is not touched.
  CARGO_TARGET_DIR="${ROOT}/target" cargo install mdbook --version "${MDBOOK_VERSION}" \
    --locked --no-default-features --root "${ROOT}" >&2
  rm -rf "${ROOT}/target"
  echo "mdbook: built ${ROOT}/bin/mdbook ($(( SECONDS - t ))s)" >&2
fi
exec 7>&-
echo "${ROOT}/bin/mdbook"
