"""What N ModelDeployments cost the operator, on the test bed (``make bench-scale``).

One run per N: a control plane grown to fit (Service range /16, controller-manager and scheduler
client limits raised, kwok nodes for every pod), the CRDs, a real Prometheus scraping one
exporter, and the operator under its RBAC. No model-server processes: kwok makes the pods Ready.

1. N ModelDeployments are created (spread over namespaces of at most 100); the time until every
   one is Stable is measured.
2. At rest, over a window: the operator's CPU (cores), RSS, Kubernetes API requests per second
   (its own count, watches included) and Prometheus requests and queries per second.
3. Every object's model version changes at once. For each object: the time from its change to
   the first canary weight on its HTTPRoute, split into the cluster's share (the canary
   Deployment created → Ready) and the operator's (the rest). During the canary's pause the
   operator measures every interval; the same costs are taken over that window, and how long
   each object actually waited between two measurements over its interval (the operator's
   ``kanaria_analysis_gap_ratio``).

Everything is read from watches (the harness's own list+watch caches), not by polling the API.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_USER = "system:serviceaccount:kanaria-system:kanaria-operator"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""
"""The API server writes one line per request of the operator's identity when the request
completes (a watch: when it ends) — every request, kopf's own included, whatever the
operator's own counters say."""
PER_NAMESPACE = 100
QUERY = 'max(label_replace(kanaria_bench_quality, "revision", "{{revision}}", "", ""))'
"""One custom metric per object: every revision's query differs (its revision is in it), every
one answers 1 from the one series the exporter serves."""


@dataclass
class Window:
    """Costs over one stretch of time."""

    seconds: float
    cpu_cores: float
    rss_mb: float
    api_per_s: float
    """Requests of the operator's identity, counted by the API server's audit log."""
    leases_per_s: float
    """Of those, the leader election's (a fixed cost per replica, whatever N)."""
    api_per_object_min: float
    """The rest (everything but the Lease), per object and minute."""
    api_counted_per_s: float
    """The operator's own count (its Kubernetes client and caches; kopf's requests not in it)."""
    prometheus_requests_per_s: float
    queries_per_s: float


@dataclass
class ScaleResult:
    n: int
    seed: int
    interval_s: float
    created_s: float
    """Time to create the N objects (the harness's own requests)."""
    stable_s: float
    """From the first create to every object Stable."""
    idle: Window
    rollout: Window
    change_to_weight_p50_s: float
    change_to_weight_p99_s: float
    operator_share_p50_s: float
    operator_share_p99_s: float
    cluster_share_p50_s: float
    cluster_share_p99_s: float
    weighted: int
    """Objects that reached a canary weight within the deadline."""
    gap_p50: float
    gap_p99: float
    measurements: int
    """Measurements observed in the rollout window (the gap histogram's count)."""
    load_avg: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- process and metrics


