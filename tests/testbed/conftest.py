"""Fixtures of the test-bed tests that need the operator image (``make image``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TOOLS = ("mmdebstrap", "umoci", "unshare", "setpriv", "chroot")


@dataclass(frozen=True)
class BuiltImage:
    archive: Path
    """The OCI archive, .cache/images/kanaria-operator-<key>.oci.tar."""
    key: str
    """The hash of the image's inputs, which names the archive."""

    @property
    def reference(self) -> str:
        """What a pod template's ``image`` says to mean this archive (kustomize's newName and
        newTag, the chart's image.repository and image.tag)."""
        return f"localhost/kanaria-operator:{self.key}"


@pytest.fixture(scope="session")
def operator_image() -> BuiltImage:
    """The operator image, built by hack/build-image.sh (what ``make image`` runs; instant when
    the archive of the current inputs exists). Building and running it needs root (mmdebstrap's
    root mode, mount namespaces, chroot)."""
    missing = [tool for tool in IMAGE_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (hack/install-system-deps.sh installs them)")
    if os.geteuid() != 0:
        pytest.fail("building and running the operator image needs root")
    done = subprocess.run(["bash", str(ROOT / "hack" / "build-image.sh"), "operator"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"hack/build-image.sh failed:\n{done.stderr[-4000:]}"
    archive = Path(done.stdout.strip().splitlines()[-1].split("\t")[0])
    assert archive.is_file(), done.stdout
    key = archive.name.removeprefix("kanaria-operator-").removesuffix(".oci.tar")
    return BuiltImage(archive, key)
