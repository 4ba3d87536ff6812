# database-operator: the developer's front door.
#   make run    local control plane + operator + samples reaching Running
#   make test   every test, unit and integration
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help run test test-unit bench soak lint manifests manifests-check crds crds-check controlplane servers monitoring-tools third-party-crds image helm olm-validator docs mdbook cluster cluster-down fmt clean

help:
	@echo "make run           start a local control plane, the operator and the samples"
	@echo "make test          lint + every test (unit and against a real control plane)"
	@echo "make test-unit     every test that needs no server (unit tests and tests/pure)"
	@echo "make cluster       start a local control plane in the background; eval \"\$$(make -s cluster)\""
	@echo "make cluster-down  stop it"
	@echo "make manifests     regenerate what deploy/ and the Helm chart hold from the code (CRDs, RBAC)"
	@echo "make docs          build the book (docs/) into target/book"
	@echo "make bench         the operator against a bare client at N = 100 and 1,000 Databases (BENCH_N=100 for one); writes target/bench/"
	@echo "make soak          the bench at N = 1,000, then 60 minutes of churn (1 % a minute) reading the operator's memory (BENCH_SOAK_MINUTES)"
	@echo "make image         build the container image as an OCI archive under target/image (no Docker engine)"

run:
	@hack/run.sh

test: lint manifests-check controlplane servers monitoring-tools third-party-crds image helm olm-validator mdbook
	$(CARGO) test --workspace --no-fail-fast

# A measurement, not a test: tables, JSON and plots under target/bench/
# (method and latest figures: docs/src/benchmark.md).
bench:
	@bash hack/bench/run.sh

# The bench at N = 1,000, then an hour of churn (1 % of the Databases
# deleted, created or scaled each minute) reading the operator's memory.
soak:
	@BENCH_N=$${BENCH_N:-1000} BENCH_SOAK_MINUTES=$${BENCH_SOAK_MINUTES:-60} bash hack/bench/run.sh

# The fast loop: the crates' unit tests and tests/pure (builders, CRDs,
# status, alert rules with promtool, the Helm chart with helm); no control
# plane, no database server.
test-unit:
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test -p database-operator --test pure

# cargo-deny comes from hack/tools/install.sh (cached). Advisories need the
# advisory database, which cannot be fetched here: see CONTRIBUTING.md.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@PATH="$$(bash hack/tools/install.sh):$$PATH" $(CARGO) deny --log-level error check licenses bans sources

# Everything generated under deploy/: the CRDs from the Rust types, the
# operator's RBAC from crates/operator/src/rbac.rs.
manifests:
	$(CARGO) run -q -p database-operator -- manifests --root .

crds: manifests

# A test in tests/pure also fails on drift; this names the fix.
manifests-check:
	@rm -rf target/manifests-check && $(CARGO) run -q -p database-operator -- manifests --root target/manifests-check && \
	  for f in $$(cd target/manifests-check && find . -type f); do \
	    cmp -s "target/manifests-check/$$f" "$$f" || { echo "$${f#./} is out of date: run 'make manifests'"; exit 1; }; \
	  done

crds-check: manifests-check

# The static binary in an OCI image archive, built with umoci (Debian's
# package) instead of a Docker engine; tests/image reads it.
image:
	@bash hack/image/build.sh

controlplane:
	@bash hack/controlplane/build.sh

# helm from its Go module (cached), for the chart's tests.
helm:
	@bash hack/helm/install.sh >/dev/null

mdbook:
	@bash hack/docs/install.sh >/dev/null

# The book: mdBook from crates.io (cached), into target/book.
docs:
	@"$$(bash hack/docs/install.sh)" build docs

# The operator-framework's bundle validators from their Go module (cached).
olm-validator:
	@bash hack/olm/install.sh >/dev/null

# PostgreSQL and MariaDB from Debian's packages, FerretDB from its Go module.
servers:
	@bash hack/servers/install.sh

# promtool (Debian's prometheus) and the pinned exporters, for the monitoring tests.
monitoring-tools:
	@bash hack/monitoring/install.sh

# Other projects' CRDs (Velero's Schedule, prometheus-operator's ServiceMonitor
# and PrometheusRule) from their Go modules, for the integration tests.
third-party-crds:
	@bash hack/crds/fetch.sh

cluster:
	@$(CARGO) run -q -p database-operator-testkit --bin local-cluster -- up

cluster-down:
	@$(CARGO) run -q -p database-operator-testkit --bin local-cluster -- down

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
