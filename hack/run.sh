#!/usr/bin/env bash
# `make run`: a local control plane (unless KUBECONFIG already reaches a
# cluster), the CRDs, the operator in the foreground, the samples applied, and
# a summary of the Databases every time it changes. Ctrl-C stops everything
# this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "building the operator and the local-cluster tool"
cargo build -q -p database-operator -p database-operator-testkit --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir}/debug"

started_cluster=false
operator_pid=""
watcher_pid=""
cleanup() {
  trap - EXIT INT TERM
  [[ -n "$watcher_pid" ]] && kill "$watcher_pid" 2>/dev/null || true
  if [[ -n "$operator_pid" ]]; then
    say "stopping the operator"
    kill "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  if $started_cluster; then
    say "stopping the local cluster"
    "${bin}/local-cluster" down || true
  fi
}
trap cleanup EXIT INT TERM

if [[ -n "${KUBECONFIG:-}" ]] && command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  say "using the cluster in KUBECONFIG=${KUBECONFIG}"
else
  if "${bin}/local-cluster" status >/dev/null 2>&1; then
    say "reusing the local cluster started by 'make cluster'"
  else
    say "starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
    say "the first run builds Kubernetes from source: about 8 minutes on 2 cores, then cached"
    started_cluster=true
  fi
  eval "$("${bin}/local-cluster" up)"
fi

say "installing the CRDs"
kubectl apply --server-side --force-conflicts -f deploy/crds/ >&2
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null

say "starting the operator (logs below; Ctrl-C stops everything)"
"${bin}/database-operator" run --metrics-address "${METRICS_ADDRESS:-127.0.0.1:8080}" &
operator_pid=$!

say "applying deploy/samples/"
kubectl apply --server-side -f deploy/samples/ >&2

# Print the table whenever it changes, and say so once every Database runs.
(
  last=""
  announced=false
  while sleep 2; do
    table=$(kubectl get databases -A --no-headers=false -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,ENGINE:.spec.engine,VERSION:.spec.version,REPLICAS:.spec.replicas,READY:.status.readyReplicas,PHASE:.status.phase' 2>/dev/null || true)
    if [[ "$table" != "$last" ]]; then
      printf '\n%s\n\n' "$table" >&2
      last="$table"
    fi
    phases=$(kubectl get databases -A -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null || true)
    if ! $announced && [[ -n "$phases" ]] && ! grep -qv '^Running$' <<<"$phases"; then
      say "every Database is Running; try: kubectl get databases,statefulsets,services,pods -A"
      announced=true
    fi
  done
) &
watcher_pid=$!

wait "$operator_pid"
