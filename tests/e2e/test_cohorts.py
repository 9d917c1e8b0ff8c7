"""Labels credited to cohorts of predictions, on the real stack.

Two identical models (an A/A rollout) and a load generator that labels wrong predictions
sooner than right ones (0.3 s against 2.5 s), as when complaints come before confirmations.
Counting labels by arrival, the new revision's first labels are mostly its errors; with
cohorts (maturity 6 s) both revisions are compared on the predictions they served in the same
period, each counted once 6 s after it was served, and the operator promotes. Afterwards the
model servers' matured counts, read through Prometheus, equal the load generator's ground truth.
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

pytestmark = full_stack_marks("cohorts")

NAME = "cohorts"
HORIZON = 6
METRICS = [{"name": "accuracy", "kind": "accuracy", "minSamples": 200, "margin": 0.03, "maturity": f"{HORIZON}s"}]


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    work = tmp_path_factory.mktemp("cohorts")
    # The same data, split and seed: two revisions of one model, equal in every prediction.
    uris = train_models(work / "models", {"v1": {"seed": 1}, "v2": {"seed": 1}})
    with LocalStack(work / "stack", namespace="cohorts", cluster=cluster, operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s, uris


def body(s: LocalStack, uris: dict[str, str], version: str) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, uris[version], s.prometheus_url,
                 steps=[{"setWeight": 50}, {"analysis": {}}], metrics=METRICS, interval="1s", window="0s")
    b["spec"]["rollback"]["scaleDownDelay"] = "10m"  # keep v1's model server for the counts
    return b


def matured(s: LocalStack, revision: str, outcome: str) -> float:
    assert s.prometheus is not None
    value = s.prometheus.scalar(
        f'sum(kanaria_model_matured_total{{model="{NAME}",revision="{revision}",horizon="{HORIZON}",outcome="{outcome}"}})'
    )
    return value or 0.0


def test_an_aa_rollout_with_errors_labelled_first_is_promoted_and_cohorts_match_ground_truth(
    stack: tuple[LocalStack, dict[str, str]],
) -> None:
    s, uris = stack
    v1 = body(s, uris, "v1")
    s.apply(v1)
    wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="v1")
    load = LoadGenerator(s.proxy_url, rate=60, duration=900, feedback_delay_s=2.5, wrong_delay_s=0.3, seed=5)
    load.start()
    try:
        v2 = body(s, uris, "v2")
        r1, r2 = revision_of(v1), revision_of(v2)
        s.apply(v2)
        final = wait_status(
            lambda: s.get(NAME),
            lambda st: st.get("stableRevision") == r2 or st.get("phase") == "RolledBack",
            timeout=300, what="v2 decided",
        )
        assert final.get("stableRevision") == r2, final.get("message")
        promoted = final["history"][-1]
        assert promoted["outcome"] == "promoted", promoted
    finally:
        load.stop()
        load.join(30)
    truth = load.stats()
    assert truth.by_revision.get(r1, 0) > 0 and truth.by_revision.get(r2, 0) > 0
    # Every label came well within the horizon: once the last predictions have matured, each
    # revision's matured counts are exactly what the load generator knows it labelled.
    for rev in (r1, r2):
        want = (truth.labelled_correct_by_revision.get(rev, 0), truth.labelled_incorrect_by_revision.get(rev, 0))
        wait_for(lambda rev=rev, want=want: (matured(s, rev, "correct"), matured(s, rev, "incorrect")) == want,
                 60, interval=1.0,
                 message=lambda rev=rev, want=want: f"{rev}: matured {(matured(s, rev, 'correct'), matured(s, rev, 'incorrect'))}, truth {want}")
