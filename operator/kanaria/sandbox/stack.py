"""The whole local stack, real at every hop, for the demo and the end-to-end tests.

    load generator ─► nginx (mirror) ─► HAProxy ─► model-server processes ◄── Prometheus (file_sd, 1 s scrape)
                        ▲ weights                ▲ one per revision             │
        HTTPRoute ──────┘ (route sync)      LocalKubelet ◄── Deployments        │
            ▲                                                    ▲              │
            └──────────── Kanaria operator (its own process, RBAC from manifests/) ◄┘
                                               LocalJobRunner ◄── Jobs' pods ◄──┘

The control plane is the test bed's (etcd, kube-apiserver, controller-manager, scheduler,
kwok). Nothing is faked: the operator moves real HTTPRoute weights, the proxy follows them,
real requests are split, real models answer, and Prometheus scrapes what they export. The
pods of the operator's Jobs (retraining, validation) run as local processes and report how
they ended on their status, so the Job controller completes or fails the Jobs.

Shared directories in the workdir: ``samples/`` (the labelled samples model servers write
and Jobs read, ``KANARIA_SAMPLE_DIR``) and ``jobs/`` (each Job pod's log and termination log).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.inference import InferenceGateway, PoolResolver
from kanaria.sandbox.jobs import LocalJobRunner
from kanaria.sandbox.kubelet import LocalKubelet
from kanaria.sandbox.mirror import MirrorFollower, MirrorProxy
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget, scrape_config
from kanaria.sandbox.proxy import HAProxyProxy, WeightFollower
from kanaria.sandbox.route_sync import HTTPRouteSync, RouteFollower

__all__ = ["LocalStack"]

log = logging.getLogger("kanaria.sandbox.stack")
ROOT = Path(__file__).resolve().parents[3]


GATEWAY_CONTROLLER = "kanaria.io/sandbox-gateway"
"""The controllerName the sandbox's proxies report HTTPRoute status under."""


