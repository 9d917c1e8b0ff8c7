"""The LLM latency rows of the statistics benchmark, at a small seeded size: in vLLM's own
buckets Kanaria stays below α on healthy revisions and catches a 20% slower time to first
token and time per output token."""

from __future__ import annotations

from kanaria.bench.llm import TPOT_BUCKETS, TTFT_BUCKETS, llm_config, run_llm_benchmark


def test_llm_kinds_use_vllms_buckets() -> None:
    assert llm_config("timeToFirstToken").latency_buckets == TTFT_BUCKETS
    assert llm_config("timePerOutputToken").latency_buckets == TPOT_BUCKETS
    assert TTFT_BUCKETS[7:10] == (0.1, 0.25, 0.5)


def test_kanaria_is_quiet_on_aa_and_catches_plus_20_percent_in_vllms_buckets() -> None:
    _, rows = run_llm_benchmark(150, 7)
    kanaria = {(r.metric, r.scenario): r for r in rows if r.policy == "Kanaria"}
    assert set(kanaria) == {("timeToFirstToken", "A/A"), ("timeToFirstToken", "TTFT +20%"),
                            ("timePerOutputToken", "A/A"), ("timePerOutputToken", "TPOT +20%")}
    for kind in ("timeToFirstToken", "timePerOutputToken"):
        assert kanaria[(kind, "A/A")].rollback_rate <= 0.02  # α 0.01, 150 rollouts
    assert kanaria[("timeToFirstToken", "TTFT +20%")].rollback_rate >= 0.95
    assert kanaria[("timePerOutputToken", "TPOT +20%")].rollback_rate >= 0.95
    untuned = [r for r in rows if r.scenario == "A/A" and r.policy == "threshold N=1, no data = fail"]
    assert all(r.rollback_rate > 0.2 for r in untuned)
