# The operator's image: one static binary (the operator, and the agent that
# backup, restore and drill pods copy out with `database-operator copy-self`)
# on distroless/static (CA certificates, the non-root user 65532, no shell,
# no libc). Runs with a read-only root filesystem.
#
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t database-operator:0.1.0 .
#
# Without a Docker engine, `make image` builds the same image as an OCI
# archive (hack/image/build.sh); a test checks that both agree on the user,
# entrypoint, command, labels and the binary's path.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Static against glibc (crt-static): the agent also runs inside the
# postgres, mysql, mariadb and mongo images, whose C libraries differ.
# getrandom calls glibc's getrandom() directly (a static binary cannot find
# it with dlsym, and would read /dev/urandom instead).
RUN RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --release --locked \
      --target x86_64-unknown-linux-gnu -p database-operator \
 && cp target/x86_64-unknown-linux-gnu/release/database-operator /database-operator \
 && strip --strip-all /database-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="database-operator" \
      org.opencontainers.image.description="A Kubernetes operator for PostgreSQL, MySQL and MongoDB" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
COPY --from=build /database-operator /usr/local/bin/database-operator
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/usr/local/bin/database-operator"]
CMD ["run"]
