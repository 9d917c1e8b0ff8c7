#!/usr/bin/env bash
# Fetches the pinned kind module (hack/localcluster/kind/go.mod) into the Go module cache and
# builds kindcheck, which checks a kind cluster config with kind's own loading and validation
# (hack/localcluster/kind/kindcheck/main.go), into the git-ignored cache beside the control
# plane: .cache/cluster-bin/kindcheck-<version>-<key>/kindcheck, where <key> is a hash of the
# module files, the checker and this script. Built only when missing.
# Prints kind's module directory, then the path of the kindcheck binary on the last line.
#   --where   print the binary's path only, without fetching or building (the tests use it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
module=sigs.k8s.io/kind
version=$(awk -v m="$module" '$1=="require" && $2==m {print $3}' "$here/kind/go.mod")
[ -n "$version" ] || { echo "hack/localcluster/kind/go.mod does not require $module" >&2; exit 1; }
key=$(cat "$here"/kind/go.mod "$here"/kind/go.sum "$here"/kind/tools.go "$here"/kind/kindcheck/main.go \
          "$here"/build-kindcheck.sh | sha256sum | cut -c1-12)
bin=$root/.cache/cluster-bin/kindcheck-$version-$key
if [ "${1:-}" = "--where" ]; then echo "$bin/kindcheck"; exit 0; fi
# The module's source, checked against kind/go.sum (a no-op when the cache has it).
moddir=$(cd "$here/kind" && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -f "$moddir/go.mod" ] || { echo "go mod download gave no directory for $module@$version" >&2; exit 1; }
echo "$moddir"
mkdir -p "$bin"
# One build at a time per key: a second caller waits, then finds the binary there.
exec 9>"$bin/.lock"
flock 9
if [ ! -x "$bin/kindcheck" ]; then
  t0=$SECONDS
  echo "building kindcheck ($module $version) ..." >&2
  # kind's config loading and validation are internal packages (sigs.k8s.io/kind/pkg/internal),
  # which only packages under sigs.k8s.io/kind/pkg may import, and go build -overlay may not add
  # files under the module cache: so the checker is built as a command in a temporary copy of
  # the module (2.5 MB), under pkg/, with kind's own go.mod and go.sum.
  src=$(mktemp -d "${TMPDIR:-/tmp}/kindcheck-src.XXXXXX")
  trap 'rm -rf "$src"' EXIT
  cp -R "$moddir/." "$src/"
  chmod -R u+w "$src"
  mkdir -p "$src/pkg/kanaria-kindcheck"
  cp "$here/kind/kindcheck/main.go" "$src/pkg/kanaria-kindcheck/main.go"
  (cd "$src" && nice -n 19 go build -tags kindcheck -trimpath -ldflags="-s -w" \
     -o "$bin/kindcheck.tmp" ./pkg/kanaria-kindcheck)
  mv "$bin/kindcheck.tmp" "$bin/kindcheck"
  echo "built kindcheck in $((SECONDS - t0))s" >&2
fi
echo "$bin/kindcheck"
