"""The load generator through the real HAProxy: counts per revision, labels reach home, drift."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers import metric_sum, wait_for

from kanaria.sandbox.loadgen import Drift, LoadGenerator, main
from kanaria.sandbox.modelserver import ModelServer, ServerConfig
from kanaria.sandbox.proxy import HAProxyProxy
from kanaria.sandbox.train import train_revision

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="needs haproxy")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HAProxyProxy, dict[str, ModelServer]]]:
    root: Path = tmp_path_factory.mktemp("loadgen")
    good = train_revision("breast_cancer", "v1", root / "v1")
    noisy = train_revision("breast_cancer", "v2", root / "v2", label_noise=0.3)
    servers = {
        "stable": ModelServer(ServerConfig(f"file://{good}", "bc", "stable")).start(),
        "canary": ModelServer(ServerConfig(f"file://{noisy}", "bc", "canary")).start(),
    }
    proxy = HAProxyProxy({rev: ("127.0.0.1", s.port) for rev, s in servers.items()}, {"stable": 70, "canary": 30})
    try:
        proxy.start()
        yield proxy, servers
    finally:
        proxy.stop()
        for server in servers.values():
            server.stop()


def _value(server: ModelServer, name: str, **labels: str) -> float:
    return metric_sum(httpx.get(f"{server.url}/metrics", timeout=10).text, name, **labels)


def test_loadgen_through_proxy_credits_labels_to_the_serving_revision(
    stack: tuple[HAProxyProxy, dict[str, ModelServer]],
) -> None:
    proxy, servers = stack
    before = {rev: _value(s, "kanaria_model_labels_total") for rev, s in servers.items()}
    gen = LoadGenerator(proxy.url, "breast_cancer", rate=400, total=300, feedback_delay_s=0.3, seed=1)
    stats = gen.run()
    assert stats.sent == stats.ok == 300
    assert sum(stats.by_revision.values()) == 300
    assert abs(stats.by_revision["canary"] - 90) <= 4  # roundrobin 70/30
    assert stats.feedback_sent == stats.feedback_accepted == 300
    for rev, server in servers.items():
        labelled = _value(server, "kanaria_model_labels_total") - before[rev]
        assert labelled == stats.by_revision[rev]
    # The noisy canary really is less accurate on the labels it received.
    acc = {rev: stats.correct_by_revision[rev] / stats.by_revision[rev] for rev in servers}
    assert acc["stable"] - acc["canary"] >= 0.1, acc
    assert _value(servers["canary"], "kanaria_model_labels_total", outcome="correct") >= stats.correct_by_revision["canary"]


def test_loadgen_input_drift_moves_the_feature_histogram(
    stack: tuple[HAProxyProxy, dict[str, ModelServer]],
) -> None:
    proxy, servers = stack
    feature = "mean radius"
    edges = servers["stable"].artifact.profile.feature_edges[0]
    top = repr(edges[-1])

    def tail() -> float:  # observations above the last decile, both revisions
        return sum(
            _value(s, "kanaria_model_feature_count", feature=feature)
            - _value(s, "kanaria_model_feature_bucket", feature=feature, le=top)
            for s in servers.values()
        )

    before = tail()
    stats = LoadGenerator(
        proxy.url, "breast_cancer", rate=500, total=100, feedback=False, drift=Drift(feature, 5.0, 1.0)
    ).run()
    assert stats.drifted == 100 and stats.feedback_sent == 0
    assert tail() - before == 100


def test_loadgen_stops_by_itself_and_on_request(stack: tuple[HAProxyProxy, dict[str, ModelServer]]) -> None:
    proxy, _ = stack
    # A duration bounds the run: it returns by itself, having sent no more than the rate allows.
    stats = LoadGenerator(proxy.url, "breast_cancer", rate=50, duration=0.5, feedback=False).run()
    assert stats.sent <= 26
    gen = LoadGenerator(proxy.url, "breast_cancer", rate=20, duration=60).start()
    wait_for(lambda: gen.stats().ok >= 3, 10, interval=0.02, message="three answered requests")
    gen.stop()
    assert gen.join(timeout=10)
    assert not gen.running and gen.stats().ok >= 3


def test_loadgen_refuses_unbounded_or_remote_runs() -> None:
    with pytest.raises(ValueError):
        LoadGenerator("http://127.0.0.1:1", "iris")
    with pytest.raises(ValueError):
        LoadGenerator("http://10.0.0.1:80", "iris", total=1)
    with pytest.raises(ValueError):
        LoadGenerator("http://127.0.0.1:1", "iris", total=1, rate=0)


def test_loadgen_cli_prints_stats(
    stack: tuple[HAProxyProxy, dict[str, ModelServer]], capsys: pytest.CaptureFixture[str]
) -> None:
    proxy, _ = stack
    argv = ["--url", proxy.url, "--dataset", "breast_cancer", "--total", "20", "--rate", "200",
            "--feedback-delay", "0.05", "--drift-feature", "0", "--drift-sd", "2", "--drift-fraction", "0.5"]
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["sent"] == stats["ok"] == stats["feedback_accepted"] == 20
    assert 0 < stats["drifted"] < 20
