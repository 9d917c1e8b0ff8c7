"""Every kopf registration of the operator, each a few lines calling the real code."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

import kopf

from kanaria.api.models import GROUP, PLURAL, VERSION
from kanaria.controller.batch import align
from kanaria.controller.reconcile import Prepared, finish, measure_now, prepare
from kanaria.controller.state import ROUTINE, URGENT, OperatorState, build_state
from kanaria.rollout.monitoring import parse_time

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


def _mine(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """This replica set's share of the objects (KANARIA_SHARD; all of them when not sharded)."""
    state: OperatorState | None = getattr(memo, "state", None)
    return state is None or namespace is None or name is None or state.shard.owns(namespace, name)


@kopf.on.event(GROUP, VERSION, PLURAL, when=_mine)
async def wake(
    namespace: str | None, name: str | None, body: kopf.Body, memo: kopf.Memo, type: str | None = None, **_: Any
) -> None:
    """Any change to a ModelDeployment wakes its loop at once instead of at the next tick —
    except the status this operator just wrote (that change is the cycle's own result)."""
    if namespace is None or name is None:  # a namespaced kind: never, but kopf types allow it
        return
    state: OperatorState = memo.state
    if state.own_write(namespace, name, body.get("metadata", {}).get("resourceVersion")):
        return
    if state.informers is not None and body.get("metadata") and type != "DELETED":
        # This watch may be ahead of the watch cache the cycle reads: the cycle must see this
        # version (or a newer one), never the one before the user's change.
        state.informers.put("ModelDeployment", copy.deepcopy(dict(body)))
    state.wakeup(namespace, name).set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, when=_mine)
async def rollout_loop(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Level-based: observe → decide → act → write status, again and again, per object.

    The loop waits asynchronously; a thread from a bounded pool is used only while a cycle
    reads, decides and writes (a cycle woken by a change goes first), and a due measurement
    waits for its batch without holding a thread (see :mod:`kanaria.controller.batch`), so
    thousands of objects need neither thousands of threads nor a query each."""
    if namespace is None or name is None:  # a namespaced kind: never, but kopf types allow it
        return
    state: OperatorState = memo.state
    wake_up = state.wakeup(namespace, name)
    woken = True
    while not stopped:
        try:
            delay = await _cycle(state, namespace, name, URGENT if woken else ROUTINE) - time.time()
            state.reconciled(namespace, name)
        except Exception as exc:  # never crash-loop: log, count, back off, try again
            delay = state.failed(namespace, name, exc)
        delay = align(max(0.2, min(delay, state.resync)), state.grid, time.time())
        woken = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake_up.wait(), timeout=delay)
            woken = True
        wake_up.clear()
    state.forget(namespace, name)


async def _cycle(state: OperatorState, namespace: str, name: str, priority: int) -> float:
    """One cycle; returns when (Unix time) to look again. A decision's delays count from the
    moment the cycle read the clock, not from when it finished."""
    ctx = state.context
    state.metrics.cycles.labels("woken" if priority == URGENT else "timed").inc()
    step = await asyncio.wrap_future(state.pool.submit(priority, prepare, ctx, namespace, name))
    if not isinstance(step, Prepared):
        return time.time() + float(step)
    if step.due:
        last = parse_time(step.status.last_analysis_at) if step.plan is not None else None
        if last is not None:
            state.metrics.gap.observe((time.time() - last.timestamp()) / max(1.0, step.spec.interval_seconds()))
        if state.batcher is not None:
            await state.batcher.run(lambda providers, at: measure_now(ctx, step, providers, at))
        else:
            await asyncio.wrap_future(state.pool.submit(priority, measure_now, ctx, step, ctx.provider,
                                                        time.time()))
    delay = float(await asyncio.wrap_future(state.pool.submit(priority, finish, ctx, step)))
    return step.now.timestamp() + delay


@kopf.on.probe(id="leader")
def leader_probe(memo: kopf.Memo, **_: Any) -> bool:
    state: OperatorState = memo.state
    return state.leader.is_leader() if state.leader else True
