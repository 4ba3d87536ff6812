#!/usr/bin/env bash
# Builds the operator's container image without a Docker engine, as an OCI
# image archive:
#   target/image/database-operator-<version>.oci.tar
# the same image the Dockerfile describes: one static binary at
# /usr/local/bin/database-operator (operator, and the agent that backup,
# restore and drill pods copy out with `database-operator copy-self`),
# CA certificates, a passwd entry for the non-root user 65532, nothing else
# (no shell, no libc). Push it with skopeo (README, "Container image").
#
# Tools: umoci from Debian's packages (installed here when missing; root or
# sudo needed for apt-get). umoci writes an OCI image layout from a root
# filesystem and sets its config (user, entrypoint, labels) without a daemon
# or privileges; the archive is that layout in a tar, which is skopeo's
# `oci-archive:` format.
#
# The binary is linked statically against glibc (`crt-static`; the musl
# target cannot be downloaded here): the agent runs inside the postgres,
# mysql, mariadb and mongo images, whose C libraries differ from ours.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
TARGET=x86_64-unknown-linux-gnu
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT=target/image
ARCHIVE="${OUT}/database-operator-${VERSION}.oci.tar"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! command -v umoci >/dev/null; then
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends umoci skopeo >&2; then
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends umoci skopeo >&2
  fi
fi

echo "image: building the static binary (release, ${TARGET}, crt-static)" >&2
# --target keeps RUSTFLAGS off build scripts and proc macros, which must
# stay dynamic. getrandom finds glibc's getrandom() with dlsym, which a
# static binary cannot, and would fall back to reading /dev/urandom: the
# cfg makes it call getrandom() directly.
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  cargo build --release --locked --target "${TARGET}" -p database-operator >&2
binary="${CARGO_TARGET_DIR}/${TARGET}/release/database-operator"
if ldd "${binary}" >/dev/null 2>&1 && ! ldd "${binary}" 2>&1 | grep -q "statically linked"; then
  echo "error: ${binary} is dynamically linked:" >&2
  ldd "${binary}" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
layout="${work}/layout"
bundle="${work}/bundle"
umoci init --layout "${layout}"
umoci new --image "${layout}:${VERSION}"
umoci unpack --rootless --image "${layout}:${VERSION}" "${bundle}" >/dev/null
rootfs="${bundle}/rootfs"
install -D -m 0755 "${binary}" "${rootfs}/usr/local/bin/database-operator"
# Symbols off: a third of the size, and panics still name their location.
strip --strip-all "${rootfs}/usr/local/bin/database-operator"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "${rootfs}/etc/ssl/certs/ca-certificates.crt"
install -d -m 0755 "${rootfs}/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"${rootfs}/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"${rootfs}/etc/group"
install -d -m 0700 "${rootfs}/home/nonroot"
install -d -m 1777 "${rootfs}/tmp"
umoci repack --image "${layout}:${VERSION}" "${bundle}"
# What the Dockerfile says too (a test compares them).
umoci config --image "${layout}:${VERSION}" \
  --os linux --architecture amd64 \
  --config.user 65532:65532 \
  --config.workingdir / \
  --config.entrypoint /usr/local/bin/database-operator \
  --config.cmd run \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label org.opencontainers.image.title=database-operator \
  --config.label "org.opencontainers.image.description=A Kubernetes operator for PostgreSQL, MySQL and MongoDB" \
  --config.label org.opencontainers.image.version="${VERSION}" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label org.opencontainers.image.revision="${REVISION}" \
  --history.created_by "hack/image/build.sh (umoci)"
umoci gc --layout "${layout}"

mkdir -p "${OUT}"
tar -C "${layout}" -cf "${ARCHIVE}.partial" .
mv "${ARCHIVE}.partial" "${ARCHIVE}"
size=$(stat -c %s "${ARCHIVE}")
echo "image: ${ARCHIVE} ($(( size / 1024 / 1024 )) MiB)" >&2
echo "${ARCHIVE}"
