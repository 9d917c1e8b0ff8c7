"""Which watch events wake which object's loop (controller.state and handlers.wake)."""

from __future__ import annotations

import asyncio
from typing import Any

from kanaria.controller import handlers
from kanaria.controller.reconcile import ReconcileContext
from kanaria.controller.state import OperatorState


class _Cache:
    def __init__(self) -> None:
        self.put_calls: list[tuple[str, dict[str, Any]]] = []

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        self.put_calls.append((kind, obj))


def _md(rv: str, version: str = "v2") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": rv},
            "spec": {"model": {"version": version}}}


def _state() -> OperatorState:
    return OperatorState(context=ReconcileContext(api=None), leader=None)  # type: ignore[arg-type]


def _counted_state() -> tuple[OperatorState, list[tuple[str, str]]]:
    """A state whose reconcile-error metric records the objects it is told of."""
    state = _state()
    errors: list[tuple[str, str]] = []
    state.metrics.on_reconcile_error = lambda ns, name: errors.append((ns, name))  # type: ignore[method-assign]
    return state, errors


def test_a_model_deployment_change_seen_by_the_cache_wakes_it_but_not_its_own_status_write() -> None:
    async def run() -> tuple[bool, bool, bool]:
        state = _state()
        event = state.wakeup("ns", "a")
        other = state.wakeup("ns", "b")
        state.status_written(_md("7"))
        state.on_change("ModelDeployment", _md("7"), "MODIFIED")  # the operator's own write
        await asyncio.sleep(0)
        own = event.is_set()
        state.on_change("ModelDeployment", _md("8"), "MODIFIED")  # a user's change
        await asyncio.sleep(0)
        return own, event.is_set(), other.is_set()

    own, user, other = asyncio.run(run())
    assert not own
    assert user
    assert not other


def test_kopfs_event_puts_the_new_version_in_the_cache_before_waking() -> None:
    """The cycle reads the watch cache; kopf's watch may be ahead of it, so the version kopf saw
    goes into the cache (never over a newer one: Informer.put) before the loop wakes."""

    async def run(kind: str) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        state = _state()
        cache = _Cache()
        state.informers = cache  # type: ignore[assignment]
        event = state.wakeup("ns", "a")
        memo: Any = type("Memo", (), {"state": state})()
        await handlers.wake("ns", "a", _md("9"), memo, type=kind)  # type: ignore[arg-type]
        return cache.put_calls, event.is_set()

    puts, woken = asyncio.run(run("MODIFIED"))
    assert woken
    assert puts == [("ModelDeployment", _md("9"))]
    puts, woken = asyncio.run(run("DELETED"))
    assert puts == [], "a deleted object is not put back into the cache"
    assert woken


def test_a_cycle_the_api_refused_is_logged_in_one_line_without_a_traceback(
    caplog: Any,
) -> None:
    """A 403 (or any API answer) says what the API server said; a traceback is for the operator's
    own errors only."""
    from kubernetes.client.exceptions import ApiException

    state, errors = _counted_state()
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = ('{"kind":"Status","message":"httproutes.gateway.networking.k8s.io \\"ha\\" is forbidden: '
                    'User \\"system:serviceaccount:kanaria:kanaria\\" cannot create resource","reason":"Forbidden",'
                    '"code":403}')
    with caplog.at_level("WARNING", logger="kanaria.state"):
        delay = state.failed("t-1", "ha", refused)
        state.failed("t-1", "other", RuntimeError("a bug"))
    assert delay == 1.0
    first, second = caplog.records
    assert "the API answered 403: httproutes.gateway.networking.k8s.io \"ha\" is forbidden" in first.getMessage()
    assert "cannot create resource" in first.getMessage() and first.exc_info is None
    assert second.exc_info is not None, "the operator's own error keeps its traceback"
    assert errors == [("t-1", "ha"), ("t-1", "other")]


def test_a_write_into_a_namespace_being_deleted_waits_without_counting_as_a_failure(caplog: Any) -> None:
    """The object goes with its namespace: the cycle backs off and says so at INFO, no warning,
    no reconcile-error metric."""
    from kubernetes.client.exceptions import ApiException

    state, errors = _counted_state()
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = ('{"kind":"Status","message":"deployments.apps \\"ha-1\\" is forbidden: unable to create new '
                    'content in namespace t-1 because it is being terminated","reason":"Forbidden",'
                    '"details":{"name":"ha-1","kind":"deployments","causes":[{"reason":"NamespaceTerminating",'
                    '"message":"namespace t-1 is being terminated","field":"metadata.namespace"}]},"code":403}')
    with caplog.at_level("INFO", logger="kanaria.state"):
        first = state.failed("t-1", "ha", refused)
        second = state.failed("t-1", "ha", refused)
    assert (first, second) == (1.0, 2.0), "it still backs off"
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    assert all("namespace is being deleted" in r.getMessage() and "failed" not in r.getMessage()
               for r in caplog.records)
    assert errors == []
    from kanaria.controller.state import namespace_terminating
    plain = ApiException(status=403, reason="Forbidden")
    plain.body = '{"kind":"Status","message":"forbidden","reason":"Forbidden","code":403}'
    assert not namespace_terminating(plain) and not namespace_terminating(RuntimeError("x"))
