"""The operator's client-side rate limit toward the API server (controller.state.LimitedApiClient):
a token bucket of ``qps`` per second and bursts of ``burst``, every request counted."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from kanaria.controller import state as state_module
from kanaria.controller.state import LimitedApiClient, load_api_client


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(state_module.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(state_module.time, "sleep", fake.sleep)
    monkeypatch.setattr(client.ApiClient, "call_api", lambda self, *a, **k: "sent")
    return fake


def test_a_burst_goes_at_once_and_the_rest_at_the_rate(clock: FakeClock) -> None:
    api = LimitedApiClient(client.Configuration(), qps=4.0, burst=2)
    results: list[Any] = [api.call_api("/x", "GET") for _ in range(10)]
    assert results == ["sent"] * 10
    assert api.requests == 10
    assert clock.slept == pytest.approx((10 - 2) / 4.0)


def test_an_idle_client_saves_tokens_up_to_its_burst(clock: FakeClock) -> None:
    api = LimitedApiClient(client.Configuration(), qps=4.0, burst=2)
    for _ in range(2):
        api.call_api("/x", "GET")
    clock.now += 60.0  # a minute at rest: the bucket refills to 2, not to 240
    for _ in range(4):
        api.call_api("/x", "GET")
    assert clock.slept == pytest.approx(2 / 4.0)


def test_zero_qps_turns_the_limit_off_but_still_counts(clock: FakeClock) -> None:
    api = LimitedApiClient(client.Configuration(), qps=0.0, burst=0)
    for _ in range(50):
        api.call_api("/x", "GET")
    assert api.requests == 50 and clock.slept == 0


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KANARIA_API_QPS", raising=False)
    monkeypatch.delenv("KANARIA_API_BURST", raising=False)
    api = load_api_client()
    assert isinstance(api, LimitedApiClient) and (api.qps, api.burst) == (200.0, 400)
    monkeypatch.setenv("KANARIA_API_QPS", "25")
    monkeypatch.setenv("KANARIA_API_BURST", "30")
    api = load_api_client()
    assert isinstance(api, LimitedApiClient) and (api.qps, api.burst) == (25.0, 30)