class LocalStack:
    """Start with ``with LocalStack() as stack:``; everything stops on exit, also on errors."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        namespace: str = "models",
        cluster: LocalCluster | None = None,
        operator_kubeconfig: Path | None = None,
        start_operator: bool = True,
        scrape_interval: str = "1s",
    ) -> None:
        # Absolute: Prometheus (file_sd) and the processes run in other working directories.
        self.workdir = (workdir or Path(tempfile.mkdtemp(prefix="kanaria-stack-"))).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self._own_cluster = cluster is None
        self.cluster = cluster or LocalCluster()
        self._operator_kubeconfig = operator_kubeconfig
        self._start_operator = start_operator
        self.scrape_interval = scrape_interval
        self.prometheus: LocalPrometheus | None = None
        self.proxy: HAProxyProxy | None = None
        self.kubelet: LocalKubelet | None = None
        self.jobs: LocalJobRunner | None = None
        self.operator: OperatorProcess | None = None
        self.syncs: dict[str, HTTPRouteSync] = {}
        self.gateways: dict[str, InferenceGateway] = {}
        self.mirror: MirrorProxy | None = None
        self.api: client.ApiClient | None = None
        self._stack = contextlib.ExitStack()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._own_cluster:
            self.cluster.start()
            self._stack.callback(self.cluster.stop)
            self.cluster.install_gateway_api_crds()
            self.cluster.install_inference_extension_crds()
            self.cluster.apply_crds([ROOT / "crds" / "modeldeployment.yaml"])
        kubeconfig = self._operator_kubeconfig or self.cluster.operator_kubeconfig()
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self._ensure_namespace()

        self.proxy = HAProxyProxy()
        self.proxy.start()
        self._stack.callback(self.proxy.stop)
        # nginx in front of HAProxy mirrors a share of live traffic to a shadow revision
        # (HAProxy 2.6 cannot mirror); clients talk to nginx.
        self.mirror = MirrorProxy(self.proxy.url).start()
        self._stack.callback(self.mirror.stop)

        targets = self.workdir / "models.targets.json"
        # A revision scaled to zero loses its server, as its pods would go (keep_stopped=False).
        self.kubelet = LocalKubelet(
            self.api, self.namespace, self.workdir, targets, sample_dir=self.sample_dir, keep_stopped=False
        ).start()
        self._stack.callback(self.kubelet.stop)
        self.jobs = LocalJobRunner(
            self.api, self.namespace, self.workdir, sample_dir=self.sample_dir
        ).start()
        self._stack.callback(self.jobs.stop)

        self.operator = OperatorProcess(kubeconfig, workdir=self.workdir) if self._start_operator else None
        static = [ScrapeTarget(f"127.0.0.1:{self.proxy.stats_port}", {"job": "haproxy"}, job="haproxy")]
        if self.operator is not None:
            static.append(ScrapeTarget(f"127.0.0.1:{self.operator.metrics_port}", job="kanaria"))
        self.prometheus = LocalPrometheus(
            scrape_config(static, file_sd=[targets], interval=self.scrape_interval)
        )
        self.prometheus.start()
        self._stack.callback(self.prometheus.close)

        if self.operator is not None:
            self.operator.start()
            self._stack.callback(self.operator.stop)

    def stop(self) -> None:
        for sync in self.syncs.values():
            sync.stop()
        self.syncs.clear()
        self._stack.close()
        if self.api is not None:
            self.api.close()  # type: ignore[no-untyped-call]
            self.api = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers

    def _ensure_namespace(self) -> None:
        assert self.api is not None
        core = client.CoreV1Api(self.api)
        names = {ns.metadata.name for ns in core.list_namespace().items if ns.metadata}
        if self.namespace not in names:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))

    def follow_route(self, name: str) -> HTTPRouteSync:
        """Make the proxies follow the HTTPRoute ``name`` (the ModelDeployment's route):
        HAProxy its weights, nginx its mirror and match."""
        assert self.proxy is not None and self.mirror is not None
        assert self.kubelet is not None and self.api is not None
        if name not in self.syncs:
            pools = PoolResolver(self.api, self.namespace, self.kubelet)
            followers: list[RouteFollower] = [
                WeightFollower(self.proxy, self.kubelet.resolve, pool_resolver=pools),
                MirrorFollower(self.mirror, self.kubelet.resolve),
            ]
            sync = HTTPRouteSync(name, self.namespace, followers, api=client.CustomObjectsApi(self.api),
                                 controller=GATEWAY_CONTROLLER)
            self.syncs[name] = sync.start()
        return self.syncs[name]

    def route_programmed(self, name: str) -> bool:
        """Whether the proxies carry the current generation of the HTTPRoute ``name``, as its
        status says (what ``kubectl get httproute`` shows a user of a real gateway)."""
        assert self.api is not None
        try:
            route = cast(dict[str, Any], client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                HTTPRouteSync.GROUP, HTTPRouteSync.VERSION, self.namespace, HTTPRouteSync.PLURAL, name))
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        generation = (route.get("metadata") or {}).get("generation")
        mine = [p for p in (route.get("status") or {}).get("parents") or []
                if p.get("controllerName") == GATEWAY_CONTROLLER]
        return bool(mine) and all(c.get("status") == "True" and c.get("observedGeneration") == generation
                                  for p in mine for c in p.get("conditions") or [])

    def follow_inference(self, name: str) -> InferenceGateway:
        """An :class:`~kanaria.sandbox.inference.InferenceGateway` following the HTTPRoute
        ``name``'s InferencePool backends and the namespace's InferenceModelRewrites: where
        clients of an adapter rollout send their requests (``gateway.url``)."""
        assert self.kubelet is not None and self.api is not None
        if name not in self.gateways:
            gateway = InferenceGateway(self.api, self.namespace, PoolResolver(self.api, self.namespace, self.kubelet))
            gateway.start()
            self._stack.callback(gateway.stop)
            sync = HTTPRouteSync(name, self.namespace, [gateway], api=client.CustomObjectsApi(self.api))
            self.syncs[f"{name}/inference"] = sync.start()
            self.gateways[name] = gateway
        return self.gateways[name]

    @property
    def sample_dir(self) -> Path:
        """Where model servers write labelled samples and Jobs read them."""
        return self.workdir / "samples"

    @property
    def proxy_url(self) -> str:
        """Where clients send traffic: nginx (mirroring) in front of HAProxy (weights)."""
        assert self.mirror is not None
        return str(self.mirror.url)

    @property
    def prometheus_url(self) -> str:
        assert self.prometheus is not None
        return str(self.prometheus.url)

    def apply(self, manifest: dict[str, Any]) -> str:
        return self.cluster.apply_yaml(yaml.safe_dump(manifest))

    def patch(self, name: str, body: dict[str, Any]) -> None:
        """A merge patch of a ModelDeployment (for example a kanaria.io/action annotation)."""
        assert self.api is not None
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            "kanaria.io", "v1alpha1", self.namespace, "modeldeployments", name, body,
            _content_type="application/merge-patch+json",
        )

    def get(self, name: str) -> dict[str, Any]:
        assert self.api is not None
        obj = cast(dict[str, Any], client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            "kanaria.io", "v1alpha1", self.namespace, "modeldeployments", name
        ))
        return obj