def process_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS in MB) of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus exposition, keyed by ``name{labels}`` as written."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            continue
    return out


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def histogram_quantile(samples: dict[str, float], name: str, q: float,
                       before: dict[str, float] | None = None) -> tuple[float, int]:
    """The q-quantile of a histogram's observations between ``before`` and ``samples`` (the
    upper bound of the bucket it falls in; inf above the last), and how many there were."""
    buckets: list[tuple[float, float]] = []
    for key, value in samples.items():
        if not key.startswith(f"{name}_bucket{{"):
            continue
        le = key.split('le="', 1)[1].split('"', 1)[0]
        earlier = (before or {}).get(key, 0.0)
        buckets.append((math.inf if le == "+Inf" else float(le), value - earlier))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return math.nan, 0
    count = buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound, int(count)
    return math.inf, int(count)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class OperatorProbe:
    """The operator's own counters and its process's CPU and memory."""

    def __init__(self, pid: int, metrics_port: int, audit: Path) -> None:
        self.pid, self.url, self.audit = pid, f"http://127.0.0.1:{metrics_port}/metrics", audit
        self._offset, self._lines, self._leases = 0, 0, 0

    def audit_lines(self) -> tuple[int, int]:
        """Requests of the operator's identity completed so far (lines of the audit log), and
        how many of them were on Leases."""
        if self.audit.exists():
            with self.audit.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                self._lines += 1
                if b'"resource":"leases"' in line:
                    self._leases += 1
            self._offset += end
        return self._lines, self._leases

    def read(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url, timeout=30) as resp:  # noqa: S310 - loopback
            samples = parse_metrics(resp.read().decode())
        cpu, rss = process_sample(self.pid)
        samples["process_cpu"], samples["process_rss_mb"] = cpu, rss
        lines, leases = self.audit_lines()
        samples["audit"], samples["audit_leases"] = float(lines), float(leases)
        samples["at"] = time.monotonic()
        return samples

    @staticmethod
    def window(a: dict[str, float], b: dict[str, float], n: int, rss: list[float]) -> Window:
        seconds = max(1e-9, b["at"] - a["at"])

        def delta(**labels: str) -> float:
            return sample(b, "kanaria_operator_requests", **labels) - sample(
                a, "kanaria_operator_requests", **labels)

        api, leases = b["audit"] - a["audit"], b["audit_leases"] - a["audit_leases"]
        return Window(
            seconds=round(seconds, 1),
            cpu_cores=round((b["process_cpu"] - a["process_cpu"]) / seconds, 3),
            rss_mb=round(max(rss) if rss else b["process_rss_mb"], 1),
            api_per_s=round(api / seconds, 3),
            leases_per_s=round(leases / seconds, 3),
            api_per_object_min=round((api - leases) / seconds * 60 / max(1, n), 4),
            api_counted_per_s=round(delta(target="api") / seconds, 3),
            prometheus_requests_per_s=round(delta(target="prometheus") / seconds, 3),
            queries_per_s=round(delta(target="query") / seconds, 3),
        )


# ---------------------------------------------------------------------- the objects


def namespaces_for(n: int) -> list[str]:
    return [f"scale-{i}" for i in range(max(1, math.ceil(n / PER_NAMESPACE)))]


def object_names(n: int) -> list[tuple[str, str]]:
    spaces = namespaces_for(n)
    return [(spaces[i // PER_NAMESPACE], f"m{i:05d}") for i in range(n)]


def manifest(namespace: str, name: str, version: str, prometheus: str, interval_s: float,
             pause_s: float) -> dict[str, Any]:
    """A canary: 20 % of traffic, a pause measured every interval, then promotion."""
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "iris", "version": version, "uri": f"file:///models/{version}"},
            "replicas": 1,
            "traffic": {"gatewayAPI": {}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": f"{int(pause_s)}s"}},
                                              {"setWeight": 100}]}},
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": f"{int(interval_s)}s",
                "metrics": [{"name": "quality", "kind": "custom", "query": QUERY, "condition": ">= 0.9"}],
            },
            "rollback": {"postPromotionWindow": "0s", "scaleDownDelay": "0s"},
        },
    }


@dataclass
class Tracker:
    """What the harness sees through its watches: phases, canary Deployments, route weights."""

    stable_revision: dict[tuple[str, str], str] = field(default_factory=dict)
    phase: dict[tuple[str, str], str] = field(default_factory=dict)
    changed_at: dict[tuple[str, str], float] = field(default_factory=dict)
    created_at: dict[tuple[str, str], float] = field(default_factory=dict)
    ready_at: dict[tuple[str, str], float] = field(default_factory=dict)
    weighted_at: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_change(self, kind: str, obj: dict[str, Any], _event: str) -> None:
        now = time.monotonic()
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "")
        with self.lock:
            if kind == "ModelDeployment":
                key = (ns, str(meta.get("name")))
                status = obj.get("status") or {}
                self.phase[key] = str(status.get("phase") or "")
                if status.get("phase") == "Stable" and status.get("stableRevision"):
                    self.stable_revision.setdefault(key, str(status["stableRevision"]))
            elif kind == "Deployment":
                labels = meta.get("labels") or {}
                key = (ns, str(labels.get("kanaria.io/deployment")))
                revision = labels.get("kanaria.io/revision")
                if key not in self.changed_at or revision == self.stable_revision.get(key):
                    return
                self.created_at.setdefault(key, now)
                ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
                if ready >= int((obj.get("spec") or {}).get("replicas") or 1):
                    self.ready_at.setdefault(key, now)
            elif kind == "HTTPRoute":
                from kanaria.traffic.gatewayapi import weights_from_route

                key = (ns, str(meta.get("name")))
                if key not in self.changed_at or key in self.weighted_at:
                    return
                weights = weights_from_route(key[1], obj) or {}
                stable = self.stable_revision.get(key)
                if any(w > 0 for rev, w in weights.items() if rev != stable):
                    self.weighted_at[key] = now

    def count(self, phase: str) -> int:
        with self.lock:
            return sum(1 for p in self.phase.values() if p == phase)


