"""The shape of the operator's cost, on a small seeded fleet (``make bench-scale`` measures the
numbers at N = 100 and more): at rest, an object costs almost no Kubernetes API request (the
API server's audit log counts every request of the operator's identity, kopf's included);
while all of them roll out, one Prometheus request carries the queries of many objects; and each
object is measured on its interval, not later."""

from __future__ import annotations

from tests.helpers import full_stack_marks

from kanaria.sandbox.scale import run_scale

pytestmark = full_stack_marks("scale-shape")

N = 15
SEED = 20241202


def test_cost_shape_at_rest_and_during_rollouts() -> None:
    result = run_scale(N, seed=SEED, interval_s=10, idle_s=60, pause_s=90, timeout_s=240)
    print(result.as_dict())
    assert result.weighted == N, "every object's route got its canary weight"
    # At rest: watches, and a check of each serving revision every minute that is written only
    # when it finds something (or every 10 min). Before the watch caches an object cost about
    # 55 requests a minute. The leader's Lease is a cost per replica, not per object.
    assert result.idle.api_per_object_min < 1.0, result.idle
    assert result.idle.leases_per_s <= 0.5, result.idle
    # The serving revisions' checks at rest are batched too: fewer requests than queries.
    assert result.idle.prometheus_requests_per_s < result.idle.queries_per_s, result.idle
    # During the rollout: batched, so queries per HTTP request grow with the objects due together.
    assert result.rollout.prometheus_requests_per_s > 0, result.rollout
    assert result.rollout.queries_per_s >= 3 * result.rollout.prometheus_requests_per_s, result.rollout
    # Measured on the interval: half the measurements at most 1.5 intervals apart (5 s grid).
    assert result.measurements >= N, result
    assert result.gap_p50 <= 1.5, result
