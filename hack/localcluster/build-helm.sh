#!/usr/bin/env bash
# Builds the pinned helm command (hack/localcluster/helm/go.mod) into the git-ignored cache,
# beside the control plane: .cache/cluster-bin/helm-<version>-<key>/helm, where <key> is a hash
# of the module files and this script, so a version bump builds afresh. Built only when missing.
# Prints the path of the helm binary on its last line.
#   --where   print the path without building (the chart tests use it to find helm)
# $KANARIA_HELM, when set, names a helm binary to use instead (printed as is, nothing built).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -n "${KANARIA_HELM:-}" ]; then echo "$KANARIA_HELM"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
version=$(awk '$1=="require" && $2 ~ /^helm\.sh\/helm\// {print $3}' "$here/helm/go.mod")
module=$(awk '$1=="require" && $2 ~ /^helm\.sh\/helm\// {print $2}' "$here/helm/go.mod")
key=$(cat "$here"/helm/go.mod "$here"/helm/go.sum "$here"/helm/tools.go "$here"/build-helm.sh | sha256sum | cut -c1-12)
bin=$root/.cache/cluster-bin/helm-$version-$key
if [ "${1:-}" = "--where" ]; then echo "$bin/helm"; exit 0; fi
mkdir -p "$bin"
# One build at a time per key: a second caller waits, then finds the binary there.
exec 9>"$bin/.lock"
flock 9
if [ ! -x "$bin/helm" ]; then
  t0=$SECONDS
  echo "building helm $version ($module/cmd/helm) ..." >&2
  ld="-s -w -X $module/internal/version.version=$version -X $module/internal/version.gitTreeState=clean"
  (cd "$here/helm" && nice -n 19 go build -trimpath -ldflags="$ld" -o "$bin/helm.tmp" "$module/cmd/helm")
  mv "$bin/helm.tmp" "$bin/helm"
  echo "built helm in $((SECONDS - t0))s" >&2
fi
echo "$bin/helm"
