"""Traffic routers: one interface, one module per backend, and a factory."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kanaria.api.models import ModelDeploymentSpec
from kanaria.traffic.base import Router, normalise

__all__ = ["Router", "router_for", "normalise"]


def router_for(
    api: client.ApiClient, name: str, namespace: str, uid: str, spec: ModelDeploymentSpec, cache: Any = None
) -> Router:
    """The router the spec asks for. The schema guarantees exactly one is set. ``cache``: the
    operator's watch caches (:class:`kanaria.controller.informers.Informers`), read instead of
    the API when given."""
    traffic = spec.traffic
    if traffic.gateway_api is not None:
        from kanaria.traffic.gatewayapi import GatewayAPIRouter

        return GatewayAPIRouter(api, name, namespace, uid, traffic.gateway_api, cache)
    if traffic.istio is not None:
        from kanaria.traffic.istio import IstioRouter

        return IstioRouter(api, name, namespace, uid, traffic.istio, cache)
    if traffic.replicas is not None:
        from kanaria.traffic.replicas import ReplicaRouter

        return ReplicaRouter(api, name, namespace, uid, traffic.replicas, spec.replicas, cache)
    raise ValueError("spec.traffic names no router: choose gatewayAPI, istio or replicas")
