"""A real Prometheus (Debian's /usr/bin/prometheus) on a free 127.0.0.1 port, for tests.

    with LocalPrometheus([ScrapeTarget("127.0.0.1:8000", {"revision": "a"})]) as prom:
        prom.wait_for('up{revision="a"}', lambda r: bool(r) and r[0]["value"][1] == "1")

``stop()`` then ``start()`` brings it back on the same port with the same TSDB, so a test can
simulate an outage.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kanaria.sandbox._proc import (
    ManagedProcess,
    Running,
    StartupError,
    free_port,
    http_get,
    wait_until,
)

PROMETHEUS_BIN = "/usr/bin/prometheus"


@dataclass(frozen=True)
class ScrapeTarget:
    """One static target (host:port) and the labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    job: str = "test"
    metrics_path: str = "/metrics"


def scrape_config(
    targets: Sequence[ScrapeTarget] = (),
    *,
    file_sd: Sequence[Path] = (),
    interval: str = "1s",
    evaluation_interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """Build a prometheus.yml document: one job per (job name, metrics path) of the static
    targets, plus a `file_sd` job reading the given target files."""
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for target in targets:
        group = {"targets": [target.address], "labels": dict(target.labels)}
        jobs.setdefault((target.job, target.metrics_path), []).append(group)
    scrape_configs: list[dict[str, Any]] = [
        {
            "job_name": job if path == "/metrics" else f"{job}{path}",
            "metrics_path": path,
            "static_configs": groups,
        }
        for (job, path), groups in jobs.items()
    ]
    if file_sd:
        scrape_configs.append(
            {
                "job_name": "file_sd",
                # absolute: Prometheus resolves relative paths against its own directory
                "file_sd_configs": [{"files": [str(Path(p).resolve()) for p in file_sd], "refresh_interval": "1s"}],
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape_configs,
    }


ConfigLike = Mapping[str, Any] | Sequence[ScrapeTarget]


class PrometheusError(RuntimeError):
    """Prometheus answered a query with an error."""


class LocalPrometheus(Running):
    """Prometheus with storage in a temp dir and ``--web.enable-lifecycle``.

    `config` is either a full prometheus.yml mapping or a list of ScrapeTargets.
    """

    def __init__(
        self,
        config: ConfigLike = (),
        *,
        binary: str | Path = PROMETHEUS_BIN,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._binary = Path(binary)
        self._config = _as_config(config)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._workdir: Path | None = None
        self._port: int | None = None
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("Prometheus was never started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("Prometheus was never started")
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def pids(self) -> dict[str, int]:
        pid = self._proc.pid if self._proc is not None and self._proc.alive() else None
        return {} if pid is None else {"prometheus": pid}

    def running(self) -> bool:
        return self._proc is not None and self._proc.alive()

    # ----------------------------------------------------------------- lifecycle


    def start(self) -> None:
        """Start (or restart after ``stop()``, on the same port and data) and wait until ready."""
        if self.running():
            raise RuntimeError("Prometheus is already running")
        if not os.access(self._binary, os.X_OK):
            raise StartupError(f"{self._binary} is missing (apt-get install prometheus)")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="kanaria-prometheus-"))
            self._port = free_port()
            atexit.register(self.close)
            self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False))
        self._proc = ManagedProcess(
            name="prometheus",
            argv=[
                str(self._binary),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            log_path=self.workdir / "prometheus.log",
            cwd=self.workdir,
        )
        try:
            self._proc.start()
            wait_until(
                lambda: http_get(self.url + "/-/ready", timeout=2)[0] == 200,
                timeout=self._start_timeout,
                what="Prometheus /-/ready",
                watch=[self._proc],
            )
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        """Stop the process but keep port and data, so ``start()`` can bring it back."""
        if self._proc is not None:
            self._proc.stop(self._stop_timeout)
            self._proc = None

    def close(self) -> None:
        """Stop and remove the temp dir (idempotent)."""
        atexit.unregister(self.close)
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def reload(self, config: ConfigLike) -> None:
        """Write a new configuration and ask Prometheus to reload it (POST /-/reload)."""
        self._config = _as_config(config)
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False))
        request = urllib.request.Request(self.url + "/-/reload", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise PrometheusError(f"reload answered HTTP {response.status}")

    # ----------------------------------------------------------------- queries

    def query(self, promql: str, at: float | None = None) -> Any:
        """Instant query; returns ``data.result`` (a list of {metric, value} for vectors)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        code, body = http_get(
            f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10
        )
        payload = json.loads(body)
        if code != 200 or payload.get("status") != "success":
            raise PrometheusError(
                f"query {promql!r} failed (HTTP {code}): {payload.get('error', body[:500])}"
            )
        return payload["data"]["result"]

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[Any], bool],
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> Any:
        """Poll a query until `predicate(result)` holds; return that result."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = self.query(promql)
            if predicate(last):
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"after {timeout}s, {promql!r} still gives {last!r}")
            time.sleep(interval)

    def scalar(self, promql: str) -> float | None:
        """The value of a query that yields one sample (None when it yields nothing)."""
        result = self.query(promql)
        if isinstance(result, list):
            if not result:
                return None
            if len(result) > 1:
                raise PrometheusError(f"{promql!r} gave {len(result)} series, expected one")
            return float(result[0]["value"][1])
        return float(result[1])  # resultType scalar: [time, "value"]


def _as_config(config: ConfigLike) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    return scrape_config(list(config))