def _watch(api: Any, kinds: Iterable[str], tracker: Tracker) -> list[Any]:
    from kanaria.controller.informers import KINDS, Informer

    started = []
    for kind in kinds:
        informer = Informer(api, KINDS[kind], None, tracker.on_change)
        informer.start()
        started.append(informer)
    for informer in started:
        informer.wait_synced(60)
    return started


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               progress: Callable[[], str] | None = None) -> float:
    """Wait (polling a local value, not the API) until ``condition``; the seconds it took."""
    t0 = time.monotonic()
    last_print = t0
    while not condition():
        now = time.monotonic()
        if now - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s" + (f" ({progress()})" if progress else ""))
        if progress is not None and now - last_print >= 30:
            print(f"  ... {what}: {progress()}", flush=True)
            last_print = now
        time.sleep(0.5)
    return time.monotonic() - t0


# ---------------------------------------------------------------------- one run


@contextmanager
def scale_bed(n: int, operator_env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """The grown test bed for N objects: cluster, CRDs, Prometheus, exporter, operator."""
    from kubernetes import config

    from kanaria.sandbox.cluster import LocalCluster
    from kanaria.sandbox.exporter import MetricsExporter
    from kanaria.sandbox.operator import OperatorProcess
    from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget

    pods = 2 * n + 10
    nodes = max(1, math.ceil(pods / 1000))
    with ExitStack() as stack:
        audit = Path(tempfile.mkdtemp(prefix="kanaria-scale-audit-"))
        stack.callback(shutil.rmtree, audit, True)
        (audit / "policy.yaml").write_text(AUDIT_POLICY)
        cluster = LocalCluster(nodes=nodes, node_pods=str(math.ceil(pods / nodes) + 10),
                               service_cidr="10.0.0.0/16", client_qps=500,
                               apiserver_args=["--max-requests-inflight=800",
                                               "--max-mutating-requests-inflight=400",
                                               f"--audit-policy-file={audit / 'policy.yaml'}",
                                               f"--audit-log-path={audit / 'operator.log'}",
                                               "--audit-log-maxsize=0"])
        stack.enter_context(cluster)
        cluster.install_gateway_api_crds()
        cluster.apply_crds([ROOT / "crds" / "modeldeployment.yaml"])
        kubeconfig = cluster.operator_kubeconfig()
        exporter = stack.enter_context(MetricsExporter())
        exporter.gauge("kanaria_bench_quality").set(1.0)
        prom = LocalPrometheus([ScrapeTarget(exporter.target)])
        prom.start()
        stack.callback(prom.close)
        admin = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        stack.callback(admin.close)
        workdir = cluster.workdir / "operator"
        workdir.mkdir(parents=True, exist_ok=True)
        op = OperatorProcess(kubeconfig, workdir=workdir, extra_env=dict(operator_env or {}))
        op.start()
        stack.callback(op.stop)
        yield {"cluster": cluster, "prometheus": prom, "admin": admin, "operator": op,
               "audit": audit / "operator.log"}


def _create_all(admin: Any, bodies: list[dict[str, Any]], workers: int = 8) -> None:
    from kubernetes import client

    core = client.CoreV1Api(admin)
    for ns in sorted({b["metadata"]["namespace"] for b in bodies}):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    custom = client.CustomObjectsApi(admin)

    def create(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object("kanaria.io", "v1alpha1", body["metadata"]["namespace"],
                                               "modeldeployments", body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, bodies))


def run_scale(n: int, *, seed: int = 20241202, interval_s: float = 10.0, idle_s: float = 60.0,
              pause_s: float = 120.0, settle_s: float = 75.0, operator_env: dict[str, str] | None = None,
              timeout_s: float | None = None) -> ScaleResult:
    """One N: every number of :class:`ScaleResult`, on a test bed of its own."""
    import random

    rng = random.Random(seed)  # the order in which objects change
    timeout = timeout_s if timeout_s is not None else 300 + 1.0 * n
    notes: list[str] = []
    with scale_bed(n, operator_env) as bed:
        admin, op = bed["admin"], bed["operator"]
        address = bed["prometheus"].url
        tracker = Tracker()
        informers = _watch(admin, ("ModelDeployment", "Deployment", "HTTPRoute"), tracker)
        try:
            probe = OperatorProbe(int(op.pid), op.metrics_port, bed["audit"])
            keys = object_names(n)
            bodies = [manifest(ns, name, "v1", address, interval_s, pause_s) for ns, name in keys]
            t0 = time.monotonic()
            print(f"N={n}: creating {n} ModelDeployments ...", flush=True)
            _create_all(admin, bodies)
            created = time.monotonic() - t0
            wait_until(lambda: tracker.count("Stable") >= n, timeout, f"N={n} all Stable",
                       lambda: f"{tracker.count('Stable')}/{n} Stable")
            stable = time.monotonic() - t0
            print(f"N={n}: all Stable after {stable:.0f}s; at rest for {idle_s:.0f}s ...", flush=True)

            # At rest: past the first check of every serving revision (monitoring, every 60 s by
            # default; the first one is written, later ones that find nothing new are not).
            time.sleep(settle_s)  # the settle time is part of the method, not a wait for a condition
            idle = _measure(probe, idle_s, n)

            # Every object changes version at once.
            from kubernetes import client

            custom = client.CustomObjectsApi(admin)
            order = list(keys)
            rng.shuffle(order)
            before = probe.read()

            def change(key: tuple[str, str]) -> None:
                with tracker.lock:
                    tracker.changed_at[key] = time.monotonic()
                custom.patch_namespaced_custom_object(
                    "kanaria.io", "v1alpha1", key[0], "modeldeployments", key[1],
                    {"spec": {"model": {"version": "v2", "uri": "file:///models/v2"}}})

            print(f"N={n}: changing every version ...", flush=True)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(change, order))
            wait_until(lambda: len(tracker.weighted_at) >= n, timeout, f"N={n} canary weights",
                       lambda: f"{len(tracker.weighted_at)}/{n} weighted")
            # The canaries are in their pause now: measured every interval.
            rollout_window = _measure(probe, min(idle_s, pause_s * 0.6), n)
            after = probe.read()
            gap50, count = histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.5, before)
            gap99, _ = histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.99, before)

            totals, operator_share, cluster_share = [], [], []
            with tracker.lock:
                for key in keys:
                    if key not in tracker.weighted_at:
                        continue
                    total = tracker.weighted_at[key] - tracker.changed_at[key]
                    totals.append(total)
                    created_at, ready_at = tracker.created_at.get(key), tracker.ready_at.get(key)
                    if created_at is not None and ready_at is not None:
                        pods = max(0.0, min(ready_at, tracker.weighted_at[key]) - created_at)
                        cluster_share.append(pods)
                        operator_share.append(max(0.0, total - pods))
            if len(cluster_share) < len(totals):
                notes.append(f"{len(totals) - len(cluster_share)} objects without a seen canary Deployment")
        finally:
            for informer in informers:
                informer.stop()
        return ScaleResult(
            n=n, seed=seed, interval_s=interval_s, created_s=round(created, 1), stable_s=round(stable, 1),
            idle=idle, rollout=rollout_window,
            change_to_weight_p50_s=round(percentile(totals, 0.5), 2),
            change_to_weight_p99_s=round(percentile(totals, 0.99), 2),
            operator_share_p50_s=round(percentile(operator_share, 0.5), 2),
            operator_share_p99_s=round(percentile(operator_share, 0.99), 2),
            cluster_share_p50_s=round(percentile(cluster_share, 0.5), 2),
            cluster_share_p99_s=round(percentile(cluster_share, 0.99), 2),
            weighted=len(totals), gap_p50=gap50, gap_p99=gap99, measurements=count,
            load_avg=round(os.getloadavg()[0], 2), notes=notes,
        )


def _measure(probe: OperatorProbe, seconds: float, n: int) -> Window:
    """Costs over ``seconds`` (RSS sampled every 5 s; its peak is reported)."""
    first = probe.read()
    rss = [first["process_rss_mb"]]
    end = first["at"] + seconds
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))  # a measurement window
        rss.append(process_sample(probe.pid)[1])
    return OperatorProbe.window(first, probe.read(), n, rss)


__all__ = ["ScaleResult", "Window", "run_scale", "manifest"]
