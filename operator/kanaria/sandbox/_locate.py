"""Where the test bed's programs and pinned Go modules live on this machine."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kanaria.sandbox._proc import run

CLUSTER_PROGRAMS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


def repo_root() -> Path:
    """The repository root: $KANARIA_ROOT, else three levels above the `kanaria` package."""
    env = os.environ.get("KANARIA_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[3]
    if not (root / "hack" / "localcluster" / "build.sh").is_file():
        raise RuntimeError(
            f"{root} does not look like the Kanaria repository (no hack/localcluster/build.sh); "
            "set KANARIA_ROOT to the checkout"
        )
    return root


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in CLUSTER_PROGRAMS)


def cluster_bin_dir() -> Path:
    """The directory with the control-plane programs.

    $KANARIA_CLUSTER_BIN when it already holds all of them; otherwise whatever
    hack/localcluster/build.sh prints (a no-op when the pinned versions are built, a cold
    build of tens of minutes when they are not).
    """
    env = os.environ.get("KANARIA_CLUSTER_BIN")
    if env and _complete(Path(env)):
        return Path(env)
    script = repo_root() / "hack" / "localcluster" / "build.sh"
    out = run(["bash", str(script)], timeout=3 * 3600).strip().splitlines()
    if not out:
        raise RuntimeError(f"{script} printed no bin directory")
    directory = Path(out[-1])
    missing = [n for n in CLUSTER_PROGRAMS if not os.access(directory / n, os.X_OK)]
    if missing:
        raise RuntimeError(f"{directory} lacks {', '.join(missing)} after {script}")
    return directory


def helm_binary(*, build: bool) -> Path | None:
    """The pinned helm (hack/localcluster/build-helm.sh): $KANARIA_HELM when set, else the
    cached build, built first when `build` is true; None when it is not there (and `build` is
    false). No helm from PATH: the chart's tests run the version the repository pins."""
    env = os.environ.get("KANARIA_HELM")
    if env:
        return Path(env) if os.access(env, os.X_OK) else None
    script = repo_root() / "hack" / "localcluster" / "build-helm.sh"
    if build:
        out = run(["bash", str(script)], timeout=3600).strip().splitlines()
    else:
        out = run(["bash", str(script), "--where"]).strip().splitlines()
    path = Path(out[-1]) if out else None
    return path if path is not None and os.access(path, os.X_OK) else None


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}


def go_module_dir(module: str, version: str) -> Path:
    """The unpacked directory of module@version in the Go module cache (downloaded if absent).

    With ``go`` present this always asks ``go mod download``, which takes the module cache's
    lock: a directory another process is still unpacking (tests start in parallel on a new
    machine) exists before its files do, so its mere presence proves nothing."""
    go = shutil.which("go")
    if go is not None:
        info = json.loads(run([go, "mod", "download", "-json", f"{module}@{version}"], env=_go_env()))
        return Path(info["Dir"])
    modcache = os.environ.get("GOMODCACHE")
    if modcache:
        candidate = Path(modcache) / f"{module}@{version}"
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"{module}@{version} is not in the Go module cache and `go` is missing")


def required_version(go_mod: Path, module: str) -> str:
    """The version of `module` that a go.mod requires (the test bed's single pin)."""
    for line in go_mod.read_text().splitlines():
        parts = line.replace("require", " ").split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    raise RuntimeError(f"{go_mod} does not require {module}")
