#!/usr/bin/env bash
# Creates the kind cluster of kind-config.yaml and installs the Gateway API CRDs (standard
# channel) from the Go module cache, at the version pinned in operator/kanaria/sandbox/cluster.py.
# Needs Docker, kind and kubectl. (Not runnable on the project's CI machines, which have no
# Docker: there the tests use the local control plane of docs/testbed.md instead.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${KIND_CLUSTER_NAME:-kanaria}
version=$(sed -n 's/^GATEWAY_API_VERSION = "\(v[0-9.]*\)".*/\1/p' "$root/operator/kanaria/sandbox/cluster.py")
[ -n "$version" ] || { echo "cannot read GATEWAY_API_VERSION from cluster.py" >&2; exit 1; }

for tool in kind kubectl go; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

if kind get clusters | grep -qx "$name"; then
  echo "kind cluster $name exists already" >&2
else
  kind create cluster --name "$name" --config "$root/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$name" >/dev/null

moddir=$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$moddir/config/crd/standard" ] || { echo "no Gateway API CRDs under $moddir" >&2; exit 1; }
kubectl apply --server-side -f "$moddir/config/crd/standard/"
kubectl wait --for=condition=Established --timeout=60s \
  $(kubectl get crd -o name | grep gateway.networking.k8s.io)
echo "kind cluster $name is ready (Gateway API $version); context kind-$name" >&2
