"""What ships where: the operator's wheel carries the operator alone, and the model-server
library installs with nothing beneath it but prometheus_client.

Both wheels are built the way a user or the image builds them (``pip wheel``, with pip's
isolated build environment, so setuptools comes from the package index or pip's cache) from a
copy of the sources, so a stale ``build/`` in the checkout cannot leak into them.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "kanaria"

pytestmark = pytest.mark.xdist_group("packaging")  # build the wheels once per run

OPERATOR = {"api", "rollout", "analysis", "traffic", "workloads", "controller", "cli"}
MODEL_SERVER_LIBRARY = {"monitor"}
DEVELOPMENT_ONLY = {"sandbox", "bench"}

# Import name -> distribution the operator declares for it.
DECLARED = {
    "kopf": "kopf",
    "aiohttp": "aiohttp",
    "kubernetes": "kubernetes",
    "pydantic": "pydantic",
    "prometheus_api_client": "prometheus-api-client",
    "prometheus_client": "prometheus-client",
    "yaml": "pyyaml",
    "scipy": "scipy",
    "greenlet": "greenlet",  # batched analysis (kanaria.controller.batch)
}
TRANSITIVE = {"urllib3", "requests"}  # urllib3: of kubernetes and of requests; requests: of prometheus-api-client
OPTIONAL = {"matplotlib": "report"}  # imported inside the function that needs it

HEAVY = ("numpy", "scipy", "pandas", "matplotlib", "kopf", "kubernetes", "sklearn", "pydantic")


def _clean_env() -> dict[str, str]:
    """The environment without the checkout on PYTHONPATH (it would hide what is installed)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(args: list[str], cwd: Path | None = None, timeout: float = 240) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "operator",
        src / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"),
    )
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
          ".", "./operator/monitor-dist"], cwd=src)  # fmt: skip
    found = {p.name.split("-")[0]: p for p in dist.glob("*.whl")}
    assert set(found) == {"kanaria", "kanaria_monitor"}, sorted(found)
    return {"operator": found["kanaria"], "monitor": found["kanaria_monitor"]}


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _metadata(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{member}")]
        return zf.read(name).decode()


def _requirements(wheel: Path) -> list[str]:
    """Requires-Dist without the optional extras."""
    meta = Parser().parsestr(_metadata(wheel, "METADATA"))
    return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def test_every_package_in_the_checkout_has_a_place() -> None:
    """A new package under kanaria/ must be put in the operator, the library or the dev tools."""
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == OPERATOR | MODEL_SERVER_LIBRARY | DEVELOPMENT_ONLY


def test_operator_wheel_holds_the_operator_alone(wheels: dict[str, Path]) -> None:
    names = _names(wheels["operator"])
    code = [n for n in names if not n.startswith("kanaria-0.1.0.dist-info/")]
    assert all(n.startswith("kanaria/") for n in code), code
    assert {n.split("/")[1] for n in code if n.count("/") >= 2} == OPERATOR
    assert {n for n in code if n.count("/") == 1} == {"kanaria/__init__.py", "kanaria/py.typed"}
    for left_out in ("sandbox", "bench", "monitor"):
        assert not any(n.startswith(f"kanaria/{left_out}/") for n in names)
    # Every operator module of the checkout is in it.
    shipped = {n for n in code if n.endswith(".py")}
    expected = {
        str(p.relative_to(PACKAGE.parent))
        for sub in OPERATOR
        for p in (PACKAGE / sub).rglob("*.py")
    }
    assert expected <= shipped


def test_operator_wheel_commands_and_requirements(wheels: dict[str, Path]) -> None:
    entry_points = _metadata(wheels["operator"], "entry_points.txt")
    scripts = [line.split("=")[0].strip() for line in entry_points.splitlines() if "=" in line]
    assert sorted(scripts) == ["kanaria-operator", "kubectl-kanaria"]
    required = _requirements(wheels["operator"])
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for r in required}
    assert names == set(DECLARED.values())
    for heavy in ("numpy", "pandas", "matplotlib", "scikit-learn", "httpx"):
        assert heavy not in names
    (client,) = [r for r in required if r.startswith("prometheus-api-client")]
    assert ">=0.7" in client  # before 0.7 it required pandas, numpy and matplotlib


