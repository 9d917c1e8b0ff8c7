"""`kubectl kanaria` as a user runs it: a subprocess with --kubeconfig, against the real control
plane, with the real operator acting on what it asks (metrics from an exporter scraped by a
real Prometheus). One ModelDeployment walks through every command; a second test covers the
errors (no such object, forbidden, no cluster, no kubeconfig, unknown revision)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.conftest import ROOT, apply_md, canary_spec, md_manifest, md_status, rev
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster, write_kubeconfig
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NAME = "iris"
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]


def kanaria(kubeconfig: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the plugin the way kubectl would: a separate process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "kanaria.cli.main", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def kanaria_each(kubeconfig: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent read-only commands at once (each start of the plugin costs seconds on a
    loaded machine); results in the order given."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: kanaria(kubeconfig, *args), commands))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command."""
    assert result.returncode == 1, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_every_command_on_a_live_rollout(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    kc = cluster.kubeconfig
    ns = ("-n", namespace)

    def status() -> dict[str, Any]:
        return md_status(k8s, namespace, NAME)

    def deploy(version: str, quality: float) -> str:
        body = md_manifest(NAME, namespace, version, **canary_spec(prom.url, STEPS))
        exporter.gauge("kanaria_test_quality", {"revision": rev(body)}).set(quality)
        apply_md(cluster, body)
        return rev(body)

    def at_indefinite_pause(revision: str) -> bool:
        st = status()
        # Measured: the quality verdict is in (the first measurement at 20% may come before
        # Prometheus has scraped the new revision's series; the pause keeps measuring).
        measured = any(a.get("metric") == "quality" and a.get("verdict") != "inconclusive"
                       for a in st.get("analysis") or [])
        return (st.get("canaryRevision") == revision and st.get("phase") == "Paused"
                and st.get("currentStep") == 1 and measured)

    start_operator()
    r1 = deploy("v1", 0.95)
    wait_for(lambda: status().get("stableRevision") == r1 and status().get("phase") == "Stable", 60,
             message="v1 stable")

    # list: table, json, yaml, all namespaces
    as_table, as_json, as_yaml, all_ns = kanaria_each(
        kc, ("list", *ns), ("list", *ns, "-o", "json"), ("list", *ns, "-o", "yaml"), ("list", "-A"))
    table = ok(as_table).splitlines()
    assert table[0].split()[:4] == ["NAME", "MODEL", "PHASE", "STABLE"]
    assert table[1].split()[:5] == [NAME, "iris:v1", "Stable", r1, "(v1)"]
    listed = json.loads(ok(as_json))
    assert [i["metadata"]["name"] for i in listed["items"]] == [NAME]
    assert yaml.safe_load(ok(as_yaml))["items"][0]["status"]["stableRevision"] == r1
    everywhere = ok(all_ns)
    assert everywhere.startswith("NAMESPACE") and any(
        line.split()[:2] == [namespace, NAME] for line in everywhere.splitlines())

    # v2 waits at the indefinite pause (step 2 of 4) with the metric measured
    r2 = deploy("v2", 0.97)
    wait_for(lambda: at_indefinite_pause(r2), 90, message="v2 at the indefinite pause")
    as_table, as_json = kanaria_each(kc, ("status", NAME, *ns), ("status", NAME, *ns, "-o", "json"))
    view = ok(as_table)
    assert "Phase:      Paused" in view and "Step:       2/4" in view, view
    assert f"Stable:     {r1} (v1)  weight 80%" in view and f"Canary:     {r2} (v2)  weight 20%" in view
    assert "Message:    " in view and "Message:    -" not in view
    assert "Decision:" in view and "History:" in view
    quality = next(line.split() for line in view.splitlines() if line.strip().startswith("quality"))
    assert quality[1:4] == ["custom", "pass", "0.97"], view
    assert json.loads(ok(as_json))["status"]["canaryRevision"] == r2

    # pause and resume, each handled by the operator (--wait)
    out = ok(kanaria(kc, "pause", NAME, *ns, "--wait", "--timeout", "60"))
    assert out.startswith(f'pause requested for modeldeployment "{NAME}"') and "handled: phase Paused" in out
    assert status()["paused"] is True
    out = ok(kanaria(kc, "resume", NAME, *ns, "--wait", "--timeout", "60"))
    assert "handled:" in out and status()["paused"] is False

    # promote (no --wait), then watch until the rollout settles
    out = ok(kanaria(kc, "promote", NAME, *ns))
    assert "kanaria.io/action=promote@" in out
    frames = ok(kanaria(kc, "status", NAME, *ns, "--watch", "--timeout", "90")).split("---\n")
    assert "Phase:      Stable" in frames[-1] and f"Stable:     {r2} (v2)  weight 100%" in frames[-1], frames[-1]
    assert status()["stableRevision"] == r2
    assert status()["history"][-1]["outcome"] == "promoted"

    # history
    as_table, as_json = kanaria_each(kc, ("history", NAME, *ns), ("history", NAME, *ns, "-o", "json"))
    rows = [line.split() for line in ok(as_table).splitlines()]
    assert rows[0][:3] == ["REVISION", "VERSION", "OUTCOME"]
    assert [r2, "v2", "promoted"] == rows[-1][:3]
    assert json.loads(ok(as_json))[-1]["revision"] == r2

    # abort v3 at its pause → RolledBack; retry → its canary starts again
    r3 = deploy("v3", 0.95)
    wait_for(lambda: at_indefinite_pause(r3), 90, message="v3 at the indefinite pause")
    out = ok(kanaria(kc, "abort", NAME, *ns, "--wait", "--timeout", "60"))
    assert "handled: phase RolledBack" in out, out
    assert status()["rejectedRevision"] == r3 and status()["history"][-1]["outcome"] == "aborted"
    ok(kanaria(kc, "retry", NAME, *ns, "--wait", "--timeout", "60"))
    wait_for(lambda: status().get("canaryRevision") == r3, 60, message="v3 canary again")

    # rollback to a retired revision (v1), which also ends v3's canary
    assert r1 in status().get("retired", {})
    out = ok(kanaria(kc, "rollback", NAME, *ns, "--to", r1, "--wait", "--timeout", "60"))
    assert f"rollback to {r1} requested" in out and "handled:" in out
    wait_for(lambda: status().get("stableRevision") == r1, 30, message="v1 stable again")

    # an unknown revision is refused before anything is written; the report as PNG and as HTML
    # (with a Prometheus to query for the weight curve)
    png, page = tmp_path / "report.png", tmp_path / "report.html"
    unknown, as_png, as_html = kanaria_each(
        kc, ("rollback", NAME, *ns, "--to", "nosuchrev"), ("report", NAME, *ns, "-o", str(png)),
        ("report", NAME, *ns, "-o", str(page), "--prometheus", prom.url))
    err = failed(unknown)
    assert err.startswith(f'error: cannot roll back modeldeployment "{NAME}" to "nosuchrev": not a kept revision (kept: ')
    assert r2 in err
    assert ok(as_png).strip() == f"wrote {png}" and ok(as_html).strip() == f"wrote {page}"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "data:image/png;base64,iVBORw0KGgo" in text and "RolledBack" in text and r3 in text


def test_errors_are_one_clear_line(
    cluster: LocalCluster, kanaria_crd: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    kc = cluster.kubeconfig
    apply_md(cluster, md_manifest("quiet", namespace, "v1"))  # no operator: status stays empty

    # no such object, for a read and for an action
    missing = f'error: modeldeployment "nosuch" not found in namespace "{namespace}"'
    get, patch, rollback = kanaria_each(
        kc, ("status", "nosuch", "-n", namespace), ("promote", "nosuch", "-n", namespace),
        ("rollback", "quiet", "-n", namespace, "--to", "abc"))
    assert failed(get) == missing and failed(patch) == missing
    assert failed(rollback).endswith("not a kept revision (kept: none)")

    # forbidden: an identity that may only get and list
    cluster.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    cluster.kubectl("create", "role", "viewer", "-n", namespace, "--verb=get,list",
                    "--resource=modeldeployments.kanaria.io")
    cluster.kubectl("create", "rolebinding", "viewer", "-n", namespace, "--role=viewer",
                    f"--serviceaccount={namespace}:viewer")
    token = cluster.kubectl("create", "token", "viewer", "-n", namespace).strip()
    viewer = tmp_path / "viewer.kubeconfig"
    user = f"system:serviceaccount:{namespace}:viewer"
    write_kubeconfig(viewer, cluster.server, cluster.ca_file, user, token, namespace=namespace)
    # the context's namespace is the default one; RBAC may take a moment to reach the authorizer
    wait_for(lambda: "quiet" in kanaria(viewer, "list").stdout, 30, interval=1, message="viewer can list")
    err = failed(kanaria(viewer, "promote", "quiet"))
    assert err.startswith("error: forbidden: cannot patch modeldeployments.kanaria.io") and user in err, err
    assert get_md_annotations(cluster, namespace, "quiet") == ""

    # no cluster at the address, and no kubeconfig at all
    from kanaria.sandbox._proc import free_port

    dead_url = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "dead.kubeconfig"
    write_kubeconfig(dead, dead_url, cluster.ca_file, "nobody", "token")
    absent = tmp_path / "absent.kubeconfig"
    with ThreadPoolExecutor(2) as pool:
        unreachable = pool.submit(kanaria, dead, "list")
        no_config = pool.submit(kanaria, absent, "status", "quiet")
    err = failed(unreachable.result())
    assert err.startswith(f"error: cannot reach the cluster at {dead_url}: ") and "refused" in err, err
    err = failed(no_config.result())
    assert err == f"error: no kubeconfig: {absent} does not exist (use --kubeconfig or set KUBECONFIG)"


def get_md_annotations(cluster: LocalCluster, namespace: str, name: str) -> str:
    return cluster.kubectl("get", "-n", namespace, f"modeldeployment/{name}",
                           "-o", "jsonpath={.metadata.annotations.kanaria\\.io/action}").strip()
