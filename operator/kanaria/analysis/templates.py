"""PromQL for each built-in metric kind, and safe filling of user templates.

Every value that comes from a spec or status is escaped as the body of a double-quoted PromQL
string before it is put in a query, so a label value cannot close the string and change the
query. Built-in queries only ever place values inside quotes; user templates are checked for
placeholders outside quotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kanaria.api.durations import format_duration

__all__ = [
    "escape_label_value",
    "fill_template",
    "TemplateError",
    "counter_increase",
    "buckets_increase",
    "CONDITION_OPS",
    "parse_condition",
]

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z]+)\s*\}\}")
VARIABLES = ("name", "namespace", "model", "revision", "stableRevision", "window", "horizon")


class TemplateError(ValueError):
    """A query template cannot be filled safely."""


def escape_label_value(value: str) -> str:
    """Escape a value for use between double quotes in PromQL (backslash, quote, newlines)."""
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def _inside_quotes(text: str, position: int) -> bool:
    quoted, escaped = False, False
    for ch in text[:position]:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
    return quoted


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{{var}}`` placeholders. ``window`` is a duration and goes in range brackets; every
    other variable must sit inside a double-quoted string and is escaped there."""
    out: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        var = match.group(1)
        if var not in values:
            raise TemplateError(
                f"unknown variable {{{{{var}}}}} in query; known: {', '.join(VARIABLES)}"
            )
        out.append(template[last : match.start()])
        if var == "window":
            if not re.fullmatch(r"[0-9]+(ms|s|m|h)", values[var]):
                raise TemplateError(f"window is not a duration: {values[var]!r}")
            out.append(values[var])
        else:
            if not _inside_quotes(template, match.start()):
                raise TemplateError(
                    f"{{{{{var}}}}} must be inside double quotes, for example "
                    f'revision="{{{{{var}}}}}"'
                )
            out.append(escape_label_value(values[var]))
        last = match.end()
    out.append(template[last:])
    return "".join(out)


def _selector(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _range(window: float, offset: float) -> str:
    text = f"[{format_duration(window)}]"
    return text + (f" offset {format_duration(offset)}" if offset >= 1 else "")


def counter_increase(metric: str, labels: Mapping[str, str], window: float, offset: float = 0.0) -> str:
    """Total increase of a counter over the window (ending ``offset`` seconds ago)."""
    return f"sum(increase({metric}{_selector(labels)}{_range(window, offset)}))"


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
