"""A real, local Kubernetes control plane for tests: etcd, kube-apiserver, controller-manager,
scheduler and kwok (a fake kubelet) as ordinary processes on 127.0.0.1, in a temp dir.

    with LocalCluster() as cluster:
        cluster.apply_yaml("manifests/base/rbac.yaml")
        ... KUBECONFIG=cluster.kubeconfig ...

Developers can run one by hand: ``python -m kanaria.sandbox.cluster up``.
See docs/testbed.md for versions, flags and timings.
"""

from __future__ import annotations

import argparse
import atexit
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import yaml

from kanaria.sandbox._api import RawApi, condition_true
from kanaria.sandbox._locate import (
    cluster_bin_dir,
    go_module_dir,
    repo_root,
)
from kanaria.sandbox._pki import Pki, make_pki, write_kubeconfig
from kanaria.sandbox._proc import (
    ManagedProcess,
    Running,
    free_port,
    http_get,
    run,
    wait_until,
)
from kanaria.sandbox.kwoknodes import (
    KWOK_NODE_ANNOTATION,
    POD_CIDR,
    node_object,
    node_schedulable,
    write_kwok_config,
)
from kanaria.sandbox.readiness import PodReadiness

__all__ = ["LocalCluster", "write_kubeconfig"]

GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION = "v1.6.3"  # the one pin of the Gateway API CRDs (standard channel)
INFERENCE_EXTENSION_MODULE = "sigs.k8s.io/gateway-api-inference-extension"
INFERENCE_EXTENSION_VERSION = "v1.5.0"  # the one pin of InferencePool and InferenceModelRewrite
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
ADMIN_USER = "kanaria-admin"
FIELD_MANAGER = "kanaria-testbed"
_APPLY = ("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}")


