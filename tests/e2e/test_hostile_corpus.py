"""The whole bad-input corpus, applied while another ModelDeployment's canary runs: every object
is refused by the API server or marked Invalid, a poisoned (3,000-deep) status is survived, and
the healthy rollout beside them walks its steps and is promoted as if they were not there, with
no operator restart and no reconcile error."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from tests.e2e.conftest import apply_md, apply_stable, canary_spec, md_manifest, md_status, rev
from tests.e2e.test_bad_input import INVALID, REJECTED, _in
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e]

STEPS = [{"setWeight": 20}, {"pause": {"duration": "15s"}}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]


def test_the_corpus_beside_a_healthy_canary(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    op = start_operator()
    pid = op.pid
    v1 = md_manifest("healthy", namespace, "v1", **canary_spec(prom.url, STEPS))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v1)}).set(0.95)
    apply_stable(cluster, k8s, v1)
    v2 = md_manifest("healthy", namespace, "v2", **canary_spec(prom.url, STEPS))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v2)}).set(0.97)
    apply_md(cluster, v2)
    wait_for(lambda: md_status(k8s, namespace, "healthy").get("canaryWeight") == 20, 60, message="the canary at 20%")

    refused = 0
    for case in REJECTED:
        with pytest.raises(RuntimeError) as err:
            apply_md(cluster, _in(case.body, namespace))
        assert all(m in str(err.value) for m in case.messages), (case.name, str(err.value)[-300:])
        refused += 1
    for case in INVALID:
        apply_md(cluster, _in(case.body, namespace))
    # One object poisoned with a status 3,000 levels deep.
    poisoned = _in(INVALID[0].body, namespace)
    poisoned["metadata"]["name"] = "poisoned"
    apply_md(cluster, poisoned)
    patch = tmp_path / "deep.json"
    patch.write_text(json.dumps({"status": {"notes": "x"}}).replace('"x"', "[" * 3000 + "]" * 3000))
    cluster.kubectl("patch", "-n", namespace, "modeldeployment/poisoned", "--subresource=status", "--type=merge",
                    "--patch-file", str(patch))

    def not_invalid() -> list[str]:
        return [c.body["metadata"]["name"] for c in INVALID
                if md_status(k8s, namespace, c.body["metadata"]["name"]).get("phase") != "Invalid"]

    wait_for(lambda: not not_invalid(), 120, interval=0.5, message=lambda: f"all Invalid; not yet: {not_invalid()}")
    for case in INVALID:
        message = md_status(k8s, namespace, case.body["metadata"]["name"])["message"]
        assert all(m in message for m in case.messages), (case.name, message)
    r2 = rev(v2)
    st = wait_for(lambda: (s := md_status(k8s, namespace, "healthy")).get("stableRevision") == r2 and s, 180,
                  interval=0.5, message="the healthy canary promoted beside the corpus")
    assert st["history"][-1]["outcome"] == "promoted", st["history"][-1]
    assert op.alive() and op.pid == pid, "the operator restarted"
    log = op.log_path.read_text()
    assert "Traceback" not in log, op.log_tail()
    # The operator is shared with other tests; only this namespace's objects are this test's business.
    assert not re.search(rf"reconcile {re.escape(namespace)}/\S+ failed", log), op.log_tail()
    print(f"corpus beside a canary: {refused} refused by the API server, {len(INVALID)} marked Invalid, "
          "1 poisoned status survived; the canary promoted")
    assert refused == len(REJECTED) and not_invalid() == []
