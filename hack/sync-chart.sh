#!/usr/bin/env bash
# Copies into the Helm chart (charts/kanaria) the files it shares with the rest of the repository,
# so the chart never carries a stale copy:
#   crds/modeldeployment.yaml                   -> charts/kanaria/crds/modeldeployment.yaml
#   manifests/monitoring/rules.yaml             -> charts/kanaria/files/rules.yaml
#   manifests/monitoring/grafana-dashboard.json -> charts/kanaria/files/grafana-dashboard.json
# `make crds` runs it. --check copies nothing and fails when a copy differs from its source
# (tests/unit/test_chart.py checks the same).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart=$root/charts/kanaria
pairs=(
  "crds/modeldeployment.yaml:crds/modeldeployment.yaml"
  "manifests/monitoring/rules.yaml:files/rules.yaml"
  "manifests/monitoring/grafana-dashboard.json:files/grafana-dashboard.json"
)
status=0
for pair in "${pairs[@]}"; do
  src=$root/${pair%%:*} dst=$chart/${pair#*:}
  if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$src" "$dst"; then
      echo "charts/kanaria/${pair#*:} differs from ${pair%%:*}: run hack/sync-chart.sh" >&2
      status=1
    fi
  elif ! cmp -s "$src" "$dst"; then
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "wrote charts/kanaria/${pair#*:}"
  fi
done
exit $status