def test_operator_imports_only_what_it_declares() -> None:
    """Every third-party import of the shipped code is a declared requirement (or its own
    requirement); matplotlib, an extra, only inside a function."""
    optional_at_module_level: list[str] = []
    undeclared: list[str] = []
    for sub in OPERATOR:
        for path in (PACKAGE / sub).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            top = {id(node) for node in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    head = module.split(".")[0]
                    if head == "kanaria":
                        assert module.split(".")[1] in OPERATOR, f"{path}: imports {module}"
                    elif head in OPTIONAL:
                        if id(node) in top:
                            optional_at_module_level.append(f"{path}: {module}")
                    elif head not in sys.stdlib_module_names | DECLARED.keys() | TRANSITIVE:
                        undeclared.append(f"{path}: {module}")
    assert undeclared == []
    assert optional_at_module_level == []


def test_monitor_wheel_needs_prometheus_client_alone(wheels: dict[str, Path]) -> None:
    names = _names(wheels["monitor"])
    code = [n for n in names if ".dist-info/" not in n]
    assert code and all(n.startswith("kanaria/monitor/") for n in code), code
    assert "kanaria/__init__.py" not in names  # `kanaria` stays a namespace when installed alone
    assert "kanaria/monitor/py.typed" in names
    assert [r.split(">")[0].split("=")[0].strip() for r in _requirements(wheels["monitor"])] == [
        "prometheus-client"
    ]


_PROBE = """
import importlib.util, json, sys
from kanaria.monitor import ModelMonitor, ReferenceProfile, decile_edges
profile = ReferenceProfile(("x",), (decile_edges(range(100)),), decile_edges([0.5, 0.7, 0.9]), ("a", "b"))
monitor = ModelMonitor("m", "r1", profile, version="v1")
monitor.observe_request("q1", [42.0], "a", 0.8, 0.01)
assert monitor.feedback("q1", "a")
heavy = {HEAVY!r}
print(json.dumps({{
    "exposition": monitor.exposition().decode(),
    "imported": sorted(name for name in heavy if name in sys.modules),
    "importable": sorted(name for name in heavy if importlib.util.find_spec(name) is not None),
}}))
"""


def test_monitor_installs_into_a_fresh_venv_and_imports_without_the_operator(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    # prometheus-client comes from the index (or pip's cache): what `pip install` resolves.
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "--find-links", str(wheels["monitor"].parent), "kanaria-monitor"])  # fmt: skip
    installed = json.loads(_run([str(python), "-m", "pip", "list", "--format=json"]))
    names = {p["name"].lower().replace("_", "-") for p in installed} - {"pip", "setuptools"}
    assert names == {"kanaria-monitor", "prometheus-client"}
    result = json.loads(_run([str(python), "-c", _PROBE.format(HEAVY=HEAVY)], cwd=tmp_path))
    assert result["imported"] == [] and result["importable"] == []
    assert 'kanaria_model_labels_total{model="m",outcome="correct",revision="r1"} 1.0' in result["exposition"]


def _kanaria_imports(path: Path) -> set[str]:
    """The kanaria modules a file imports (absolute imports only, as the project writes them)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("kanaria."):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kanaria."))
    return found


def test_the_model_server_image_holds_every_sandbox_module_its_server_imports() -> None:
    """hack/build-image.sh lists the sandbox modules of the model-server image by hand (once); the
    reference server's imports, followed within kanaria.sandbox, must all be on that list (a
    module left off makes the image's entrypoint fail at import)."""
    script = (ROOT / "hack" / "build-image.sh").read_text()
    listed_line = next(line for line in script.splitlines() if line.strip().startswith("server_modules=("))
    listed = set(listed_line.split("(", 1)[1].split(")", 1)[0].split())
    assert 'for m in \'"${server_modules[*]}"\'; do cp' in script  # the same list is what the image gets
    wanted: set[str] = set()
    todo = ["modelserver"]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for module in _kanaria_imports(PACKAGE / "sandbox" / f"{name}.py"):
            parts = module.split(".")
            if parts[:2] == ["kanaria", "sandbox"] and len(parts) > 2 and (PACKAGE / "sandbox" / f"{parts[2]}.py").exists():
                todo.append(parts[2])
    assert wanted - listed == set(), f"add to hack/build-image.sh's model-server sources: {sorted(wanted - listed)}"
