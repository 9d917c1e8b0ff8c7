"""Timestamps as status stores them (RFC 3339, UTC, whole seconds are not assumed)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso", "parse_iso", "seconds_since", "human_duration"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
