"""The package layering of docs/architecture.md, enforced on every import in operator/kanaria.

Every import of a ``kanaria`` module — at the top of a file or inside a function, absolute or
relative — is read with ``ast`` and checked against the packages its own package may use. A
new package must be added here, so the rule can never silently miss one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "operator" / "kanaria"

# package -> the other kanaria packages it may import. Bottom first.
ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "monitor": set(),  # installed into model servers on its own: imports nothing of Kanaria
    "analysis": {"api"},
    "workloads": {"api"},
    # Routers label and own the objects they write the way workloads does, and the replica
    # router scales the revisions' workloads: traffic sits above workloads.
    "traffic": {"api", "workloads"},
    # The engine is pure: it may use pure statistics from analysis, never I/O (see below).
    "rollout": {"api", "analysis"},
    "controller": {"api", "analysis", "workloads", "traffic", "rollout"},
    "cli": {"api", "rollout"},
    # Development tools, never shipped with the operator: they may use anything.
    "sandbox": {"api", "analysis", "workloads", "traffic", "rollout", "controller", "monitor", "cli"},
    "bench": {"api", "analysis", "rollout"},
}

# The only modules of analysis that talk to the outside world (to Prometheus, never to
# Kubernetes); the engine must not import them.
ANALYSIS_IO = {"kanaria.analysis.prometheus", "kanaria.analysis.provider"}
# Third-party clients no pure layer may import.
IO_CLIENTS = ("kopf", "kubernetes", "prometheus_api_client", "httpx", "requests", "urllib3")
PURE = ("api", "rollout", "analysis")
KUBE_CLIENTS = ("kopf", "kubernetes")


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else None


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    here = ["kanaria", *path.relative_to(ROOT).with_suffix("").parts]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # "from kanaria import rollout" imports a package too
            if name == "kanaria":
                found.extend((node.lineno, f"kanaria.{a.name}") for a in node.names)
    return found


def test_every_package_has_a_rule() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(ALLOWED), "add the new package's rule to ALLOWED"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layering(path: Path) -> None:
    package = _package(path)
    if package is None:
        return  # kanaria/__init__.py
    wrong = []
    for line, name in _imports(path):
        parts = name.split(".")
        module = "kanaria." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        io_allowed = module in ANALYSIS_IO and parts[0] not in KUBE_CLIENTS
        if parts[0] in IO_CLIENTS and package in PURE and not io_allowed:
            wrong.append(f"line {line}: {name} (I/O client in a pure package)")
        if parts[0] != "kanaria" or len(parts) < 2:
            continue
        target = parts[1]
        if target == package or target == "__init__":
            continue
        if target not in ALLOWED[package]:
            wrong.append(f"line {line}: {name} ({package} may import {sorted(ALLOWED[package]) or 'nothing'})")
        if package == "rollout" and any(name == m or name.startswith(m + ".") for m in ANALYSIS_IO):
            wrong.append(f"line {line}: {name} (the engine may not import analysis I/O)")
    assert not wrong, f"{path.relative_to(ROOT)} breaks the layering:\n" + "\n".join(wrong)


def test_there_are_no_import_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = {p: set() for p in ALLOWED}
    for path in _modules():
        package = _package(path)
        if package is None:
            continue
        for _, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "kanaria" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] != package:
                edges[package].add(parts[1])

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    cycles = [p for p in edges if reaches(p, p, {p})]
    assert not cycles, f"import cycles through {cycles}: {edges}"


def test_the_rule_reads_relative_and_nested_imports() -> None:
    """The checker itself works: a relative import inside a function, up from analysis into
    rollout, is resolved to kanaria.rollout (and analysis may not import it)."""
    probe = ROOT / "analysis" / "probe.py"  # never written: the source is passed in
    source = "def f():\n    from ..rollout import engine\n    return engine\n"
    assert _imports(probe, source) == [(2, "kanaria.rollout")]
    assert "rollout" not in ALLOWED["analysis"]