class LocalCluster(Running):
    """etcd → kube-apiserver → controller-manager + scheduler → kwok, plus fake Nodes.

    Start with ``start()`` or a ``with`` block; ``stop()`` tears everything down in reverse
    order (SIGTERM, then SIGKILL after ``stop_timeout``), removes the temp dir, and is also
    registered with ``atexit``.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | str | None = None,
        nodes: int = 1,
        node_cpu: str = "32",
        node_memory: str = "256Gi",
        node_pods: str = "110",
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
        client_qps: int | None = None,
        apiserver_args: list[str] | None = None,
    ) -> None:
        """``service_cidr`` bounds how many Services (one per revision) can exist; ``client_qps``
        raises the controller-manager's and scheduler's client rate limits (burst twice it) and
        their worker counts, so that pods of many revisions start at once (``make bench-scale``)."""
        self._service_cidr = service_cidr
        self._client_qps = client_qps
        self._apiserver_args = list(apiserver_args or [])
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None
        self._nodes = nodes
        self._node_resources = {"cpu": node_cpu, "memory": node_memory, "pods": node_pods}
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._workdir: Path | None = None
        self._procs: list[ManagedProcess] = []
        self._server: str | None = None
        self._admin_token = ""
        self._pki: Pki | None = None
        self._readiness: PodReadiness | None = None

    # ----------------------------------------------------------------- properties

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = cluster_bin_dir()
        return self._bin_dir

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the cluster is not started")
        return self._workdir

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (a token in group system:masters)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        if self._server is None:
            raise RuntimeError("the cluster is not started")
        return self._server

    @property
    def ca_file(self) -> Path:
        if self._pki is None:
            raise RuntimeError("the cluster is not started")
        return self._pki.ca_cert

    def pids(self) -> dict[str, int]:
        """PID of each running program, by name."""
        return {p.name: p.pid for p in self._procs if p.pid is not None and p.alive()}

    def check_alive(self) -> None:
        """Raise StartupError (with its log tail) when any program has exited."""
        for proc in self._procs:
            proc.check_alive()

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # ----------------------------------------------------------------- lifecycle


    def start(self) -> None:
        if self._workdir is not None:
            raise RuntimeError("the cluster is already started")
        bin_dir = self.bin_dir
        self._workdir = Path(tempfile.mkdtemp(prefix="kanaria-cluster-"))
        atexit.register(self.stop)
        try:
            self._start(bin_dir)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every program in reverse start order and remove the temp dir (idempotent)."""
        atexit.unregister(self.stop)
        errors: list[str] = []
        if self._readiness is not None:
            self._readiness.stop()
            self._readiness = None
        for proc in reversed(self._procs):
            try:
                proc.stop(self._stop_timeout)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(f"{proc.name}: {exc!r}")
        self._procs.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._server = None
        self._pki = None
        if errors:
            raise RuntimeError("teardown problems: " + "; ".join(errors))

    # ----------------------------------------------------------------- start-up

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name=name, argv=argv, log_path=self.log_path(name), cwd=self.workdir)
        self._procs.append(proc)
        proc.start()
        return proc

    def _start(self, bin_dir: Path) -> None:
        work = self.workdir
        timeout = self._start_timeout
        pki = self._pki = make_pki(work / "pki")
        self._admin_token = secrets.token_hex(24)
        tokens = work / "tokens.csv"
        tokens.write_text(f'{self._admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=kanaria",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kanaria={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: _etcd_healthy(etcd_url), timeout=timeout, what="etcd /health", watch=[etcd]
        )

        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={self._service_cidr}",
                "--allow-privileged=true",
                "--profiling=false",
                *self._apiserver_args,
            ],
        )
        self._server = f"https://127.0.0.1:{api_port}"
        api = RawApi(self._server, self._admin_token, pki.ca_cert)
        wait_until(
            lambda: api.status("/readyz")[0] == 200,
            timeout=timeout,
            what="kube-apiserver /readyz",
            watch=[etcd, apiserver],
        )
        write_kubeconfig(self.kubeconfig, self._server, pki.ca_cert, ADMIN_USER, self._admin_token)

        admin = str(self.kubeconfig)
        common = [
            f"--kubeconfig={admin}",
            f"--authentication-kubeconfig={admin}",
            f"--authorization-kubeconfig={admin}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        if self._client_qps:
            common += [f"--kube-api-qps={self._client_qps}", f"--kube-api-burst={2 * self._client_qps}"]
        kcm_workers = ["--concurrent-deployment-syncs=20", "--concurrent-replicaset-syncs=20",
                       "--concurrent-service-endpoint-syncs=20"] if self._client_qps else []
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *common,
                f"--secure-port={free_port()}",
                f"--cert-dir={work / 'kcm-certs'}",
                "--controllers=*",
                f"--service-account-private-key-file={pki.sa_private_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                # kwok's heartbeat stage reports every 20-45 s; leave room before "NotReady".
                "--node-monitor-grace-period=2m",
                *kcm_workers,
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                *common,
                f"--secure-port={free_port()}",
                f"--cert-dir={work / 'scheduler-certs'}",
            ],
        )
        kwok = self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={admin}",
                f"--config={write_kwok_config(self.workdir)}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=" + "=".join(KWOK_NODE_ANNOTATION),
                f"--cidr={POD_CIDR}",
            ],
        )
        everything = [etcd, apiserver, kcm, scheduler, kwok]
        names = [f"kwok-node-{i}" for i in range(self._nodes)]
        for name in names:
            api.post("/api/v1/nodes", node_object(name, self._node_resources))
        for name in names:
            wait_until(
                lambda n=name: node_schedulable(api, n),  # type: ignore[misc]
                timeout=timeout,
                what=f"Node {name} Ready and untainted",
                watch=everything,
            )
        wait_until(
            lambda: api.status("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout=timeout,
            what="the default ServiceAccount",
            watch=everything,
        )
        self._readiness = PodReadiness(self.kubeconfig).start()

    # ----------------------------------------------------------------- helpers

    def kubectl(
        self,
        *args: str,
        input_text: str | None = None,
        kubeconfig: Path | str | None = None,
        timeout: float = 120.0,
    ) -> str:
        """Run the bundled kubectl (admin identity unless `kubeconfig` is given)."""
        config = str(kubeconfig or self.kubeconfig)
        return run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={config}", *args],
            input_text=input_text,
            timeout=timeout,
        )

    def apply_yaml(self, source: Path | str, *, kubeconfig: Path | str | None = None) -> str:
        """Server-side apply a file, a directory, or YAML text."""
        if isinstance(source, Path) or ("\n" not in source and Path(source).exists()):
            return self.kubectl(*_APPLY, "-f", str(source), kubeconfig=kubeconfig)
        return self.kubectl(*_APPLY, "-f", "-", input_text=source, kubeconfig=kubeconfig)

    def _raw_api(self) -> RawApi:
        return RawApi(self.server, self._admin_token, self.ca_file)

    def wait_crd_established(self, name: str, timeout: float = 30.0) -> None:
        api = self._raw_api()
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        wait_until(
            lambda: condition_true(api.get(path), "Established"),
            timeout=timeout,
            what=f"CRD {name} Established",
            watch=self._procs,
        )

    def apply_crds(self, files: Iterable[Path]) -> list[str]:
        """Apply CRD files and wait until every CRD in them is Established."""
        paths = sorted(files)
        names: list[str] = []
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        files_args = [arg for path in paths for arg in ("-f", str(path))]
        self.kubectl(*_APPLY, *files_args)
        for name in names:
            self.wait_crd_established(name)
        return names

    def install_gateway_api_crds(self) -> list[str]:
        """Gateway API standard channel CRDs at GATEWAY_API_VERSION; returns the CRD names."""
        crd_dir = (
            go_module_dir(GATEWAY_API_MODULE, GATEWAY_API_VERSION) / "config" / "crd" / "standard"
        )
        files = list(crd_dir.glob("*.yaml"))
        if not files:
            raise RuntimeError(f"no CRDs under {crd_dir}")
        return self.apply_crds(files)

    def install_inference_extension_crds(self) -> list[str]:
        """The Gateway API Inference Extension's CRDs (InferencePool v1, InferenceModelRewrite
        and the other alphas) at INFERENCE_EXTENSION_VERSION; returns the CRD names."""
        crd_dir = go_module_dir(INFERENCE_EXTENSION_MODULE, INFERENCE_EXTENSION_VERSION) / "config" / "crd" / "bases"
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            raise RuntimeError(f"no CRDs under {crd_dir}")
        return self.apply_crds(files)

    def operator_kubeconfig(
        self, namespace: str = "kanaria-system", service_account: str = "kanaria-operator"
    ) -> Path:
        """Apply manifests/base/namespace.yaml and manifests/base/rbac.yaml, then write a kubeconfig
        holding a TokenRequest token of that ServiceAccount: its rights come only from RBAC."""
        manifests = repo_root() / "manifests" / "base"
        self.apply_yaml(manifests / "namespace.yaml")
        self.apply_yaml(manifests / "rbac.yaml")
        return self.service_account_kubeconfig(namespace, service_account)

    def service_account_kubeconfig(self, namespace: str, service_account: str) -> Path:
        """A kubeconfig holding a 24 h TokenRequest token of an existing (or soon existing)
        ServiceAccount, whatever installed it (manifests/, the Helm chart): whoever uses it
        has exactly the rights RBAC gives that ServiceAccount."""
        api = self._raw_api()
        sa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}"
        wait_until(
            lambda: api.status(sa_path)[0] == 200,
            timeout=30,
            what=f"ServiceAccount {namespace}/{service_account}",
        )
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, "--duration=24h"
        ).strip()
        path = self.workdir / f"{namespace}.{service_account}.kubeconfig"
        write_kubeconfig(
            path,
            self.server,
            self.ca_file,
            f"system:serviceaccount:{namespace}:{service_account}",
            token,
            namespace=namespace,
        )
        return path

    def restart_apiserver(self, timeout: float = 60.0) -> float:
        """Stop kube-apiserver (SIGTERM) and start it again with the same flags and port, so
        every client's watch stream is cut; returns the seconds it was away."""
        proc = next(p for p in self._procs if p.name == "kube-apiserver")
        started = time.monotonic()
        proc.stop(self._stop_timeout)
        proc.start()
        api = self._raw_api()
        wait_until(
            lambda: api.status("/readyz")[0] == 200,
            timeout=timeout,
            what="kube-apiserver /readyz after a restart",
            watch=[proc],
        )
        return time.monotonic() - started


def _etcd_healthy(url: str) -> bool:
    code, body = http_get(url + "/health", timeout=2)
    return code == 200 and b'"true"' in body


# --------------------------------------------------------------------- CLI


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kanaria.sandbox.cluster",
        description="Run a local Kubernetes control plane.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster and keep it until Ctrl-C")
    up.add_argument("--nodes", type=int, default=1, help="fake kwok nodes (default 1)")
    up.add_argument(
        "--no-gateway-api", action="store_true", help="do not install the Gateway API CRDs"
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)  # also when started with SIGINT ignored
    started = time.monotonic()
    cluster = LocalCluster(nodes=args.nodes)
    try:
        cluster.start()
        if not args.no_gateway_api:
            cluster.install_gateway_api_crds()
            cluster.install_inference_extension_crds()
        print(
            f"# cluster up in {time.monotonic() - started:.1f}s; logs in "
            f"{cluster.workdir / 'logs'}",
            file=sys.stderr,
        )
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print("# Ctrl-C stops it and removes the temp dir", file=sys.stderr, flush=True)
        while True:
            cluster.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\n# stopping", file=sys.stderr)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
