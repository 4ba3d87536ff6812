#!/usr/bin/env bash
# make bench: builds the operator's static release binary (as `make image`)
# and the bench with the same flags, then runs the bench: the operator
# against a bare client on the local control plane, N = 100 and 1,000 by
# default (BENCH_N=100 for one size). Writes target/bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
TARGET=x86_64-unknown-linux-gnu
bash hack/controlplane/build.sh >&2
bash hack/image/build.sh >/dev/null
# The same RUSTFLAGS and --target as the image build, so the two share
# every compiled dependency; the bare client is a release build like the
# operator it is compared with.
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  cargo build --release --locked --target "${TARGET}" -p database-operator-bench >&2
exec "${CARGO_TARGET_DIR}/${TARGET}/release/bench" \
  --operator-binary "${CARGO_TARGET_DIR}/${TARGET}/release/database-operator" \
  --out target/bench "$@"
