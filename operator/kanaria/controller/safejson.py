"""JSON from the API server that no object can poison.

The API server accepts JSON nested up to 10,000 levels where a schema lets unknown fields
through (and stores objects created before a schema was tightened). Python's decoder gives up
at about 1,000 levels with ``RecursionError``; inside kopf's watch stream that error ends the
watch, and with it the operator — so one object would stop every rollout, and in a cluster the
operator would crash-loop for as long as the object exists.

:func:`loads` decodes such a document anyway (in a thread with a large stack) and then cuts
every subtree deeper than :data:`MAX_DEPTH` levels, replacing it with :data:`TOO_DEEP` and
marking the object with :data:`TOO_DEEP_KEY` so that the reconcile marks it InvalidSpec with a
clear message instead of acting on a mangled spec. No real ModelDeployment comes near the
limit (a typed pod template is 20 levels deep at most). :func:`install` puts it in the places
the operator's clients decode API responses: kopf's watch stream and its list calls (through
aiohttp) and the Kubernetes client.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

__all__ = ["MAX_DEPTH", "TOO_DEEP", "TOO_DEEP_KEY", "bound_depth", "install", "loads", "poisoned"]

log = logging.getLogger("kanaria.safejson")

MAX_DEPTH = 64
"""Deepest nesting kept in a decoded object (the document root is level 1)."""
TOO_DEEP = "<dropped: nested deeper than 64 levels>"
TOO_DEEP_KEY = "kanaria.io/too-deep"
"""Added to an object that lost parts to the depth bound: the reason, for InvalidSpec."""
_DEEP_STACK_BYTES = 512 * 1024 * 1024  # virtual; pages are only touched as deep as the input goes
_DEEP_RECURSION = 40_000  # the API server itself refuses JSON deeper than 10,000 levels
_deep_lock = threading.Lock()
_counts = {"decoded_deep": 0, "truncated": 0, "undecodable": 0}


def poisoned() -> dict[str, int]:
    """How many documents needed the deep decoder, were cut, or could not be decoded at all."""
    return dict(_counts)


def _loads_deep(text: str | bytes) -> Any:
    """Decode a document too deep for the default recursion limit, in a thread with a stack
    large enough for the API server's own depth limit."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = json.loads(text)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    with _deep_lock:
        old_stack = threading.stack_size(_DEEP_STACK_BYTES)
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, _DEEP_RECURSION))
        try:
            worker = threading.Thread(target=run, name="kanaria-deep-json", daemon=True)
            worker.start()
            worker.join()
        finally:
            sys.setrecursionlimit(old_limit)
            threading.stack_size(old_stack)
    if "error" in result:
        raise result["error"]
    return result["value"]


def bound_depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """Replace, in place, every container nested deeper than ``limit`` with :data:`TOO_DEEP`;
    returns how many were cut. Iterative: no recursion however deep ``doc`` is."""
    if not isinstance(doc, (dict, list)):
        return 0
    cut = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        keys = list(node.keys()) if isinstance(node, dict) else range(len(node))
        for key in keys:
            child = node[key]
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    node[key] = TOO_DEEP
                    cut += 1
                else:
                    stack.append((child, depth + 1))
    return cut


def _mark(doc: Any) -> None:
    """Mark each Kubernetes object in ``doc`` (an object, a list's items, a watch event's
    object) that lost parts to the depth bound."""
    candidates: list[Any] = [doc]
    if isinstance(doc, dict):
        candidates += [doc.get("object")] + list(doc.get("items") or [])
    for obj in candidates:
        if isinstance(obj, dict) and "metadata" in obj and bound_depth(obj, MAX_DEPTH - 2):
            obj[TOO_DEEP_KEY] = (f"the object is nested deeper than {MAX_DEPTH - 2} levels; Kanaria does not "
                                 "act on it (parts beyond that depth were dropped when it was read)")
            meta = obj["metadata"] if isinstance(obj["metadata"], dict) else {}
            log.error("%s/%s is nested deeper than %d levels: marked invalid", meta.get("namespace"),
                      meta.get("name"), MAX_DEPTH - 2)


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads`` that survives any nesting the API server accepts (see the module)."""
    try:
        doc = json.loads(text, **kwargs)
        deep = False
    except RecursionError:
        _counts["decoded_deep"] += 1
        try:
            doc = _loads_deep(bytes(text) if isinstance(text, bytearray) else text)
        except RecursionError:
            _counts["undecodable"] += 1
            raise ValueError(f"JSON nested deeper than {_DEEP_RECURSION} levels") from None
        deep = True
    # A document that decoded at the default limit can still be too deep for the code that
    # walks it (copying, diffing, validating): cut it too.
    if deep or _deeper_than(doc, MAX_DEPTH):
        _counts["truncated"] += 1
        _mark(doc)
        bound_depth(doc)
    return doc


def _deeper_than(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


class _JsonShim:
    """Stands in for the ``json`` module inside a client module: only ``loads`` differs."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    loads = staticmethod(loads)


def install() -> list[str]:
    """Decode with :func:`loads` in kopf's watch stream and API calls (aiohttp) and in the
    Kubernetes client; returns what was patched. Raises when a patch point has moved (a new
    kopf, aiohttp or client version), so an upgrade cannot silently drop the protection."""
    import aiohttp
    import kopf._cogs.clients.api as kopf_api
    import kubernetes.client.api_client as kube_api

    patched = []
    for module in (kopf_api, kube_api):
        if getattr(module, "json", None) is not json and not isinstance(getattr(module, "json", None), _JsonShim):
            raise RuntimeError(f"{module.__name__} no longer decodes with the json module")
        module.json = _JsonShim()  # type: ignore[attr-defined]
        patched.append(f"{module.__name__}.json.loads")
    defaults = aiohttp.ClientResponse.json.__kwdefaults__
    if not defaults or "loads" not in defaults:
        raise RuntimeError("aiohttp.ClientResponse.json no longer takes loads=")
    defaults["loads"] = loads
    patched.append("aiohttp.ClientResponse.json(loads=)")
    return patched
