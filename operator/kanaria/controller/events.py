"""Kubernetes Events about a ModelDeployment."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.rollout.types import Event

__all__ = ["post_event"]

log = logging.getLogger("kanaria.events")


def post_event(api: client.ApiClient, obj: dict[str, Any], event: Event) -> None:
    """Record an Event on the object; a failure to record is logged, never raised."""
    meta = obj["metadata"]
    now = datetime.now(UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            resource_version=meta.get("resourceVersion"),
        ),
        reason=event.reason,
        message=event.message[:1024],
        type=event.type,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=client.V1EventSource(component="kanaria"),
        reporting_component="kanaria",
        reporting_instance="kanaria-operator",
    )
    log.log(logging.WARNING if event.type == "Warning" else logging.INFO, "%s/%s %s: %s",
            meta["namespace"], meta["name"], event.reason, event.message)
    try:
        client.CoreV1Api(api).create_namespaced_event(meta["namespace"], body)
    except ApiException as exc:
        log.warning("could not record event %s: %s %s", event.reason, exc.status, exc.reason)
