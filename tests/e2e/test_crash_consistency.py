"""Crash consistency: many rollouts while the operator is SIGKILLed at random moments.

N objects each go through R revisions (good or bad, seeded); the operator is SIGKILLed at a
random moment (seeded: 0.5-5 s after each restarted process first writes) and started again.
A watch records every write to the ModelDeployments and their HTTPRoutes. Asserted on that record and on the final state:

- every rollout ends right: good → promoted and stable; bad → RolledBack, stable unchanged;
- the route's weight for a canary walks 0 → 25 → 60 → 100 in order with no skipped rung and
  no backward move, except the final drop to 0 of a rollback;
- no promotion without a passing analysis recorded; a bad revision never gets past the
  analysis gate (never above 25 %);
- nothing owned is orphaned: every Deployment/Service of a ModelDeployment belongs to a
  revision its status knows.

Reproduce: PYTHONPATH=operator:. python3 -m pytest tests/e2e/test_crash_consistency.py -q -s
(KANARIA_CHAOS_SEED, KANARIA_CHAOS_OBJECTS, KANARIA_CHAOS_REVISIONS change the run).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e._chaos import is_step_subsequence, recording, route_weights, status_of
from tests.e2e.conftest import apply_md, canary_spec, get_md, md_manifest, md_status, rev
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e, pytest.mark.slow]

SEED = int(os.environ.get("KANARIA_CHAOS_SEED", "20251129"))
OBJECTS = int(os.environ.get("KANARIA_CHAOS_OBJECTS", "10"))
REVISIONS = int(os.environ.get("KANARIA_CHAOS_REVISIONS", "5"))
KILL_AFTER = (0.5, 5.0)  # seconds after the restarted operator's first write, drawn uniformly
KILL_EVERY = 4  # ... or as soon as it has written and this many rollouts ended since the last kill
DEADLINE = float(os.environ.get("KANARIA_CHAOS_DEADLINE", "1800"))
LADDER = [0, 25, 60, 100]
STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]


@dataclass
class Rollout:
    obj: str
    revision: str
    good: bool
    body: dict[str, Any]
    stable_before: str | None = None
    applied_at: float = 0.0
    ended_at: float = 0.0
    outcome: str = ""


@dataclass
class Lane:
    """One ModelDeployment and its queue of revisions."""

    name: str
    rollouts: list[Rollout] = field(default_factory=list)
    index: int = -1  # the rollout in flight; -1 = the first deploy

    @property
    def current(self) -> Rollout | None:
        return self.rollouts[self.index] if 0 <= self.index < len(self.rollouts) else None


def _finished(st: dict[str, Any], r: Rollout) -> str:
    """'promoted' / 'rolledBack' once the rollout of ``r`` has ended, else ''."""
    if st.get("canaryRevision") == r.revision:
        return ""
    for h in reversed(st.get("history") or []):
        if h["revision"] == r.revision and h["outcome"] in ("promoted", "rolledBack"):
            return str(h["outcome"])
    return ""


def test_rollouts_survive_random_sigkills(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    artifacts: Path,
) -> None:
    rng = random.Random(SEED)
    spec = canary_spec(prom.url, STEPS, timeout="2s")
    lanes: list[Lane] = []
    for i in range(OBJECTS):
        lane = Lane(f"m{i}")
        base = md_manifest(lane.name, namespace, f"{lane.name}-v0", **spec)
        exporter.gauge("kanaria_test_quality", {"revision": rev(base)}).set(0.95)
        for k in range(1, REVISIONS + 1):
            body = md_manifest(lane.name, namespace, f"{lane.name}-v{k}", **spec)
            good = rng.random() < 0.6
            r = Rollout(lane.name, rev(body), good, body)
            exporter.gauge("kanaria_test_quality", {"revision": r.revision}).set(0.95 if good else 0.5)
            lane.rollouts.append(r)
        lanes.append(lane)
        apply_md(cluster, base)
    prom.wait_for("count(kanaria_test_quality)", lambda res: bool(res) and int(float(res[0]["value"][1])) ==
                  OBJECTS * (REVISIONS + 1), timeout=30)

    env = {"POD_NAME": "chaos", "KANARIA_LEASE_NAME": f"kanaria-chaos-{uuid.uuid4().hex[:6]}"}
    op = start_operator(name="chaos-0", **env)
    kills = ended_since_kill = 0
    restarted = started = time.monotonic()
    next_kill: float | None = None
    with recording(k8s, namespace) as (mds, routes):
        while any(lane.index < len(lane.rollouts) for lane in lanes):
            assert time.monotonic() - started < DEADLINE, _progress(lanes)
            for lane in lanes:
                st = _status(k8s, namespace, lane.name)
                if st is None:
                    continue
                cur = lane.current
                if lane.index == -1:
                    if st.get("phase") != "Stable":
                        continue
                elif cur is not None:
                    outcome = _finished(st, cur)
                    if not outcome:
                        continue
                    cur.outcome, cur.ended_at = outcome, time.monotonic()
                    ended_since_kill += 1
                lane.index += 1
                nxt = lane.current
                if nxt is not None:
                    nxt.stable_before = st.get("stableRevision")
                    nxt.applied_at = time.monotonic()
                    apply_md(cluster, nxt.body)
            # Kill at a random moment, but only after the restarted operator has written
            # something: on a loaded machine a restart can take longer than a fixed period, and
            # a kill before any progress would test nothing but start-up.
            if next_kill is None:
                wrote = [m.t for m in mds.snapshot() if m.t > restarted]
                if wrote:
                    next_kill = wrote[0] + rng.uniform(*KILL_AFTER)
            # Also kill once every few rollouts ended, whatever the clock says: on a fast run the
            # random moments alone may come too seldom for the kills this test must make.
            due = next_kill is not None and (time.monotonic() >= next_kill or ended_since_kill >= KILL_EVERY)
            if due:
                op.kill()
                kills += 1
                op = start_operator(name=f"chaos-{kills}", **env)
                restarted, next_kill, ended_since_kill = time.monotonic(), None, 0
            else:
                time.sleep(0.2)  # the polling interval of this driver loop, not a wait for an outcome
        elapsed = time.monotonic() - started
        # Let the last transitions settle (retired revisions scaled down, deleted beyond the limit).
        for lane in lanes:
            wait_for(lambda n=lane.name: _owned_ok(k8s, namespace, n)[0], 60, message=f"{lane.name} tidy")

    rollouts = [r for lane in lanes for r in lane.rollouts]
    summary = {
        "seed": SEED, "objects": OBJECTS, "rollouts": len(rollouts), "kills": kills,
        "good": sum(r.good for r in rollouts), "bad": sum(not r.good for r in rollouts),
        "promoted": sum(r.outcome == "promoted" for r in rollouts),
        "rolledBack": sum(r.outcome == "rolledBack" for r in rollouts),
        "seconds": round(elapsed, 1),
        "watch_relists": mds.relists + routes.relists,
    }
    (artifacts / "summary.json").write_text(json.dumps(summary, indent=1))
    (artifacts / "routes.json").write_text(json.dumps([{"t": r.t, "name": r.name, "spec": r.obj.get("spec")}
                                                       for r in routes.snapshot()]))
    print(f"\ncrash consistency: {summary}")

    problems: list[str] = []
    md_records = mds.snapshot()
    route_records = routes.snapshot()
    for lane in lanes:
        for i, r in enumerate(lane.rollouts):
            until = lane.rollouts[i + 1].applied_at if i + 1 < len(lane.rollouts) else float("inf")
            seen = route_weights(route_records, lane.name, r.revision, since=r.applied_at, until=until)
            mine = [m for m in md_records if m.name == lane.name and r.applied_at <= m.t < until]
            passed = [m for m in mine if status_of(m).get("canaryRevision") == r.revision
                      and status_of(m).get("currentStep", 0) >= 2
                      and any(a["metric"] == "quality" and a["verdict"] == "pass"
                              for a in status_of(m).get("analysis") or [])]
            tag = f"{lane.name} {r.revision} ({'good' if r.good else 'bad'})"
            if r.good:
                if r.outcome != "promoted":
                    problems.append(f"{tag}: ended {r.outcome!r}")
                if not (is_step_subsequence(seen, LADDER) and seen[-1:] == [100]):
                    problems.append(f"{tag}: route weights {seen}")
                if not passed:
                    problems.append(f"{tag}: promoted without a passing analysis seen in status")
            else:
                if r.outcome != "rolledBack":
                    problems.append(f"{tag}: ended {r.outcome!r}")
                # A revision is never rolled out twice, so everything the route ever gave it
                # after it was applied belongs to this rollout. (The status says RolledBack a
                # moment before the route drops it to 0, so the next rollout may start first.)
                seen = route_weights(route_records, lane.name, r.revision, since=r.applied_at)
                climb = seen[:-1] if len(seen) > 1 and seen[-1] == 0 else seen
                if not is_step_subsequence(climb, LADDER) or max(seen, default=0) > 25 or seen[-1:] != [0]:
                    problems.append(f"{tag}: route weights {seen}")
                after = [status_of(m).get("stableRevision") for m in mine]
                if any(s != r.stable_before for s in after):
                    problems.append(f"{tag}: stable moved from {r.stable_before} to {set(after)}")
        st = get_md(k8s, namespace, lane.name)["status"]
        promoted = {h["revision"] for h in st["history"] if h["outcome"] == "promoted"}
        bad = {r.revision for r in lane.rollouts if not r.good}
        if promoted & bad:
            problems.append(f"{lane.name}: bad revisions promoted: {promoted & bad}")
        counts = [h["revision"] for h in st["history"] if h["outcome"] in ("promoted", "rolledBack")]
        if len(counts) != len(set(counts)):
            problems.append(f"{lane.name}: an outcome recorded twice: {counts}")
        ok, detail = _owned_ok(k8s, namespace, lane.name)
        if not ok:
            problems.append(f"{lane.name}: orphans {detail}")
    assert not problems, "\n".join(problems)
    assert len(rollouts) >= 50 or OBJECTS * REVISIONS < 50
    assert kills >= max(3, len(rollouts) // 5), summary


def _status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return md_status(api, namespace, name)
    except Exception:  # noqa: BLE001 - the API may be slow under load; try again next round
        return None


def _owned_ok(api: client.ApiClient, namespace: str, name: str) -> tuple[bool, list[str]]:
    st = md_status(api, namespace, name)
    known = {st.get("stableRevision"), st.get("canaryRevision"), st.get("priorRevision")} | set(
        st.get("retired") or {}
    )
    selector = f"kanaria.io/deployment={name}"
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    owned = [("deployment", d.metadata.labels.get("kanaria.io/revision"))
             for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items]
    owned += [("service", s.metadata.labels.get("kanaria.io/revision"))
              for s in core.list_namespaced_service(namespace, label_selector=selector).items]
    stray = [f"{kind}/{rev}" for kind, rev in owned if rev is not None and rev not in known]
    return not stray, stray


def _progress(lanes: list[Lane]) -> str:
    return "deadline passed; lanes at " + ", ".join(f"{lane.name}:{lane.index}" for lane in lanes)
