"""The feedback benchmark: deterministic in its seed, and the shape of its result (the real
judge keeps A/A false rollbacks under α where a per-interval threshold does not)."""

from __future__ import annotations

from kanaria.bench.feedback import FeedbackConfig, run_feedback_benchmark, summarise_feedback


def test_seeded_and_the_judge_keeps_false_rollbacks_under_alpha() -> None:
    cfg = FeedbackConfig(max_intervals=120)
    runs = run_feedback_benchmark(150, 7, cfg=cfg, chunk=50)
    again = run_feedback_benchmark(150, 7, cfg=cfg, chunk=50)
    assert all((a.kanaria_fail == b.kanaria_fail).all() for a, b in zip(runs, again, strict=True))
    rows = {(r.scenario, r.policy): r for r in summarise_feedback(runs, cfg)}
    assert rows["A/A", "Kanaria"].rollback_rate <= 0.05
    assert rows["A/A", "threshold N=1, no data = fail"].rollback_rate > 0.2
    assert rows["thumbs down +3 points", "Kanaria"].rollback_rate >= 0.6
    assert rows["thumbs down +3 points", "Kanaria"].passed_first == 0.0
