#!/usr/bin/env bash
# Builds an OCI image as an OCI archive without Docker: a Debian bookworm minbase root
# filesystem (mmdebstrap) with Debian's python3 (3.11) and a venv at /opt/kanaria holding a
# wheel built from this checkout and its dependencies from PyPI, one layer added with umoci.
#
#   hack/build-image.sh [operator|modelserver]     (make image, make image-modelserver)
#
# operator:    the wheel of `pip wheel --no-deps .` (pyproject.toml decides what is in it: the
#              operator alone, no sandbox, no benchmarks); entrypoint kanaria-operator.
# modelserver: the reference model server (kanaria.sandbox.modelserver) and the model-server
#              library (kanaria-monitor) with scikit-learn; entrypoint python -m ... modelserver.
#
# Both: user 65532:65532, no writes needed anywhere (byte code compiled at build time,
# PYTHONDONTWRITEBYTECODE=1), so a read-only root filesystem works.
# The archive goes to .cache/images/<name>-<hash of the inputs>.oci.tar (git-ignored) with the
# tag <version> inside; a symlink <name>.oci.tar points at the newest. When the archive for the
# current inputs exists the build is skipped. Prints path, size and time on stdout.
# Needs root (mmdebstrap's root mode, chroot), mmdebstrap and umoci (hack/install-system-deps.sh).
set -euo pipefail

what="${1:-operator}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out_dir="${KANARIA_IMAGE_DIR:-$root/.cache/images}"
suite=bookworm
mirror="${KANARIA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
python="${PYTHON:-python3}"
# A find-links folder that does not exist only makes pip warn on every line.
if [ -n "${PIP_FIND_LINKS:-}" ] && [ -z "$(ls -A "$PIP_FIND_LINKS" 2>/dev/null)" ]; then unset PIP_FIND_LINKS; fi
started=$(date +%s.%N)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
case "$what" in
  operator)
    name=kanaria-operator
    sources=(pyproject.toml README.md hack/build-image.sh operator/kanaria/py.typed
             operator/kanaria/__init__.py operator/kanaria/{api,rollout,analysis,traffic,workloads,controller,cli})
    entrypoint=(--config.entrypoint kanaria-operator)
    ;;
  modelserver)
    name=kanaria-modelserver
    # The sandbox modules the server imports (tests/unit/test_packaging.py checks the list).
    server_modules=(modelserver _http _proc samples train)
    sources=(pyproject.toml hack/build-image.sh operator/monitor-dist operator/kanaria/monitor)
    for m in "${server_modules[@]}"; do sources+=("operator/kanaria/sandbox/$m.py"); done
    entrypoint=(--config.entrypoint python --config.entrypoint=-m --config.entrypoint kanaria.sandbox.modelserver)
    ;;
  *) echo "usage: $0 [operator|modelserver]" >&2; exit 2 ;;
esac

# The key: every input file's path and content, minus byte code.
key=$(find "${sources[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
archive="$out_dir/$name-$key.oci.tar"
report() {
  local size
  size=$(du -m "$archive" | cut -f1)
  printf '%s\t%s MB\t%s s\t%s\n' "$archive" "$size" "$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}")" "$1"
}
if [ -s "$archive" ]; then
  ln -sfn "$(basename "$archive")" "$out_dir/$name.oci.tar"
  report cached
  exit 0
fi
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run hack/install-system-deps.sh" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "building the image needs root (mmdebstrap root mode, chroot)" >&2; exit 1; }

mkdir -p "$out_dir"
work=$(mktemp -d "$out_dir/.build-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$work/src"

# 1. The wheels, on the host: ours from a clean copy of the sources (a stale build/ in the
#    checkout cannot leak in), the dependencies from PyPI for CPython 3.11 on manylinux x86_64.
echo "[$name] wheels ..." >&2
case "$what" in
  operator)
    cp -a pyproject.toml README.md "$work/src/"
    mkdir -p "$work/src/operator"
    cp -a operator/kanaria "$work/src/operator/"
    "$python" -m pip wheel -q --no-deps -w "$work/wheels" "$work/src" >&2
    requirements=("$work"/wheels/kanaria-*.whl)
    ;;
  modelserver)
    "$python" -m pip wheel -q --no-deps -w "$work/wheels" "operator/monitor-dist" >&2
    requirements=("$work"/wheels/*.whl scikit-learn joblib numpy)
    ;;
esac
"$python" -m pip download -q -d "$work/wheels" --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 "${requirements[@]}" >&2

# 2. The root filesystem: minbase + python3, the venv filled offline from those wheels, the
#    user, and no apt caches, docs or man pages.
echo "[$name] rootfs (mmdebstrap $suite minbase) ..." >&2
install_hook='mkdir -p "$1/tmp/wheels" && cp -a '"$work"'/wheels/. "$1/tmp/wheels/" &&
  chroot "$1" python3 -m venv /opt/kanaria &&
  chroot "$1" /opt/kanaria/bin/pip install -q --no-index --find-links /tmp/wheels '"$(
    case "$what" in operator) echo kanaria ;; modelserver) echo 'kanaria-monitor scikit-learn joblib numpy' ;; esac)"' &&
  chroot "$1" /opt/kanaria/bin/pip uninstall -q -y pip &&
  rm -rf "$1/tmp/wheels"'
if [ "$what" = modelserver ]; then
  # The server runs from its source file (the sandbox is not a distribution).
  install_hook="$install_hook"' &&
  site=$(echo "$1"/opt/kanaria/lib/python3.11/site-packages) && mkdir -p "$site/kanaria/sandbox" &&
  touch "$site/kanaria/sandbox/__init__.py" &&
  for m in '"${server_modules[*]}"'; do cp '"$root"'/operator/kanaria/sandbox/$m.py "$site/kanaria/sandbox/"; done &&
  chroot "$1" /opt/kanaria/bin/python -m compileall -q /opt/kanaria/lib/python3.11/site-packages/kanaria >/dev/null'
fi
user_hook='echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd" &&
  echo "nonroot:x:65532:" >> "$1/etc/group" &&
  echo "nonroot:!:1::::::" >> "$1/etc/shadow"'
clean_hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old \
  "$1"/var/log/*.log "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/tmp/*'
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
nice -n 19 mmdebstrap --quiet --mode=root --variant=minbase --format=tar \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="$install_hook" --customize-hook="$user_hook" --customize-hook="$clean_hook" \
  "$suite" "$work/rootfs.tar" "$mirror" >&2

# 3. The OCI image: one layer, the config (user, entrypoint, environment), tag <version>.
echo "[$name] OCI layout (umoci) ..." >&2
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" "$work/rootfs.tar"
umoci config --image "$layout:$version" --config.user 65532:65532 "${entrypoint[@]}" \
  --config.workingdir / \
  --config.env PATH=/opt/kanaria/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.label org.opencontainers.image.title="$name" \
  --config.label org.opencontainers.image.version="$version" \
  --config.label io.kanaria.image.inputs="$key" \
  --author "Kanaria" --history.comment "hack/build-image.sh $what"
umoci gc --layout "$layout"
tar -C "$layout" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
ln -sfn "$(basename "$archive")" "$out_dir/$name.oci.tar"
# Older archives of this image: keep only the newest two.
ls -1t "$out_dir/$name"-*.oci.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
report built
