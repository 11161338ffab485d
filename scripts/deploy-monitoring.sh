#!/usr/bin/env bash
# Deploys the magerl monitoring stack to the current kubectl context (namespace
# mage-monitoring), idempotently: namespace and RBAC, the Grafana admin Secret (a random
# password when missing; never committed), the ConfigMaps, the workloads; then waits for
# the rollouts and prints how to reach Grafana and Prometheus.
#
#   scripts/deploy-monitoring.sh            apply to the current context
#   scripts/deploy-monitoring.sh --dry-run  print everything it would apply; needs no cluster
set -euo pipefail
cd "$(dirname "$0")/.."
NS=mage-monitoring
STACK=k8s/monitoring-stack.yaml
CONFIGS=k8s/monitoring-configs.yaml
dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) echo "deploy-monitoring: unknown option $1 (try --dry-run or --help)" >&2; exit 2 ;;
esac
for f in "$STACK" "$CONFIGS"; do
  [ -f "$f" ] || { echo "deploy-monitoring: $f is missing (run from a magerl checkout)" >&2; exit 1; }
done

secret_manifest() {  # $1: password
  cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: grafana-admin
  namespace: $NS
type: Opaque
stringData:
  admin-user: admin
  admin-password: "$1"
YAML
}

if [ $dry_run -eq 1 ]; then
  echo "# deploy-monitoring --dry-run: the objects it would apply, in order"
  echo "# 1. Namespace $NS"
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n' "$NS"
  echo "# 2. Secret grafana-admin, only when missing (password generated at deploy time)"
  secret_manifest "<random, generated at deploy time>"
  echo "---"
  echo "# 3. $CONFIGS"
  cat "$CONFIGS"
  echo "---"
  echo "# 4. $STACK"
  cat "$STACK"
  echo "# 5. then: kubectl rollout status for prometheus, alertmanager, grafana, kube-state-metrics,"
  echo "#    daemonset/fluent-bit; daemonset/dcgm-exporter needs GPU nodes"
  exit 0
fi

command -v kubectl >/dev/null 2>&1 || { echo "deploy-monitoring: kubectl not found; install it, or use --dry-run" >&2; exit 1; }
context=$(kubectl config current-context 2>/dev/null) || {
  echo "deploy-monitoring: kubectl has no current context; set one (kubectl config use-context ...), or use --dry-run" >&2
  exit 1
}
echo "deploying the monitoring stack to context $context, namespace $NS"

kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
YAML
if ! kubectl get secret grafana-admin -n "$NS" >/dev/null 2>&1; then
  password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)
  secret_manifest "$password" | kubectl apply -f -
  echo "created Secret grafana-admin with a random password; read it with:"
  echo "  kubectl get secret grafana-admin -n $NS -o jsonpath='{.data.admin-password}' | base64 -d"
fi
kubectl apply -f "$CONFIGS"
kubectl apply -f "$STACK"
for deployment in prometheus alertmanager grafana kube-state-metrics; do
  kubectl rollout status "deployment/$deployment" -n "$NS" --timeout=300s
done
kubectl rollout status daemonset/fluent-bit -n "$NS" --timeout=300s
if kubectl get nodes -l nvidia.com/gpu.present=true -o name | grep -q .; then
  kubectl rollout status daemonset/dcgm-exporter -n "$NS" --timeout=300s
else
  echo "note: no node is labelled nvidia.com/gpu.present=true: the DCGM exporter schedules nowhere yet"
fi
cat <<TXT

Monitoring is up. Reach it with:
  kubectl port-forward svc/grafana 3000:3000 -n $NS       # http://localhost:3000 (user admin)
  kubectl port-forward svc/prometheus 9090:9090 -n $NS    # http://localhost:9090
Then deploy the training workload:
  kubectl apply -f k8s/gpu-deployment.yaml
TXT
