"""User actions: the `kanaria.io/action` annotation (`VERB[:ARG]@ID`), set with one merge patch."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kanaria.cli.kube import CliError

__all__ = ["ANNOTATION", "action_value", "action_patch", "kept_revisions", "check_rollback", "wait_handled"]

ANNOTATION = "kanaria.io/action"


def action_value(verb: str, arg: str | None = None, now: datetime | None = None) -> str:
    """A fresh value: the operator acts once per distinct value (it remembers status.lastAction)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    body = f"{verb}:{arg}" if arg else verb
    return f"{body}@{stamp}-{secrets.token_hex(3)}"


def action_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {ANNOTATION: value}}}


def kept_revisions(obj: dict[str, Any]) -> list[str]:
    """Revisions a rollback may go to: the retired ones still kept, and the prior one."""
    status = obj.get("status") or {}
    kept = set(status.get("retired") or {}) | {status.get("priorRevision")}
    return sorted(r for r in kept if r and r != status.get("stableRevision"))


def check_rollback(obj: dict[str, Any], revision: str) -> None:
    kept = kept_revisions(obj)
    if revision not in kept:
        name = obj["metadata"]["name"]
        listed = ", ".join(kept) or "none"
        raise CliError(
            f'cannot roll back modeldeployment "{name}" to "{revision}": not a kept revision '
            f"(kept: {listed})"
        )


def wait_handled(
    fetch: Callable[[], dict[str, Any]], value: str, timeout: float, interval: float = 0.5
) -> dict[str, Any]:
    """Poll until status.lastAction equals `value`; the object then. CliError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        obj = fetch()
        if (obj.get("status") or {}).get("lastAction") == value:
            return obj
        if time.monotonic() >= deadline:
            raise CliError(
                f"the operator did not handle {ANNOTATION}={value} within {timeout:g}s "
                "(is the operator running?)"
            )
        time.sleep(interval)
