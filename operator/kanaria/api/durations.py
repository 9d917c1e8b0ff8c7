"""Durations as users write them in specs: "250ms", "30s", "5m", "1h", "30d"."""

from __future__ import annotations

import re

__all__ = [
    "DURATION_PATTERN",
    "MAX_DURATION",
    "MAX_DURATION_SECONDS",
    "OPTIONAL_DURATION_PATTERN",
    "bounded_duration",
    "format_duration",
    "parse_duration",
]

DURATION_PATTERN = r"^[1-9][0-9]{0,11}(ms|s|m|h|d)$"
"""A positive duration (intervals, timeouts, pauses, deadlines)."""
OPTIONAL_DURATION_PATTERN = r"^[0-9]{1,12}(ms|s|m|h|d)$"
"""A duration that may be zero, meaning "off" (watch window, scale-down delay)."""
MAX_DURATION = "3650d"
MAX_DURATION_SECONDS = 3650 * 86400.0
"""Longest duration anywhere in a spec (ten years): far beyond any rollout or monitoring need,
well inside what dates, timers and PromQL ranges can hold."""
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(OPTIONAL_DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with the offending text otherwise."""
    match = _RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected for example 30s, 5m, 1h, 30d, 250ms)")
    unit = match.group(1)
    return int(text.strip()[: -len(unit)]) * _UNITS[unit]


def bounded_duration(text: str | None) -> str | None:
    """The duration unchanged when it parses and is at most :data:`MAX_DURATION`; ValueError
    (a clear InvalidSpec message) otherwise."""
    if text is None or _RE.match(text.strip()) is None:
        return text  # the field's pattern says what is wrong
    if parse_duration(text) > MAX_DURATION_SECONDS:
        raise ValueError(f"{text} is longer than {MAX_DURATION}, the longest duration Kanaria accepts")
    return text


def format_duration(seconds: float) -> str:
    """A PromQL range duration for a number of seconds (whole seconds, at least 1s)."""
    return f"{max(1, int(round(seconds)))}s"
