"""Every kopf registration of the operator, each a few lines calling the real code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from kanaria.api.models import GROUP, PLURAL, VERSION
from kanaria.controller.reconcile import reconcile
from kanaria.controller.state import OperatorState, build_state

log = logging.getLogger("kanaria.handlers")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All configuration in one place: no kopf peering (a Lease elects the leader instead),
    no kopf progress annotations on users' objects, quiet posting of kopf's own events."""
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = "kanaria.io/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kanaria.io", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 120
    settings.networking.request_timeout = 30
    memo.state = build_state()


@kopf.on.cleanup()
def shutdown(memo: kopf.Memo, **_: Any) -> None:
    state: OperatorState = memo.state
    state.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def wake(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Any change to a ModelDeployment wakes its loop at once instead of at the next tick."""
    if namespace is None or name is None:  # a namespaced kind: never, but kopf types allow it
        return
    state: OperatorState = memo.state
    state.wakeup(namespace, name).set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def rollout_loop(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Level-based: observe → decide → act → write status, again and again, per object.

    The loop waits asynchronously; a thread from a bounded pool is used only while a cycle
    runs, so thousands of objects do not need thousands of threads (and one slow object does
    not starve the others of workers)."""
    if namespace is None or name is None:  # a namespaced kind: never, but kopf types allow it
        return
    state: OperatorState = memo.state
    wake_up = state.wakeup(namespace, name)
    loop = asyncio.get_running_loop()
    while not stopped:
        try:
            delay = await loop.run_in_executor(state.executor, reconcile, state.context, namespace, name)
            state.reconciled(namespace, name)
        except Exception as exc:  # never crash-loop: log, count, back off, try again
            delay = state.failed(namespace, name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake_up.wait(), timeout=max(0.2, min(delay, 30.0)))
        wake_up.clear()
    state.forget(namespace, name)


@kopf.on.probe(id="leader")
def leader_probe(memo: kopf.Memo, **_: Any) -> bool:
    state: OperatorState = memo.state
    return state.leader.is_leader() if state.leader else True
