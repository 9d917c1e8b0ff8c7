"""User feedback in the monitor library: credited to the revision that served the answer and
counted in cohorts (each answer once per maturity horizon, with the feedback it got within
it), for thumbs (a proportion) and ratings (count, sum and sum of squares)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from tests.helpers import metric_value

from kanaria.monitor import ModelMonitor, ReferenceProfile, UserFeedback


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _text(fb: UserFeedback) -> str:
    return generate_latest(fb.registry).decode()


def _matured(fb: UserFeedback, horizon: str, outcome: str, signal: str = "thumbs") -> float:
    return metric_value(_text(fb), "kanaria_model_feedback_matured_total", revision="r1", signal=signal,
                        horizon=horizon, outcome=outcome)


def test_thumbs_mature_per_horizon_with_the_feedback_that_came_within_it() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", clock=clock, maturity_horizons=(5, 10))
    for rid in ("a", "b", "c", "d"):
        fb.answered(rid)
    clock.now += 2
    assert fb.feedback("a", True)
    clock.now += 3  # t = 5: a, b, c, d mature at 5 s; only a had its thumbs by then
    assert (_matured(fb, "5", "positive"), _matured(fb, "5", "negative"), _matured(fb, "5", "none")) == (1, 0, 3)
    clock.now += 3  # t = 8
    assert fb.feedback("b", False)
    clock.now += 2  # t = 10
    assert (_matured(fb, "10", "positive"), _matured(fb, "10", "negative"), _matured(fb, "10", "none")) == (1, 1, 2)
    assert (_matured(fb, "5", "positive"), _matured(fb, "5", "negative"), _matured(fb, "5", "none")) == (1, 0, 3)
    text = _text(fb)
    assert metric_value(text, "kanaria_model_feedback_total", revision="r1", signal="thumbs", outcome="positive") == 1
    assert metric_value(text, "kanaria_model_feedback_total", revision="r1", signal="thumbs", outcome="negative") == 1
    assert fb.pending == 0


def test_feedback_is_credited_once_and_only_for_answers_given() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", clock=clock, maturity_horizons=(5,))
    fb.answered("a")
    assert fb.feedback("a", False)
    assert not fb.feedback("a", True)  # rated already
    assert not fb.feedback("never-answered", True)
    text = _text(fb)
    assert metric_value(text, "kanaria_model_feedback_unmatched_total", signal="thumbs", reason="unknown") == 2
    assert metric_value(text, "kanaria_model_feedback_total", signal="thumbs", outcome="positive") == 0
    with pytest.raises(ValueError, match="unknown feedback signal"):
        fb.feedback("a", True, signal="stars")


def test_answers_without_feedback_are_not_unmatched_when_they_expire() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", clock=clock, maturity_horizons=(5,), pending_ttl_seconds=60)
    fb.answered("a")
    clock.now += 61
    assert not fb.feedback("a", True)  # too late
    text = _text(fb)
    assert metric_value(text, "kanaria_model_feedback_matured_total", signal="thumbs", outcome="none") == 1
    assert metric_value(text, "kanaria_model_feedback_unmatched_total", signal="thumbs", reason="expired") == 1
    fb.answered("b")
    clock.now += 61  # expires without feedback: that is no feedback, not unmatched feedback
    fb.sweep()
    assert metric_value(_text(fb), "kanaria_model_feedback_unmatched_total", signal="thumbs", reason="expired") == 1


def test_ratings_export_count_sum_and_squares_shifted_to_the_low_end() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", signals=(), ratings={"stars": (1, 5)}, clock=clock, maturity_horizons=(5,))
    for rid in ("a", "b", "c"):
        fb.answered(rid)
    assert fb.rating("a", 5, signal="stars") and fb.rating("b", 2, signal="stars")
    with pytest.raises(ValueError, match=r"within \[1, 5\]"):
        fb.rating("c", 6, signal="stars")
    clock.now += 5
    text = _text(fb)

    def value(name: str, **labels: str) -> float:
        return metric_value(text, name, revision="r1", signal="stars", horizon="5", **labels)

    assert value("kanaria_model_feedback_ratings_matured_total", outcome="rated") == 2
    assert value("kanaria_model_feedback_ratings_matured_total", outcome="none") == 1
    assert value("kanaria_model_feedback_rating_sum_matured_total") == 4 + 1  # (5−1) + (2−1)
    assert value("kanaria_model_feedback_rating_squares_matured_total") == 16 + 1
    assert metric_value(text, "kanaria_model_feedback_rating_range", signal="stars", bound="low") == 1
    assert metric_value(text, "kanaria_model_feedback_rating_range", signal="stars", bound="high") == 5


def test_a_negative_range_still_gives_counters_that_never_decrease() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", signals=(), ratings={"score": (-2, 2)}, clock=clock, maturity_horizons=(5,))
    fb.answered("a")
    assert fb.rating("a", -2, signal="score")
    clock.now += 5
    text = _text(fb)
    assert metric_value(text, "kanaria_model_feedback_rating_sum_matured_total", signal="score") == 0
    assert metric_value(text, "kanaria_model_feedback_ratings_matured_total", signal="score", outcome="rated") == 1


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        UserFeedback("m", "r", signals=("x",), ratings={"x": (1, 5)}, maturity_horizons=(5,))
    with pytest.raises(ValueError, match="low < high"):
        UserFeedback("m", "r", ratings={"y": (5, 1)}, maturity_horizons=(5,))
    with pytest.raises(ValueError, match="short name"):
        UserFeedback("m", "r", signals=("has space",), maturity_horizons=(5,))


def test_a_model_monitor_waits_for_feedback_on_every_request_with_an_id() -> None:
    clock = Clock()
    profile = ReferenceProfile(feature_names=("a",), feature_edges=((1.0,),), score_edges=(0.5,), classes=("x", "y"))
    monitor = ModelMonitor("m", "r1", profile, clock=clock, maturity_horizons=(5,), feedback_signals=("task_success",))
    monitor.observe_request("q1", [0.5], "x", 0.9, 0.01)
    monitor.observe_request("q2", [0.5], None, None, 0.01, error=True)  # failed: no answer to rate
    assert monitor.user_feedback is not None
    assert monitor.user_feedback.feedback("q1", True, signal="task_success")
    assert not monitor.user_feedback.feedback("q2", True, signal="task_success")
    clock.now += 5
    text = monitor.exposition().decode()
    assert metric_value(text, "kanaria_model_feedback_matured_total", model="m", revision="r1",
                        signal="task_success", horizon="5", outcome="positive") == 1
    assert metric_value(text, "kanaria_model_matured_total", horizon="5", outcome="unlabelled") == 1


def test_closing_counts_the_answers_still_maturing_as_shutdown() -> None:
    clock = Clock()
    fb = UserFeedback("chat", "r1", clock=clock, maturity_horizons=(5,))
    fb.answered("a")
    fb.answered("b")
    clock.now += 5
    fb.answered("c")  # a and b have matured; c has not
    assert fb.close() == 1
    text = _text(fb)
    assert metric_value(text, "kanaria_model_feedback_unmatched_total", signal="thumbs", reason="shutdown") == 1
    assert metric_value(text, "kanaria_model_feedback_matured_total", signal="thumbs", outcome="none") == 2
