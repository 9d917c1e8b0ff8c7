"""Shared fixtures. Nothing here starts a program unless a test asks for its fixture, so the
unit tests run without any of the test bed's binaries."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from tests.helpers import fresh_namespace

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from kanaria.sandbox.cluster import LocalCluster
    from kanaria.sandbox.exporter import MetricsExporter
    from kanaria.sandbox.prometheus import ConfigLike, LocalPrometheus


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test's report carries what its running operators logged, so a failure in CI
    can be read without the machine it ran on."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when == "teardown":
        return
    from kanaria.sandbox.operator import running_operators

    for op in running_operators():
        report.sections.append((f"operator {op.name}", op.failure_digest()))


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """One real control plane per test session (per pytest-xdist worker), with the Gateway
    API and Inference Extension CRDs installed. Tests share it: give each test its own namespace."""
    from kanaria.sandbox.cluster import LocalCluster

    with LocalCluster() as local:
        local.install_gateway_api_crds()
        local.install_inference_extension_crds()
        yield local


@pytest.fixture(scope="session")
def k8s(cluster: LocalCluster) -> Iterator[ApiClient]:
    """A kubernetes-client ApiClient with the admin identity of `cluster`."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    yield client
    client.close()


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace in the shared cluster, deleted (without waiting) afterwards."""
    with fresh_namespace(cluster) as name:
        yield name


@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    """A /metrics endpoint on a free port whose values the test sets."""
    from kanaria.sandbox.exporter import MetricsExporter

    with MetricsExporter() as exp:
        yield exp


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[[ConfigLike], LocalPrometheus]]:
    """Start real Prometheus servers for this test: ``prometheus_factory([ScrapeTarget(...)])``
    or ``prometheus_factory(full_config_dict)``. All are removed when the test ends."""
    from kanaria.sandbox.prometheus import LocalPrometheus

    started: list[LocalPrometheus] = []

    def start(config: ConfigLike) -> LocalPrometheus:
        prom = LocalPrometheus(config)
        started.append(prom)
        prom.start()
        return prom

    yield start
    for prom in reversed(started):
        prom.close()
