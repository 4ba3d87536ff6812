#!/usr/bin/env bash
# Installs mdBook (from crates.io, without its serve/watch/search features)
# once into
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/tools/mdbook-<version>/mdbook
# and prints that path. tests/pure/docs.rs builds the book with it.
set -euo pipefail
source "$(dirname "$0")/../lib/build-once.sh"

MDBOOK_VERSION="0.5.4"
DIR="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}/tools/mdbook-${MDBOOK_VERSION}"

build() {
  # Its own target folder: the workspace's is not touched.
  CARGO_TARGET_DIR="${DIR}/target" cargo install mdbook --version "${MDBOOK_VERSION}" \
    --locked --no-default-features --root "${DIR}/install"
  mv "${DIR}/install/bin/mdbook" "${DIR}/mdbook.tmp"
  rm -rf "${DIR}/target" "${DIR}/install"
}

build_once "${DIR}" mdbook build
