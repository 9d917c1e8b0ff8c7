"""A container's file system view on the test bed: an OCI image unpacked with umoci, and the
shell script that mounts it for one container in a private mount namespace and drops to the
container's user (used by :mod:`kanaria.sandbox.podruntime` and the image's own test)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["contained", "inside", "mount_script", "unpack_image"]

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def unpack_image(archive: Path, dest: Path) -> tuple[Path, dict[str, Any]]:
    """Unpack an OCI archive's (only) image with umoci into ``dest``, once; returns the root
    filesystem and the image config (``config`` of the OCI image configuration)."""
    bundle, layout = dest / "bundle", dest / "layout"
    if not (bundle / "config.json").is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(layout, filter="tar")
        tag = json.loads((layout / "index.json").read_text())["manifests"][0]["annotations"][
            "org.opencontainers.image.ref.name"]
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                       check=True, capture_output=True, text=True)
    index = json.loads((layout / "index.json").read_text())
    manifest = _blob(layout, index["manifests"][0]["digest"])
    config: dict[str, Any] = _blob(layout, manifest["config"]["digest"]).get("config") or {}
    return bundle / "rootfs", config


def _blob(layout: Path, digest: str) -> dict[str, Any]:
    algo, _, hexa = digest.partition(":")
    data: dict[str, Any] = json.loads((layout / "blobs" / algo / hexa).read_text())
    return data


def inside(rootfs: Path, path: str) -> Path:
    """``path`` within ``rootfs``, its symlinks resolved inside it (/var/run -> /run), never
    escaping to the host's own directories."""
    parts, current, hops = list(PurePosixPath(path).parts[1:]), PurePosixPath("/"), 0
    while parts:
        part = parts.pop(0)
        candidate = rootfs / str(current / part).lstrip("/")
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
        elif candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ValueError(f"too many symlinks in {path}")
            target = PurePosixPath(os.readlink(candidate))
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
            current = PurePosixPath("/") if target.is_absolute() else current
        else:
            current = current / part
    return rootfs / str(current).lstrip("/")


def contained(script: str, argv: list[str]) -> list[str]:
    """The host command that runs ``script`` (from :func:`mount_script`) in a new, private
    mount namespace with ``argv`` as its arguments."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "pod", *argv]


def mount_script(rootfs: Path, poddir: Path, mounts: list[tuple[str, Path | dict[str, Any]]],
                 uid: int, gid: int, groups: list[int]) -> str:
    """The shell script that builds a container's mounts in its new mount namespace and execs
    the container's argv ($@) in the chroot as uid:gid: the root read-only; for each
    (mountPath, source) in ``mounts`` a tmpfs when the source is an emptyDir (a dict, its
    sizeLimit honoured) or the host folder bound read-only when it is a Path (a projected
    volume); /proc; a minimal read-only /dev; ``poddir``/hosts and ``poddir``/resolv.conf
    bound read-only on /etc. It creates the mount points in ``rootfs`` (the unpacked image is
    ours)."""
    q = shlex.quote
    dirs: list[tuple[Path, str]] = [(inside(rootfs, "/proc"), "mount -t proc -o nosuid,nodev,noexec proc {}")]
    dev = inside(rootfs, "/dev")
    dirs.append((dev, "mount -t tmpfs -o mode=755,size=64k,nosuid,noexec tmpfs {}"))
    for path, source in mounts:
        if isinstance(source, Path):
            dirs.append((inside(rootfs, path), f"mount --bind {q(str(source))} {{}} && mount -o remount,bind,ro {{}}"))
        else:  # emptyDir: a tmpfs (medium Memory or not)
            size = _bytes(source["sizeLimit"]) if source.get("sizeLimit") else "256m"
            dirs.append((inside(rootfs, path), f"mount -t tmpfs -o mode=1777,size={size} tmpfs {{}}"))
    files = [(inside(rootfs, f"/etc/{name}"),
              f"mount --bind {q(str(poddir / name))} {{}} && mount -o remount,bind,ro {{}}")
             for name in ("hosts", "resolv.conf")]
    for target, _ in dirs:
        target.mkdir(parents=True, exist_ok=True)
    for target, _ in files:
        if target.is_symlink() or not target.exists():
            target.unlink(missing_ok=True)
            target.touch()
    lines = [f"R={q(str(rootfs))}", 'mount --bind "$R" "$R"', 'mount -o remount,bind,ro "$R"']
    for target, command in dirs + files:
        lines.append(command.replace("{}", q(str(target))))
        if target == dev:
            lines += [f"touch {q(str(dev / d))} && mount --bind /dev/{d} {q(str(dev / d))}" for d in DEVICES]
            lines.append(f"mkdir {q(str(dev / 'shm'))} {q(str(dev / 'pts'))}")
            lines.append(f"mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs {q(str(dev / 'shm'))}")
            lines += [f"ln -s /proc/self/fd{src} {q(str(dev / name))}" for name, src in
                      (("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2"))]
            lines.append(f"mount -o remount,ro {q(str(dev))}")
    supplementary = ",".join(str(g) for g in groups)
    lines.append(f'exec chroot "$R" setpriv --reuid={uid} --regid={gid} '
                 + (f"--groups={supplementary} " if supplementary else "--clear-groups ")
                 + '--no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"')
    return "\n".join(lines)



def _bytes(quantity: str) -> str:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return str(int(float(quantity[: -len(unit)]) * factor))
    return str(int(float(quantity)))
