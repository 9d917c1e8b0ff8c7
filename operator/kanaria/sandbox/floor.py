"""The fastest any operator could put N canaries on their routes on this test bed
(``make bench-floor``).

``make bench-scale`` splits the time from a change to a canary's first weight into the cluster's
share (the canary Deployment created → Ready) and the operator's (the rest: creating the canary's
Deployment and Service, and, once it is ready, setting the route's weight). This measures the
least the operator's share can be on the same test bed, with no operator at all: the harness
does, for N objects at once, only the writes a rollout cannot do without — one Deployment and
one Service per canary, then one HTTPRoute patch when the Deployment is Ready — with 16 writers
and no reads, no status, no decisions. What is left is the API server's and the control
plane's own pace on the machine.

It also measures the API server's raw write rate: ConfigMaps created by 16 writers for 20 s.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from kanaria.sandbox.scale import PER_NAMESPACE, percentile

__all__ = ["FloorResult", "run_floor"]

WRITERS = 16


@dataclass
class FloorResult:
    n: int
    writes_per_s: float
    """ConfigMaps created per second by WRITERS writers (the API server's raw write rate)."""
    write_p50_ms: float
    write_p99_ms: float
    creates_done_s: float
    """From the start until every canary's Deployment and Service exist."""
    weighted_p50_s: float
    weighted_p99_s: float
    """From the start (every change at once) to an object's route patched."""
    operator_share_p50_s: float
    operator_share_p99_s: float
    """The same split as bench-scale's: total minus (Deployment created → Ready)."""
    cluster_share_p50_s: float
    cluster_share_p99_s: float
    load_avg: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client(kubeconfig: str) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = WRITERS * 2
    return client.ApiClient(configuration)


def write_rate(api: Any, seconds: float = 20.0) -> tuple[float, float, float]:
    """(ConfigMaps created per second, p50 and p99 latency in ms) with WRITERS writers."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)  # dict bodies, as the API takes them
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="floor-writes")))
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def writer(w: int) -> None:
        i = 0
        while time.monotonic() < end:
            started = time.monotonic()
            core.create_namespaced_config_map("floor-writes", {
                "metadata": {"name": f"w{w}-{i}"}, "data": {"k": "v"}})
            with lock:
                latencies.append(time.monotonic() - started)
            i += 1

    started = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    elapsed = time.monotonic() - started
    return (len(latencies) / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)


def _canary(namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    labels = {"app.kubernetes.io/managed-by": "kanaria", "kanaria.io/deployment": name, "kanaria.io/revision": "r2"}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{name}-r2", "namespace": namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "model", "image": "kanaria/modelserver:0.1.0"}]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{name}-r2", "namespace": namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]},
    }
    return deployment, service


def _route(namespace: str, name: str, canary_weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [{"backendRefs": [
            {"name": f"{name}-r1", "port": 8080, "weight": 100 - canary_weight},
            {"name": f"{name}-r2", "port": 8080, "weight": canary_weight}]}]},
    }


def run_floor(n: int, *, write_seconds: float = 20.0) -> FloorResult:
    """Both measurements on a test bed grown as bench-scale grows it for N objects."""
    from kubernetes import client, watch

    from kanaria.sandbox.cluster import LocalCluster

    pods = n + 10
    nodes = max(1, math.ceil(pods / 1000))
    with LocalCluster(nodes=nodes, node_pods=str(math.ceil(pods / nodes) + 10), service_cidr="10.0.0.0/16",
                      client_qps=500, apiserver_args=["--max-requests-inflight=800",
                                                      "--max-mutating-requests-inflight=400"]) as cluster:
        cluster.install_gateway_api_crds()
        api = _client(str(cluster.kubeconfig))
        rate, p50, p99 = write_rate(api, write_seconds)
        print(f"N={n}: {rate:.0f} ConfigMap writes/s (p50 {p50:.0f} ms, p99 {p99:.0f} ms)", flush=True)

        core: Any = client.CoreV1Api(api)  # dict bodies, as the API takes them
        apps: Any = client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        keys = [(f"floor-{i // PER_NAMESPACE}", f"m{i:05d}") for i in range(n)]
        for ns in sorted({k[0] for k in keys}):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        with ThreadPoolExecutor(WRITERS) as pool:  # the routes exist before: not timed
            list(pool.map(lambda k: custom.create_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", k[0], "httproutes", _route(k[0], k[1], 0)), keys))

        created_at: dict[tuple[str, str], float] = {}
        ready_at: dict[tuple[str, str], float] = {}
        weighted_at: dict[tuple[str, str], float] = {}
        lock = threading.Lock()
        done = threading.Event()
        pool = ThreadPoolExecutor(WRITERS)

        def weigh(key: tuple[str, str]) -> None:
            custom.patch_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", key[0], "httproutes", key[1],
                {"spec": {"rules": _route(key[0], key[1], 20)["spec"]["rules"]}},
                _content_type="application/merge-patch+json")
            with lock:
                weighted_at[key] = time.monotonic()
                if len(weighted_at) >= n:
                    done.set()

        stream = watch.Watch()  # type: ignore[no-untyped-call]
        selector = "kanaria.io/revision=r2"
        # Watch from a list taken before the first write: no event of the run can be missed.
        since = apps.list_deployment_for_all_namespaces(label_selector=selector).metadata.resource_version

        def follow() -> None:
            try:
                _follow()
            except Exception:  # noqa: BLE001 - the stream is cut when the run ends
                if not done.is_set():
                    raise

        def _follow() -> None:
            for event in stream.stream(apps.list_deployment_for_all_namespaces,  # type: ignore[no-untyped-call]
                                       label_selector=selector, resource_version=since, timeout_seconds=3600):
                dep = event["object"]
                if (dep.status.ready_replicas or 0) < 1:
                    continue
                key = (dep.metadata.namespace, dep.metadata.name.removesuffix("-r2"))
                with lock:
                    if key in ready_at:
                        continue
                    ready_at[key] = time.monotonic()
                pool.submit(weigh, key)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()

        def create(key: tuple[str, str]) -> None:
            deployment, service = _canary(*key)
            apps.create_namespaced_deployment(key[0], deployment)
            with lock:
                created_at[key] = time.monotonic()
            core.create_namespaced_service(key[0], service)

        print(f"N={n}: {n} canaries at once ...", flush=True)
        t0 = time.monotonic()
        with ThreadPoolExecutor(WRITERS) as creators:
            list(creators.map(create, keys))
        creates_done = time.monotonic() - t0
        if not done.wait(600 + n):
            raise TimeoutError(f"N={n}: {len(weighted_at)}/{n} routes patched")
        stream.stop()  # type: ignore[no-untyped-call]
        pool.shutdown()
        totals = [weighted_at[k] - t0 for k in keys]
        cluster_share = [max(0.0, ready_at[k] - created_at[k]) for k in keys]
        operator_share = [t - c for t, c in zip(totals, cluster_share, strict=True)]
        api.close()
    return FloorResult(
        n=n, writes_per_s=round(rate, 1), write_p50_ms=round(p50, 1), write_p99_ms=round(p99, 1),
        creates_done_s=round(creates_done, 2),
        weighted_p50_s=round(percentile(totals, 0.5), 2), weighted_p99_s=round(percentile(totals, 0.99), 2),
        operator_share_p50_s=round(percentile(operator_share, 0.5), 2),
        operator_share_p99_s=round(percentile(operator_share, 0.99), 2),
        cluster_share_p50_s=round(percentile(cluster_share, 0.5), 2),
        cluster_share_p99_s=round(percentile(cluster_share, 0.99), 2),
        load_avg=round(os.getloadavg()[0], 2),
    )
