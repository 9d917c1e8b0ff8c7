"""Writing a ModelDeployment's status: a whole replacement carrying the resourceVersion the
cycle read, and after a conflict the object re-read into the watch cache."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.models import GROUP, PLURAL, VERSION, ModelDeploymentStatus
from kanaria.controller.quiet import status_dump

if TYPE_CHECKING:
    from kanaria.controller.reconcile import ReconcileContext

__all__ = ["refresh_cache", "write_status"]

log = logging.getLogger("kanaria.reconcile")


def write_status(
    ctx: ReconcileContext, obj: dict[str, Any], before: ModelDeploymentStatus, after: ModelDeploymentStatus
) -> bool:
    """Replace the status; False when someone else changed the object meanwhile (409)."""
    new = status_dump(after)
    if new == status_dump(before) and obj.get("status") is not None:
        return True
    # A whole replacement carrying the resourceVersion read at the start of the cycle: fields
    # that went away are removed, and a concurrent writer makes this a 409, not a double step.
    body = {**obj, "status": new}
    custom = client.CustomObjectsApi(ctx.api)
    try:
        written = custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, obj["metadata"]["namespace"], PLURAL, obj["metadata"]["name"], body
        )
    except ApiException as exc:
        if exc.status == 409:
            log.info("status of %s changed meanwhile; the next cycle decides again", obj["metadata"]["name"])
            refresh_cache(ctx, obj["metadata"]["namespace"], obj["metadata"]["name"])
            return False
        raise
    if isinstance(written, dict):  # later writes in this cycle build on this version
        obj["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"]
        obj["status"] = written.get("status")
        if ctx.cache is not None:
            ctx.cache.put("ModelDeployment", copy.deepcopy(written))
        if ctx.on_status_written is not None:
            ctx.on_status_written(written)
    return True


def refresh_cache(ctx: ReconcileContext, namespace: str, name: str) -> None:
    """After a conflict, put the object as the API server has it now into the watch cache: the
    next cycle then builds on that version even if the cache's watch missed the change (a
    cache stuck on an old version would make every cycle conflict again)."""
    if ctx.cache is None:
        return
    try:
        fresh = client.CustomObjectsApi(ctx.api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except Exception as exc:  # the next cycle reads again; its conflict will try again
        log.info("could not re-read %s/%s after a conflict: %s", namespace, name, exc)
        return
    if isinstance(fresh, dict):
        ctx.cache.put("ModelDeployment", fresh)
