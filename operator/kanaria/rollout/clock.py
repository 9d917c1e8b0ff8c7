"""Timestamps as status stores them (RFC 3339, UTC, whole seconds are not assumed)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso", "parse_iso", "seconds_since", "human_duration"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def until_text(moment: datetime) -> str:
    """An end time in a status message, to the second. Messages name when a wait ends, never
    how long is left: a countdown would change the status on every cycle and be written each
    time."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    """A stored timestamp; None when absent or unreadable — status may be written by anyone, so
    this never raises (a time without a zone is taken as UTC)."""
    if not text or not isinstance(text, str) or len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime) -> float:
    """Seconds from a stored timestamp to now; 0 when there is none."""
    start = parse_iso(text)
    return 0.0 if start is None else (now - start).total_seconds()


def human_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3.5h``: for people, rounded."""
    if seconds < 120:
        return f"{max(0, round(seconds))}s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)}m"
    return f"{seconds / 3600:.1f}h"
