#!/usr/bin/env bash
# The operator's memory with N Databases (three engines round robin, one
# replica, ten namespaces) on the local control plane, release build (the
# static binary `make image` builds): its resident memory idle, the time
# until every Database is Running, and its peak (VmHWM) after that.
# A measurement, not a test:  N=100 bash hack/bench/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/database-operator/cargo-target}"
[[ -x "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/database-operator" ]] || bash hack/image/build.sh >/dev/null
eval "$(cargo run -q -p database-operator-testkit --bin local-cluster -- up)"
kubectl apply --server-side --force-conflicts -f deploy/crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/database-operator
RUST_LOG=warn $BIN run --metrics-address 127.0.0.1:18080 > /tmp/footprint-operator.log 2>&1 &
pid=$!
sleep 3
echo "idle: $(grep -E 'VmRSS' /proc/$pid/status)"
for ns in $(seq 0 9); do kubectl create namespace bench-$ns >/dev/null 2>&1 || true; done
engines=(postgresql mysql mongodb); versions=(16.4 8.4 7.0)
start=$(date +%s)
for i in $(seq 1 $N); do
  e=$(( i % 3 )); ns=bench-$(( i % 10 ))
  cat <<YAML
---
apiVersion: example.com/v1
kind: Database
metadata: {name: db-$i, namespace: $ns}
spec: {engine: ${engines[$e]}, version: "${versions[$e]}", replicas: 1, storage: {size: 1Gi}}
YAML
done | kubectl apply -f - >/dev/null
while true; do
  running=$(kubectl get databases -A -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Running$' || true)
  [[ "$running" -ge "$N" ]] && break
  sleep 2
done
echo "all $N Running after $(( $(date +%s) - start ))s"
sleep 20
grep -E 'VmRSS|VmHWM' /proc/$pid/status
kill $pid
for ns in $(seq 0 9); do kubectl delete namespace bench-$ns --wait=false >/dev/null 2>&1 || true; done
