"""Assessment: one pure function from one measurement's verdicts to pass, fail or hold."""

from __future__ import annotations

import pytest

from kanaria.api.observed import SRM_METRIC
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout.assess import assess

P = Verdict(Outcome.PASS, "fine")
F = Verdict(Outcome.FAIL, "worse")
I = Verdict(Outcome.INCONCLUSIVE, "too few")  # noqa: E741


@pytest.mark.parametrize(
    ("verdicts", "required", "result"),
    [
        ({"a": P, "b": P}, ("a", "b"), "pass"),
        ({"a": P, "b": I}, ("a", "b"), "hold"),  # every required metric must pass
        ({"a": P}, ("a", "b"), "hold"),  # a required metric not measured holds
        ({"a": P, "b": I}, ("a",), "pass"),  # only the required ones need to pass
        ({"a": I}, (), "pass"),  # nothing required, nothing failed
        ({"a": F, "b": P}, ("b",), "fail"),  # any failure counts, required or not (limit 0)
    ],
)
def test_pass_hold_fail(verdicts: dict[str, Verdict], required: tuple[str, ...], result: str) -> None:
    assert assess(verdicts, required=required).result == result


def test_a_critical_failure_fails_at_once_whatever_the_limit() -> None:
    a = assess({"errors": F, "accuracy": P}, required=("accuracy",), critical={"errors"}, failure_limit=5)
    assert (a.result, a.critical, a.failed, a.failures) == ("fail", True, ("errors",), 1)
    assert "errors fail (worse)" in a.reason


def test_failures_are_tolerated_up_to_the_limit() -> None:
    first = assess({"a": F, "b": I}, required=("a", "b"), failures=0, failure_limit=2)
    assert (first.result, first.tolerated, first.failures) == ("hold", True, 1)
    assert first.reason.startswith("failure 1 of 2 tolerated")
    last = assess({"a": F}, required=("a",), failures=2, failure_limit=2)
    assert (last.result, last.failures) == ("fail", 3)
    assert last.reason.startswith("3 failed measurement(s) (limit 2)")


def test_a_tolerated_failure_of_another_metric_does_not_stop_a_pass() -> None:
    a = assess({"a": P, "other": F}, required=("a",), failure_limit=1)
    assert (a.result, a.tolerated, a.failures) == ("pass", True, 1)


def test_the_sample_ratio_check_never_fails_a_measurement() -> None:
    a = assess({"a": P, SRM_METRIC: F}, required=("a",))
    assert a.result == "pass" and not a.failed and a.failures == 0


def test_only_judged_metrics_can_fail() -> None:
    """A/B guardrails: a failure of a metric that is not a guardrail does not count."""
    a = assess({"primary": F, "guard": P}, required=("guard",), judged=("guard",), critical=("guard",))
    assert a.result == "pass" and not a.failed
    b = assess({"primary": P, "guard": F}, required=("guard",), judged=("guard",), critical=("guard",))
    assert b.result == "fail" and b.critical and b.reason == "guard fail (worse)"


def test_unavailable_metrics_hold() -> None:
    down = Verdict.unavailable_metrics("ConnectionError: refused")
    a = assess({"a": down}, required=("a",))
    assert a.result == "hold" and not a.failed
