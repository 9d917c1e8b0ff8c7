"""The loop between rollouts, on the real stack: monitor the serving revision, retrain on
evidence, validate offline, roll out.

One ModelDeployment serves v1 with monitoring, a retraining Job (the reference retrainer,
adopted automatically) and an offline validation Job (the reference validator). In order:

1. Nothing changes (A/A): the monitor sets its baseline and raises nothing; no Job starts.
2. The load generator's inputs drift (nine size features read 30% larger, labels unchanged):
   ``Drifting`` goes True, exactly one retraining Job starts and really retrains on the
   labelled samples the model servers collected; its candidate is adopted, validated offline,
   canaried and promoted, and accuracy on the drifted traffic recovers.
3. A worse model written into the spec fails validation and never receives a request.
4. A retraining Job that fails leaves the serving revision untouched, with a clear condition.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import full_stack_marks, wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.train import SIZE_FEATURES, Rescale

pytestmark = full_stack_marks("lifecycle")

NAME = "lifecycle"
METRICS = [
    {"name": "accuracy", "kind": "accuracy", "minSamples": 150, "margin": 0.03, "maturity": "3s"},
    {"name": "errors", "kind": "errorRate", "minSamples": 300, "critical": True},
]


def job(module: str, **env: str) -> dict[str, Any]:
    return {"spec": {"containers": [{
        "name": "job", "image": "kanaria/jobs:0.1.0", "command": ["python", "-m", module],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }]}}


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    work = tmp_path_factory.mktemp("lifecycle")
    uris = train_models(work / "models", {"v1": {"seed": 1}, "bad": {"seed": 3, "label_noise": 0.3}})
    with LocalStack(work / "stack", namespace="lifecycle", cluster=cluster, operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s, uris


def body(s: LocalStack, version: str, uri: str, *, retrain_env: dict[str, str] | None = None) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, uri, s.prometheus_url,
                 steps=[{"setWeight": 50}, {"analysis": {}}], metrics=METRICS, interval="1s", window="0s")
    b["spec"]["monitoring"] = {"interval": "2s", "window": "20s", "history": "60s", "minSamples": 300,
                               "baselineLabels": 300}
    b["spec"]["retraining"] = {"template": job("kanaria.sandbox.retrain", **{"KANARIA_MIN_SAMPLES": "300", **(retrain_env or {})}),
                               "triggers": ["drift", "manual"], "dataWindow": "40s", "cooldown": "1m",
                               "adopt": "auto", "activeDeadline": "3m"}
    b["spec"]["validation"] = {"template": job("kanaria.sandbox.validate", KANARIA_MIN_SAMPLES="100"),
                               "margin": 0.02, "activeDeadline": "3m"}
    b["spec"]["rollback"]["scaleDownDelay"] = "2s"
    return b


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def retrain_jobs(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [j for j in status.get("jobs") or [] if j["purpose"] == "retrain"]


def test_drift_retrains_validates_and_rolls_out_and_bad_candidates_get_no_traffic(
    stack: tuple[LocalStack, dict[str, str]],
) -> None:
    s, uris = stack
    v1 = body(s, "v1", uris["v1"])
    r1 = revision_of(v1)
    s.apply(v1)
    wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    load = LoadGenerator(s.proxy_url, rate=50, duration=1200, feedback_delay_s=1.0, seed=11)
    load.start()
    try:
        # 1. Nothing changes: a baseline, a dozen checks, nothing raised, no Job.
        quiet = wait_status(lambda: s.get(NAME), lambda st: (st.get("monitoring") or {}).get("baselineAccuracy") is not None,
                            timeout=120, what="the early-life baseline")
        started = quiet["monitoring"]["lastAt"]
        checked = wait_status(lambda: s.get(NAME),
                              lambda st: st["monitoring"]["lastAt"] != started and len(
                                  {f["kind"] for f in st["monitoring"].get("findings") or []}) >= 2,
                              timeout=120, what="checks of drift and accuracy")
        for _ in range(10):  # ten more checks, every one of them quiet
            last = checked["monitoring"]["lastAt"]
            checked = wait_status(lambda last=last: s.get(NAME), lambda st, last=last: st["monitoring"]["lastAt"] != last,
                                  timeout=30, what="the next check")
            assert not any(f["alarm"] for f in checked["monitoring"]["findings"]), checked["monitoring"]["findings"]
            assert condition(checked, "Drifting").get("status") == "False"
            assert condition(checked, "Degraded").get("status") == "False", condition(checked, "Degraded")
        assert not checked.get("jobs")

        # 2. The inputs drift: Drifting, one retraining Job, its candidate validated, canaried, promoted.
        before = load.stats()
        load.set_rescale(Rescale())
        drifting = wait_status(lambda: s.get(NAME), lambda st: condition(st, "Drifting").get("status") == "True",
                               timeout=120, what="Drifting")
        assert any(f in condition(drifting, "Drifting")["message"] for f in SIZE_FEATURES)
        promoted = wait_status(lambda: s.get(NAME),
                               lambda st: st.get("stableRevision") != r1 and st.get("phase") in ("Stable", "Watching"),
                               timeout=360, what="the retrained revision promoted",
                               on_tick=lambda st: None)
        assert len(retrain_jobs(promoted)) == 1, promoted.get("jobs")
        assert retrain_jobs(promoted)[0]["state"] == "Succeeded"
        spec_model = s.get(NAME)["spec"]["model"]
        assert spec_model["version"].startswith("v1-r") and promoted["candidate"]["adopted"]
        assert promoted["validation"]["verdict"] == "pass" and promoted["validation"]["revision"] == promoted["stableRevision"]
        assert promoted["history"][-1]["outcome"] == "promoted"
        r2 = promoted["stableRevision"]
        # Accuracy on the drifted traffic recovers: the new revision's answers are right again.
        wait_for(lambda: load.stats().by_revision.get(r2, 0) - before.by_revision.get(r2, 0) >= 500, 120,
                 message="500 drifted requests answered by the retrained revision")
        after = load.stats()
        right_new = after.correct_by_revision.get(r2, 0) / after.by_revision[r2]
        drifted_v1 = (after.correct_by_revision.get(r1, 0) - before.correct_by_revision.get(r1, 0)) / max(
            1, after.by_revision.get(r1, 0) - before.by_revision.get(r1, 0))
        assert right_new >= 0.92 and right_new > drifted_v1 + 0.05, (right_new, drifted_v1)

        # 3. A worse model written into the spec fails validation and never gets a request.
        stable = wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="Stable")
        bad = body(s, "bad", uris["bad"])
        rbad = revision_of(bad)
        s.apply(bad)
        rejected = wait_status(lambda: s.get(NAME), lambda st: st.get("rejectedRevision") == rbad,
                               timeout=180, what="the bad revision rejected by validation")
        assert rejected["history"][-1]["outcome"] == "rejected" and rejected["validation"]["verdict"] == "fail"
        assert rejected["stableRevision"] == stable["stableRevision"] and not rejected.get("canaryRevision")
        assert load.stats().by_revision.get(rbad, 0) == 0
        assert s.kubelet is not None and s.kubelet.url_of(rbad) is None  # no server ever started for it

        # 4. A retraining Job that fails leaves the serving revision untouched, with a clear condition.
        good = s.get(NAME)["spec"]
        broken = body(s, good["model"]["version"], good["model"]["uri"], retrain_env={"KANARIA_MIN_SAMPLES": "100000000"})
        broken["spec"]["model"] = good["model"]
        s.apply(broken)
        from kanaria.cli.actions import action_patch, action_value

        s.patch(NAME, action_patch(action_value("retrain")))
        failed = wait_status(lambda: s.get(NAME), lambda st: condition(st, "Retraining").get("reason") == "RetrainingFailed",
                             timeout=120, what="the failed retraining Job reported")
        assert "samples" in condition(failed, "Retraining")["message"]
        assert failed["stableRevision"] == stable["stableRevision"] and failed["phase"] in ("Stable", "RolledBack")
        assert s.get(NAME)["spec"]["model"] == good["model"]
    finally:
        load.stop()
        load.join(30)
