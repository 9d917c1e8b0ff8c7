"""What the sandbox's Job entrypoints share: reading their environment and reporting a result.

A Job reports through its container's termination message: one JSON object, written to
``$KANARIA_TERMINATION_LOG`` (the sandbox's stand-in for the container's
``terminationMessagePath``), else to ``/dev/termination-log``. A result exits 0; bad input
exits 1 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TERMINATION_LOG",
    "TERMINATION_LOG_ENV",
    "JobError",
    "env_int",
    "env_time",
    "iso",
    "required",
    "run_job",
    "termination_log",
]

TERMINATION_LOG_ENV = "KANARIA_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class JobError(Exception):
    """The Job cannot do its work; the message says why (it becomes ``{"error": ...}``)."""


def required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "").strip()
    if not value:
        raise JobError(f"{key} is not set")
    return value


def env_time(env: Mapping[str, str], key: str) -> float | None:
    """Unix seconds from ``key``, or None when it is unset or empty."""
    raw = env.get(key, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise JobError(f"{key} must be unix seconds, not {raw!r}") from None


def env_int(env: Mapping[str, str], key: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JobError(f"{key} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise JobError(f"{key} must be at least {minimum}, not {value}")
    return value


def iso(unix: float) -> str:
    """Unix seconds as an RFC 3339 UTC time (to the second)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_log(env: Mapping[str, str]) -> Path:
    return Path(env.get(TERMINATION_LOG_ENV, "").strip() or DEFAULT_TERMINATION_LOG)


def _report(env: Mapping[str, str], result: Mapping[str, Any]) -> None:
    text = json.dumps(result, separators=(",", ":"))
    print(f"result: {text}", flush=True)
    path = termination_log(env)
    try:
        path.write_text(text)
    except OSError as exc:
        print(f"cannot write the termination message to {path}: {exc}", file=sys.stderr)


def run_job(
    work: Callable[[Mapping[str, str]], Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> int:
    """Run ``work`` on the environment and report its result (exit 0) or why it could not
    be done (exit 1), in the termination message and on stdout."""
    env = os.environ if env is None else env
    try:
        result = work(env)
    except JobError as exc:
        _report(env, {"error": str(exc)})
        return 1
    except Exception as exc:  # unexpected: still say what happened where the caller looks
        traceback.print_exc()
        _report(env, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _report(env, result)
    return 0
