"""The LLM load generator against real LLM servers, through the real HAProxy: its ground truth
per revision is what each server counted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from tests.helpers import metric_sum

from kanaria.sandbox.llmload import LLMLoadGenerator, main
from kanaria.sandbox.llmserver import LLMServerProcess
from kanaria.sandbox.proxy import HAProxyProxy

FAST = {"KANARIA_LLM_FIRST_TOKEN_MS": "10", "KANARIA_LLM_TOKEN_MS": "2", "KANARIA_MODEL_NAME": "tiny"}


def _metrics(server: LLMServerProcess) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


@pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="needs haproxy")
def test_ground_truth_per_revision_matches_each_servers_counters() -> None:
    stable_env = {**FAST, "KANARIA_REVISION": "stable"}
    canary_env = {
        **FAST,
        "KANARIA_REVISION": "canary",
        "KANARIA_FAULT_BAD_RATE": "0.5",
        "KANARIA_FAULT_ABORT_RATE": "0.1",
        "KANARIA_FAULT_SEED": "3",
    }
    with LLMServerProcess(stable_env, enable_faults=True) as stable, LLMServerProcess(
        canary_env, enable_faults=True
    ) as canary, HAProxyProxy(
        {"stable": ("127.0.0.1", stable.port), "canary": ("127.0.0.1", canary.port)},
        {"stable": 50, "canary": 50},
    ) as proxy:
        servers = {"stable": stable, "canary": canary}
        generator = LLMLoadGenerator(
            proxy.url, rate=40, total=80, max_tokens=24, base_down_rate=0.1,
            feedback_delay_s=0.2, seed=5, model="tiny",
        )  # fmt: skip
        stats = generator.run()

        assert stats.sent == stats.ok == 80 and stats.failed == stats.errors == 0
        assert sum(stats.by_revision.values()) == 80
        assert abs(stats.by_revision["canary"] - 40) <= 4  # roundrobin 50/50
        assert stats.feedback_sent == stats.feedback_accepted == 80
        for revision, server in servers.items():
            text = _metrics(server)

            def counted(name: str, text: str = text, **labels: str) -> float:
                return metric_sum(text, name, **labels)

            finished = stats.finished_by_revision[revision]
            for reason in ("stop", "length", "abort"):
                assert counted("vllm:request_success_total", finished_reason=reason) == finished.get(reason, 0), (
                    revision,
                    reason,
                )
            assert counted("vllm:generation_tokens_total") == stats.completion_tokens_by_revision[revision]
            assert counted("vllm:prompt_tokens_total") == stats.prompt_tokens_by_revision[revision]
            assert counted("vllm:time_to_first_token_seconds_count") == stats.ttft_by_revision[revision]["count"]
            up = stats.thumbs_up_by_revision.get(revision, 0)
            down = stats.thumbs_down_by_revision.get(revision, 0)
            assert up + down == stats.by_revision[revision]
            assert counted("kanaria_model_feedback_total", revision=revision, outcome="positive") == up
            assert counted("kanaria_model_feedback_total", revision=revision, outcome="negative") == down
            assert counted("kanaria_model_feedback_unmatched_total") == 0
        # Every answer the canary marked bad got a thumbs down; the stable revision's only
        # thumbs down are the base rate's.
        assert stats.bad_by_revision.get("stable", 0) == 0
        assert 0.25 <= stats.bad_by_revision["canary"] / stats.by_revision["canary"] <= 0.75
        assert stats.thumbs_down_by_revision["canary"] >= stats.bad_by_revision["canary"]
        assert stats.thumbs_down_by_revision.get("stable", 0) <= 12
        assert stats.thumbs_down_by_revision["canary"] > stats.thumbs_down_by_revision.get("stable", 0)
        assert stats.finished_by_revision["canary"].get("abort", 0) >= 1
        assert "abort" not in stats.finished_by_revision["stable"]


@pytest.fixture
def server() -> Iterator[LLMServerProcess]:
    with LLMServerProcess({**FAST, "KANARIA_REVISION": "solo"}) as proc:
        yield proc


def test_cli_prints_the_stats_and_the_base_rate_turns_thumbs_down(
    server: LLMServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", server.url, "--rate", "20", "--total", "6", "--max-tokens", "8",
            "--base-down-rate", "1", "--feedback-delay", "0"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["ok"] == 6 and stats["by_revision"] == {"solo": 6}
    assert stats["thumbs_down_by_revision"] == {"solo": 6} and stats["thumbs_up_by_revision"] == {}
    assert stats["bad_by_revision"] == {"solo": 0}  # no fault injection: nothing marked bad
    text = _metrics(server)
    assert metric_sum(text, "kanaria_model_feedback_total", outcome="negative") == 6
    assert metric_sum(text, "vllm:generation_tokens_total") == stats["completion_tokens_by_revision"]["solo"]
    assert stats["ttft_by_revision"]["solo"]["count"] == 6
    assert 0 < stats["ttft_by_revision"]["solo"]["p50"] < 5


def test_feedback_share_rates_a_fixed_subset(server: LLMServerProcess) -> None:
    generator = LLMLoadGenerator(server.url, rate=30, total=20, max_tokens=4, feedback_share=0.5, feedback_delay_s=0)
    stats = generator.run()
    rated = [i for i in range(20) if generator.rates(i)]
    assert 0 < len(rated) < 20
    assert stats.feedback_sent == stats.feedback_accepted == len(rated)
    assert metric_sum(_metrics(server), "kanaria_model_feedback_total") == len(rated)
    again = LLMLoadGenerator(server.url, rate=30, total=20, feedback_share=0.5)
    assert [i for i in range(20) if again.rates(i)] == rated


def test_the_generator_refuses_other_hosts_and_endless_runs() -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        LLMLoadGenerator("http://example.com", total=1)
    with pytest.raises(ValueError, match="stop by itself"):
        LLMLoadGenerator("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="base_down_rate"):
        LLMLoadGenerator("http://127.0.0.1:1", total=1, base_down_rate=2)


def test_a_bad_rate_adds_exactly_its_points_to_the_thumbs_down() -> None:
    """The server's bad answers (mood ≥ 1 − bad rate) and the users unhappy anyway (mood < base
    rate) never overlap, so thumbs down = base + bad: over 20,000 requests, 5% + 3% is 8% within
    binomial noise (sd 0.19 points), where independent draws would give 7.85%."""
    from kanaria.sandbox.llmserver import LLMFaults, user_mood

    faults = LLMFaults(bad_rate=0.03)
    ids = [f"load-{i}" for i in range(20_000)]
    bad = {rid for rid in ids if faults.draw(rid).bad}
    unhappy = {rid for rid in ids if user_mood(rid) < 0.05}
    assert not bad & unhappy
    assert abs(len(bad) / len(ids) - 0.03) < 0.005 and abs(len(unhappy) / len(ids) - 0.05) < 0.006
    assert abs(len(bad | unhappy) / len(ids) - 0.08) < 0.0075
