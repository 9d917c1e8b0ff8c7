"""Durations as users write them in specs: "250ms", "30s", "5m", "1h", "30d"."""

from __future__ import annotations

import re

__all__ = ["DURATION_PATTERN", "OPTIONAL_DURATION_PATTERN", "parse_duration", "format_duration"]

DURATION_PATTERN = r"^[1-9][0-9]*(ms|s|m|h|d)$"
"""A positive duration (intervals, timeouts, pauses, deadlines)."""
OPTIONAL_DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
"""A duration that may be zero, meaning "off" (watch window, scale-down delay)."""
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(OPTIONAL_DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with the offending text otherwise."""
    match = _RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected for example 30s, 5m, 1h, 30d, 250ms)")
    unit = match.group(1)
    return int(text.strip()[: -len(unit)]) * _UNITS[unit]


def format_duration(seconds: float) -> str:
    """A PromQL range duration for a number of seconds (whole seconds, at least 1s)."""
    return f"{max(1, int(round(seconds)))}s"
