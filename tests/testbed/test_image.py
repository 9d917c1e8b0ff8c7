"""The operator image that ``make image`` builds without Docker (hack/build-image.sh): its OCI
configuration, what its root filesystem holds and what it does not, and that its entrypoint
runs in it as a container would — chroot in a private mount namespace, root read-only, as uid
65532 with no capabilities (the same mounts the test bed's pod runtime gives a pod)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.testbed.conftest import ROOT, BuiltImage

from kanaria.sandbox._container import contained, mount_script, unpack_image

pytestmark = pytest.mark.xdist_group("operator-image")

SITE = "opt/kanaria/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def unpacked(operator_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    dest = tmp_path_factory.mktemp("image")
    yield unpack_image(operator_image.archive, dest)
    shutil.rmtree(dest, ignore_errors=True)  # ~400 MB unpacked


def _run_in(rootfs: Path, workdir: Path, argv: list[str], config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    (workdir / "hosts").write_text("127.0.0.1\tlocalhost\n")
    (workdir / "resolv.conf").write_text("")
    uid, gid = (int(x) for x in config["User"].split(":"))
    script = mount_script(rootfs, workdir, [("/tmp", {})], uid, gid, [])
    env = dict(e.split("=", 1) for e in config["Env"])
    return subprocess.run(contained(script, argv), env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_oci_layout_and_config(operator_image: BuiltImage, unpacked: tuple[Path, dict[str, Any]]) -> None:
    with tarfile.open(operator_image.archive) as tar:
        index = json.load(tar.extractfile("./index.json"))  # type: ignore[arg-type]
        assert json.load(tar.extractfile("./oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
    [manifest] = index["manifests"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == "0.1.0"
    _, config = unpacked
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["kanaria-operator"]
    assert "Cmd" not in config or not config["Cmd"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert config["Labels"]["io.kanaria.image.inputs"] == operator_image.key


def test_rootfs_holds_the_operator_alone(unpacked: tuple[Path, dict[str, Any]]) -> None:
    rootfs, _ = unpacked
    os_release = (rootfs / "etc" / "os-release").read_text()
    assert 'VERSION_CODENAME=bookworm' in os_release
    assert (rootfs / "usr" / "bin" / "python3.11").is_file()
    assert (rootfs / "opt" / "kanaria" / "bin" / "kanaria-operator").is_file()
    package = rootfs / SITE / "kanaria"
    for sub in ("api", "rollout", "analysis", "traffic", "workloads", "controller", "cli"):
        assert (package / sub / "__init__.py").is_file(), sub
    for absent in ("sandbox", "bench", "monitor"):
        assert not (package / absent).exists(), f"kanaria.{absent} is in the image"
    assert "nonroot:x:65532:65532:" in (rootfs / "etc" / "passwd").read_text()
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Packages")), "apt lists left in the image"
    # Byte code compiled at build time: nothing to write on a read-only root.
    assert list((package / "controller" / "__pycache__").glob("main.cpython-311.pyc"))


def test_entrypoint_runs_in_a_read_only_container_as_65532(unpacked: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    rootfs, config = unpacked
    done = _run_in(rootfs, tmp_path, [*config["Entrypoint"], "--help"], config)
    assert done.returncode == 0, done.stderr
    assert "usage: kanaria-operator" in done.stdout
    probe = ("import os, sys, kanaria.controller.main, kopf, kubernetes, scipy;"
             "print(os.getuid(), os.getgid(), sys.version_info[:2]);"
             "import importlib.util as u; print(u.find_spec('kanaria.sandbox'));"
             "open('/tmp/ok', 'w').write('x');"
             "\ntry:\n open('/opt/kanaria/x', 'w')\nexcept OSError as e:\n print(e.strerror)")
    done = _run_in(rootfs, tmp_path, ["python", "-c", probe], config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["65532 65532 (3, 11)", "None", "Read-only file system"], done.stdout
    caps = _run_in(rootfs, tmp_path, ["grep", "^CapEff", "/proc/self/status"], config)
    assert caps.stdout.split() == ["CapEff:", "0000000000000000"], caps


def test_modelserver_image_runs_the_reference_server(tmp_path: Path) -> None:
    """`make image-modelserver`: the reference model server with scikit-learn, same base."""
    done = subprocess.run(["bash", str(ROOT / "hack" / "build-image.sh"), "modelserver"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"hack/build-image.sh modelserver failed:\n{done.stderr[-4000:]}"
    archive = Path(done.stdout.strip().splitlines()[-1].split("\t")[0])
    rootfs, config = unpack_image(archive, tmp_path / "image")
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["python", "-m", "kanaria.sandbox.modelserver"]
    assert not (rootfs / SITE / "kanaria" / "controller").exists()
    done = _run_in(rootfs, tmp_path, [*config["Entrypoint"], "--help"], config)
    assert done.returncode == 0 and "--enable-faults" in done.stdout, done.stderr
    done = _run_in(rootfs, tmp_path, ["python", "-c", "import sklearn, kanaria.monitor, kanaria.sandbox.train"], config)
    shutil.rmtree(tmp_path / "image", ignore_errors=True)
    assert done.returncode == 0, done.stderr
