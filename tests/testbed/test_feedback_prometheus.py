"""User feedback through the real path, short of the cluster: two reference LLM servers record
thumbs and ratings with the monitor library, a real Prometheus scrapes them, and measure()
judges the ``feedback`` and ``rating`` kinds with its own PromQL on the matured cohorts."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from kanaria.analysis.measure import Target, measure
from kanaria.analysis.prometheus import PrometheusProvider
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm
from kanaria.sandbox.llmserver import LLMServerProcess
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget

pytestmark = pytest.mark.prometheus

ENV = {"KANARIA_MODEL_NAME": "chat", "KANARIA_LLM_FIRST_TOKEN_MS": "1", "KANARIA_LLM_TOKEN_MS": "1",
       "KANARIA_MATURITY_HORIZONS": "2s"}
ANSWERS = 300
STABLE_STARS, CANARY_STARS = (5, 4, 4, 3, 4), (3, 3, 4, 2, 3)  # means 4.0 and 3.0


def _rate_answers(url: str, stars: tuple[int, ...], down_every: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(ANSWERS):
            answer = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                               "max_tokens": 2})
            rid = answer.headers["x-request-id"]
            thumbs = "down" if i % down_every == 0 else "up"
            rated = client.post("/feedback", json={"request_id": rid, "thumbs": thumbs, "rating": stars[i % len(stars)]})
            assert rated.json()["accepted"] is True


def test_feedback_and_rating_are_judged_from_a_real_prometheus(
    prometheus_factory: Callable[..., LocalPrometheus],
) -> None:
    with LLMServerProcess({**ENV, "KANARIA_REVISION": "stable"}) as stable, LLMServerProcess(
        {**ENV, "KANARIA_REVISION": "canary"}
    ) as canary:
        prom = prometheus_factory([ScrapeTarget(f"127.0.0.1:{s.port}") for s in (stable, canary)])
        # Both servers scraped at zero first, so every increase starts from an explicit zero.
        prom.wait_for('kanaria_model_feedback_matured_total{horizon="2",outcome="none"}', lambda r: len(r) == 2)
        started = time.time()
        _rate_answers(stable.url, STABLE_STARS, down_every=20)  # 5% thumbs down
        _rate_answers(canary.url, CANARY_STARS, down_every=3)  # 34% thumbs down
        for revision in ("stable", "canary"):  # every answer matured and scraped
            prom.wait_for(
                f'sum(kanaria_model_feedback_ratings_matured_total{{revision="{revision}",outcome="rated"}})',
                lambda r: len(r) == 1 and float(r[0]["value"][1]) == ANSWERS, timeout=30,
            )
        window = time.time() - started + 10
        plan = AnalysisPlan(("thumbs", "stars"), Arm("canary", window), Arm("stable", window))
        metrics = [
            Metric(name="thumbs", kind="feedback", maturity="2s", min_samples=100),
            Metric(name="stars", kind="rating", maturity="2s", min_samples=100, rating_min=1, rating_max=5),
        ]
        verdicts = measure(metrics, plan, PrometheusProvider(prom.url), Target("chat", "llm", "chat"))

    thumbs, stars = verdicts["thumbs"], verdicts["stars"]
    assert thumbs.outcome.value == "fail", thumbs.reason
    assert thumbs.value == pytest.approx(1 - 100 / 300, abs=0.01) and thumbs.baseline == pytest.approx(0.95, abs=0.01)
    assert stars.outcome.value == "fail", stars.reason
    assert stars.value == pytest.approx(3.0, abs=0.01) and stars.baseline == pytest.approx(4.0, abs=0.01)
    # increase() extrapolates a little past the first and last samples: counts are near, not exact.
    assert stars.samples == pytest.approx(ANSWERS, rel=0.1) and thumbs.samples == pytest.approx(ANSWERS, rel=0.1)
