"""High availability: two operator processes, one Lease, one actor.

Both replicas run with leader election (lease 6 s, renew 2 s). The follower must not act: a
timed pause is never shortened and no step is taken twice. When the leader is SIGKILLed the
follower takes the Lease within lease + renew (+ slack for a loaded machine), finishes the
rollout from the step in status, and the route walks the ladder without a skipped rung.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e._chaos import (
    is_step_subsequence,
    lease_holder,
    recording,
    route_weights,
    status_of,
    step_times,
)
from tests.e2e.conftest import apply_md, apply_stable, get_md, md_manifest, md_status, rev
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.operator import OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e]

LEASE_SECONDS, RENEW_SECONDS = 6, 2
PAUSE = 6
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20}, {"pause": {"duration": f"{PAUSE}s"}},
    {"setWeight": 50}, {"pause": {"duration": f"{PAUSE}s"}},
]
SPEC = {
    "strategy": {"canary": {"steps": STEPS}},
    "rollback": {"postPromotionWindow": "0s", "scaleDownDelay": "0s"},
}


def test_one_leader_acts_and_the_other_takes_over(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    artifacts: Path,
) -> None:
    lease = f"kanaria-ha-{uuid.uuid4().hex[:6]}"
    env = {"KANARIA_LEASE_NAME": lease, "KANARIA_LEASE_SECONDS": str(LEASE_SECONDS),
           "KANARIA_LEASE_RENEW_SECONDS": str(RENEW_SECONDS)}
    a = start_operator(name="ha-a", POD_NAME="ha-a", **env)
    wait_for(lambda: lease_holder(k8s, "kanaria-system", lease) == "ha-a", 20, message="ha-a leads")
    b = start_operator(name="ha-b", POD_NAME="ha-b", **env)

    name = "ha"
    apply_stable(cluster, k8s, md_manifest(name, namespace, "v1", **SPEC))
    v2 = md_manifest(name, namespace, "v2", **SPEC)
    r2 = rev(v2)
    with recording(k8s, namespace) as (mds, routes):
        t_apply = time.monotonic()
        apply_md(cluster, v2)
        # Both replicas are up through the first pause; only the leader may move it.
        wait_for(lambda: md_status(k8s, namespace, name).get("currentStep") == 3, 90,
                 message="second pause reached under ha-a")
        assert lease_holder(k8s, "kanaria-system", lease) == "ha-a"
        follower_log = b.log_path.read_text()
        assert "became leader" not in follower_log, "the follower acted as leader"

        a.kill()
        t_kill = time.monotonic()
        wait_for(lambda: lease_holder(k8s, "kanaria-system", lease) == "ha-b", 30, interval=0.05,
                 message="ha-b takes the lease")
        t_lease = time.monotonic()
        wait_for(lambda: [r for r in mds.snapshot(name) if r.t > t_kill], 30, interval=0.05,
                 message="first status write by ha-b")
        t_act = next(r.t for r in mds.snapshot(name) if r.t > t_kill)
        wait_for(lambda: md_status(k8s, namespace, name).get("stableRevision") == r2, 60,
                 message="v2 promoted by ha-b")
        wait_for(lambda: route_weights(routes.snapshot(), name, r2)[-1:] == [100], 20, message="route 100")

    st = get_md(k8s, namespace, name)["status"]
    takeover = {"lease_takeover_s": round(t_lease - t_kill, 2), "first_action_s": round(t_act - t_kill, 2),
                "lease_seconds": LEASE_SECONDS, "renew_seconds": RENEW_SECONDS}
    (artifacts / "takeover.json").write_text(json.dumps(takeover, indent=1))
    print(f"\nHA takeover: {takeover}")

    # One actor: every step reached exactly once, and no timed pause shortened.
    times = step_times(st, r2)
    assert sorted(times) == [1, 2, 3, 4], times
    assert all(len(v) == 1 for v in times.values()), f"a step was taken twice: {times}"
    assert (times[2][0] - times[1][0]).total_seconds() >= PAUSE, times
    assert (times[4][0] - times[3][0]).total_seconds() >= PAUSE, times
    seen = route_weights(routes.snapshot(), name, r2, since=t_apply)
    assert is_step_subsequence(seen, [0, 20, 50, 100]) and seen[-1] == 100, seen
    promoted = [h for h in st["history"] if h["revision"] == r2 and h["outcome"] == "promoted"]
    assert len(promoted) == 1
    # Takeover bound: the lease expires `duration` after the last renewal (at most `renew`
    # before the kill); the follower looks at most every min(renew, 2) s; then one cycle.
    assert t_lease - t_kill <= LEASE_SECONDS + RENEW_SECONDS + 2, takeover
    # The first write by the new leader should follow within one cycle (<= 2 s) of the lease;
    # on a loaded 2-core machine it was measured up to ~14 s later (see docs/reliability.md,
    # an open finding), so this bound is deliberately loose until that lag is explained.
    assert t_act - t_kill <= LEASE_SECONDS + RENEW_SECONDS + 2 + 20, takeover
    assert "became leader" in b.log_path.read_text()
    assert all(status_of(r).get("canaryRevision") in (None, r2) for r in mds.snapshot(name))
