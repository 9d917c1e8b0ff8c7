"""PromQL for each built-in metric kind, and safe filling of user templates.

Every value that comes from a spec or status is escaped as the body of a double-quoted PromQL
string before it is put in a query, so a label value cannot close the string and change the
query. Built-in queries only ever place values inside quotes; user templates are checked for
placeholders outside quotes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kanaria.api.durations import format_duration
from kanaria.api.querytemplate import (
    TemplateError,
    check_template,
    escape_label_value,
    fill_template,
)

__all__ = [
    "escape_label_value",
    "fill_template",
    "check_template",
    "TemplateError",
    "counter_increase",
    "counter_growth",
    "buckets_increase",
    "CONDITION_OPS",
    "parse_condition",
]

def _selector(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _range(window: float, offset: float) -> str:
    text = f"[{format_duration(window)}]"
    return text + (f" offset {format_duration(offset)}" if offset >= 1 else "")


def counter_increase(metric: str, labels: Mapping[str, str], window: float, offset: float = 0.0) -> str:
    """Total increase of a counter over the window (ending ``offset`` seconds ago)."""
    return f"sum(increase({metric}{_selector(labels)}{_range(window, offset)}))"


def counter_growth(metric: str, labels: Mapping[str, str], window: float, offset: float = 0.0) -> str:
    """How much a counter grew over the window (ending ``offset`` seconds ago): its highest value
    in the window less its value when the window began — counted from 0 for a series that did
    not exist then. ``increase()`` starts counting at a series' first scrape, so what a new
    server counted before Prometheus first saw it (target discovery lags by seconds) is lost to
    it; here it is not. For comparing how many requests each revision got since a step began
    (the sample-ratio check), where that loss falls on the new revision alone. A counter that
    resets inside the window (a restarted server) is undercounted."""
    series = f"{metric}{_selector(labels)}"
    end = f" offset {format_duration(offset)}" if offset >= 1 else ""
    return (f"sum(max_over_time({series}[{format_duration(window)}]{end}))"
            f" - (sum({series} offset {format_duration(offset + window)}) or vector(0))")


def buckets_increase(
    metric: str,
    labels: Mapping[str, str],
    window: float,
    offset: float = 0.0,
    by: tuple[str, ...] = ("le",),
) -> str:
    """Increase of each histogram bucket over the window (cumulative counts per ``le``)."""
    return f"sum by ({', '.join(by)}) (increase({metric}_bucket{_selector(labels)}{_range(window, offset)}))"


CONDITION_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def parse_condition(text: str) -> tuple[str, float]:
    """``"< 0.05"`` → ("<", 0.05). ValueError with the text otherwise."""
    stripped = text.strip()
    for op in ("<=", ">=", "==", "!=", "<", ">"):
        if stripped.startswith(op):
            return op, float(stripped[len(op) :])
    raise ValueError(f"not a condition: {text!r} (expected for example '< 0.05')")
