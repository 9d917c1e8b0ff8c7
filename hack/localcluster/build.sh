#!/usr/bin/env bash
# Builds the pinned control-plane programs into a git-ignored cache keyed by the pinned
# versions: .cache/cluster-bin/<key>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,etcd,kwok}.
# Only what is missing is built. Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Key: a hash of the three go.mod/go.sum pairs, so a version bump builds afresh.
key=$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum \
          "$here"/kwok/go.mod "$here"/kwok/go.sum "$here"/etcd/main.go "$here"/build.sh | sha256sum | cut -c1-12)
bin=${KANARIA_CLUSTER_BIN:-$root/.cache/cluster-bin/$key}
mkdir -p "$bin"
# One build at a time per key: a second caller waits, then finds the binaries there.
exec 9>"$bin/.lock"
flock 9
build() { # module-dir output package
  local dir=$1 out=$2 pkg=$3 ld="-s -w ${4:-}"
  if [ -x "$bin/$out" ]; then return 0; fi
  local t0=$SECONDS
  echo "building $out ($pkg) ..." >&2
  (cd "$here/$dir" && go build -trimpath -ldflags="$ld" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  echo "built $out in $((SECONDS - t0))s" >&2
}
build etcd etcd .
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
kv=$(awk '$1=="require" && $2=="k8s.io/kubernetes"{print $3}' "$here/kube/go.mod")
minor=$(echo "$kv" | cut -d. -f2)
kver="-X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$kv -X k8s.io/component-base/version.gitTreeState=clean"
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kver"
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kver"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kver"
echo "$bin"
