"""nginx really mirrors live traffic to a shadow, whose answers never reach the client.

Real at every hop: client -> nginx (MirrorProxy) -> HAProxy -> stable model-server process,
and nginx -> shadow model-server process for the mirrored copies. The shadow is trained with
label noise, so it disagrees with the stable revision on a measurable share of requests.
"""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import metric_sum, wait_for

from kanaria.sandbox._proc import processes_in_group
from kanaria.sandbox.httproute import mirror_from_httproute
from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.mirror import (
    NGINX_BIN,
    MirrorFollower,
    MirrorProxy,
)
from kanaria.sandbox.modelserver import ModelServerProcess
from kanaria.sandbox.proxy import HAPROXY_BIN, SERVER_HEADER, HAProxyProxy
from kanaria.sandbox.route_sync import HTTPRouteSync
from kanaria.sandbox.train import load_artifact, load_split, train_revision

needs_binaries = pytest.mark.skipif(
    not (os.path.exists(NGINX_BIN) and os.path.exists(HAPROXY_BIN)), reason="needs nginx and haproxy"
)

DATASET = "breast_cancer"


# -- pure: the route's mirror target ---------------------------------------------------------


def _route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"rules": list(rules)}}


def _mirror_rule(mirror: dict[str, Any]) -> dict[str, Any]:
    return {
        "backendRefs": [{"name": "m-stable", "port": 8080, "weight": 100}],
        "filters": [{"type": "RequestMirror", "requestMirror": mirror}],
    }


def test_mirror_from_httproute_reads_percent_fraction_and_default() -> None:
    ref = {"name": "m-shadow", "port": 8080}
    assert mirror_from_httproute(_route(_mirror_rule({"backendRef": ref, "percent": 25}))) == ("m-shadow", 25)
    assert mirror_from_httproute(_route(_mirror_rule({"backendRef": ref}))) == ("m-shadow", 100)
    fraction = {"backendRef": ref, "fraction": {"numerator": 1, "denominator": 8}}
    assert mirror_from_httproute(_route(_mirror_rule(fraction))) == ("m-shadow", 12.5)
    no_denominator = {"backendRef": ref, "fraction": {"numerator": 7}}
    assert mirror_from_httproute(_route(_mirror_rule(no_denominator))) == ("m-shadow", 7)
    assert mirror_from_httproute(_route(_mirror_rule({"backendRef": ref, "percent": 0}))) == ("m-shadow", 0)


def test_mirror_from_httproute_without_a_mirror_or_with_another_kind() -> None:
    plain = {"backendRefs": [{"name": "m-stable", "port": 8080, "weight": 100}]}
    assert mirror_from_httproute(_route(plain)) is None
    assert mirror_from_httproute({}) is None
    assert mirror_from_httproute({"spec": {"rules": None}}) is None
    header_filter = {
        "backendRefs": [{"name": "m-stable"}],
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": []}}],
    }
    assert mirror_from_httproute(_route(header_filter)) is None
    other_kind = {"backendRef": {"name": "bucket", "group": "example.io", "kind": "Bucket"}}
    assert mirror_from_httproute(_route(_mirror_rule(other_kind))) is None
    # The first rule carrying a mirror wins; rules without one are skipped.
    first = _mirror_rule({"backendRef": {"name": "m-a"}, "percent": 10})
    second = _mirror_rule({"backendRef": {"name": "m-b"}, "percent": 90})
    assert mirror_from_httproute(_route(plain, first, second)) == ("m-a", 10)
    with pytest.raises(ValueError):
        mirror_from_httproute(
            _route(_mirror_rule({"backendRef": {"name": "x"}, "fraction": {"numerator": 1, "denominator": -1}}))
        )


# -- the real chain ---------------------------------------------------------------------------


class Chain:
    """Stable and shadow model-server processes, HAProxy in front of the stable one."""

    def __init__(self, stable: ModelServerProcess, shadow: ModelServerProcess, proxy: HAProxyProxy, shadow_art: Path):
        self.stable = stable
        self.shadow = shadow
        self.proxy = proxy
        self.shadow_model = load_artifact(str(shadow_art))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    if not (os.path.exists(NGINX_BIN) and os.path.exists(HAPROXY_BIN)):
        pytest.skip("needs nginx and haproxy")
    root = tmp_path_factory.mktemp("mirror")
    good = train_revision(DATASET, "v1", root / "v1")
    noisy = train_revision(DATASET, "v2", root / "v2", label_noise=0.3)
    procs: dict[str, ModelServerProcess] = {}

    def launch(rev: str, art: Path) -> None:
        env = {"KANARIA_MODEL_URI": str(art), "KANARIA_MODEL_NAME": "bc", "KANARIA_REVISION": rev}
        procs[rev] = ModelServerProcess(env, enable_faults=True)  # the shadow is made to fail

    proxy: HAProxyProxy | None = None
    try:
        with ThreadPoolExecutor(2) as pool:  # start both at once: each takes seconds to import
            list(pool.map(launch, ("stable", "shadow"), (good, noisy)))
        proxy = HAProxyProxy({"stable": ("127.0.0.1", procs["stable"].port)}, {"stable": 100}).start()
        yield Chain(procs["stable"], procs["shadow"], proxy, noisy)
    finally:
        if proxy is not None:
            proxy.stop()
        for proc in procs.values():
            proc.stop()


def _metric(server: ModelServerProcess, name: str, **labels: str) -> float:
    """The sum of one metric's samples matching ``labels``, read from the server now."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:  # no TLS set-up
        text = response.read().decode()
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(name))
    return metric_sum(wanted, name, **labels)


def _binomial_ok(observed: float, n: int, p: float, z: float = 4.0) -> bool:
    return abs(observed - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def _predict(client: httpx.Client, row: list[float], rid: str) -> httpx.Response:
    response = client.post("/predict", json={"features": row, "request_id": rid}, headers={"X-Request-Id": rid})
    assert response.status_code == 200, response.text
    return response


@needs_binaries
def test_shadow_gets_a_copy_of_every_request_and_counts_agreement(chain: Chain) -> None:
    split = load_split(DATASET)
    rows = [list(map(float, r)) for r in split.X_test[:150]]
    labels = [split.classes[int(y)] for y in split.y_test[:150]]
    shadow_own, _ = chain.shadow_model.predict(rows)
    before = {
        "shadow_requests": _metric(chain.shadow, "kanaria_model_requests_total"),
        "shadow_agree": _metric(chain.shadow, "kanaria_model_agreement_total", outcome="agree"),
        "shadow_disagree": _metric(chain.shadow, "kanaria_model_agreement_total", outcome="disagree"),
        "stable_agree": _metric(chain.stable, "kanaria_model_agreement_total", outcome="agree"),
        "stable_disagree": _metric(chain.stable, "kanaria_model_agreement_total", outcome="disagree"),
    }
    with MirrorProxy(chain.proxy.url) as mirror, httpx.Client(base_url=mirror.url, timeout=10) as client:
        assert mirror.state() == {"generation": 1, "target": None, "percent": 0.0, "pin": None}
        mirror.set_mirror("127.0.0.1", chain.shadow.port, 100)
        assert mirror.state()["target"] == f"127.0.0.1:{chain.shadow.port}"
        served: list[str] = []
        for i, row in enumerate(rows):
            response = _predict(client, row, f"agree-{i}")
            body = response.json()
            # Answered by the stable revision, never by the shadow.
            assert body["revision"] == "stable" and response.headers["X-Kanaria-Revision"] == "stable"
            assert response.headers[SERVER_HEADER] == "stable"
            served.append(body["prediction"])
        wait_for(
            lambda: _metric(chain.shadow, "kanaria_model_requests_total") - before["shadow_requests"] == len(rows),
            15, interval=0.05, message="the shadow to receive a copy of every prediction",
        )
        for i, (label, prediction) in enumerate(zip(labels, served, strict=True)):
            rid = f"agree-{i}"
            fb = client.post(
                "/feedback",
                json={"request_id": rid, "label": label, "served_prediction": prediction},
                headers={SERVER_HEADER: "stable", "X-Request-Id": rid},
            )
            assert fb.status_code == 200 and fb.json()["revision"] == "stable" and fb.json()["accepted"] is True

        expected_disagree = sum(own != srv for own, srv in zip(shadow_own, served, strict=True))
        assert 0 < expected_disagree < len(rows)  # the noisy shadow really disagrees sometimes

        def shadow_counted() -> bool:
            agree = _metric(chain.shadow, "kanaria_model_agreement_total", outcome="agree") - before["shadow_agree"]
            disagree = _metric(chain.shadow, "kanaria_model_agreement_total", outcome="disagree") - before["shadow_disagree"]
            return agree + disagree == len(rows)

        wait_for(shadow_counted, 15, interval=0.05, message="the shadow to count agreement for every mirrored label")
        disagree = _metric(chain.shadow, "kanaria_model_agreement_total", outcome="disagree") - before["shadow_disagree"]
        assert disagree == expected_disagree
        # On the revision that served the prediction agreement is trivial.
        assert _metric(chain.stable, "kanaria_model_agreement_total", outcome="agree") - before["stable_agree"] == len(rows)
        assert _metric(chain.stable, "kanaria_model_agreement_total", outcome="disagree") == before["stable_disagree"]
        assert _metric(chain.shadow, "kanaria_model_feedback_dropped_total", reason="unknown") == 0
        pid = mirror.pid
    assert pid is not None
    assert processes_in_group(pid) == []


@needs_binaries
def test_partial_mirror_share_clear_and_no_process_left(chain: Chain) -> None:
    rows = [list(map(float, r)) for r in load_split(DATASET).X_test]
    percent, n = 30, 400
    with MirrorProxy(chain.proxy.url) as mirror, httpx.Client(base_url=mirror.url, timeout=10) as client:
        mirror.set_mirror("127.0.0.1", chain.shadow.port, percent)
        assert mirror.state()["percent"] == percent
        start = _metric(chain.shadow, "kanaria_model_requests_total")
        stable_start = _metric(chain.stable, "kanaria_model_requests_total")
        for i in range(n):
            _predict(client, rows[i % len(rows)], f"part-{i}")
        # The last copies may still be in flight: wait until the count stops moving.
        seen: list[float] = []

        def settled() -> bool:
            seen.append(_metric(chain.shadow, "kanaria_model_requests_total") - start)
            return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

        wait_for(settled, 15, interval=0.05, message="the mirrored count to settle")
        mirrored = seen[-1]
        print(f"mirrored {mirrored:.0f} of {n} at {percent}% ({100 * mirrored / n:.1f}%)")
        assert _binomial_ok(mirrored, n, percent / 100), mirrored
        assert _metric(chain.stable, "kanaria_model_requests_total") - stable_start == n

        # clear_mirror: nothing more is copied. Barrier: mirror again and wait for exactly one.
        mirror.clear_mirror()
        assert mirror.state()["target"] is None and mirror.target is None
        before_clear = _metric(chain.shadow, "kanaria_model_requests_total")
        for i in range(100):
            _predict(client, rows[i % len(rows)], f"off-{i}")
        mirror.set_mirror("127.0.0.1", chain.shadow.port, 100)
        _predict(client, rows[0], "barrier")
        wait_for(
            lambda: _metric(chain.shadow, "kanaria_model_requests_total") >= before_clear + 1,
            15, interval=0.05, message="the barrier request to be mirrored",
        )
        assert _metric(chain.shadow, "kanaria_model_requests_total") == before_clear + 1
        pid = mirror.pid
        workdir = mirror._dir
    assert pid is not None and workdir is not None
    assert processes_in_group(pid) == []
    assert not workdir.exists()


@needs_binaries
def test_shadow_errors_never_reach_clients_and_loadgen_labels_follow_the_mirror(chain: Chain) -> None:
    shadow_faults = f"{chain.shadow.url}/admin/faults"
    with MirrorProxy(chain.proxy.url) as mirror:
        mirror.set_mirror("127.0.0.1", chain.shadow.port, 50)
        try:
            httpx.post(shadow_faults, json={"error_rate": 1.0}, timeout=5).raise_for_status()
            errors = _metric(chain.shadow, "kanaria_model_errors_total")
            requests = _metric(chain.shadow, "kanaria_model_requests_total")
            dropped0 = _metric(chain.shadow, "kanaria_model_feedback_dropped_total", reason="unknown")
            gen = LoadGenerator(mirror.url, DATASET, rate=500, total=200, feedback_delay_s=0.2, seed=3)
            stats = gen.run()
        finally:
            httpx.post(shadow_faults, json={"error_rate": 0.0}, timeout=5)
        assert stats.sent == stats.ok == 200 and stats.errors == stats.failed == 0
        assert stats.by_revision == {"stable": 200}
        assert stats.feedback_accepted == 200
        # Mirror copies (of predictions and of labels) are asynchronous: wait until every copy
        # has arrived, that is until the counts agree and stay put between two reads. The shadow
        # failed every mirrored request and kept none of them, so each of their labels is
        # dropped as unknown.
        seen: list[tuple[float, float, float]] = []

        # Mirroring is best effort (nginx's mirror subrequest, like a mesh's): on a loaded machine
        # a copy can be lost, so a few labels may never arrive; wait until nothing moves.
        def settled() -> bool:
            now = (
                _metric(chain.shadow, "kanaria_model_requests_total") - requests,
                _metric(chain.shadow, "kanaria_model_errors_total") - errors,
                _metric(chain.shadow, "kanaria_model_feedback_dropped_total", reason="unknown") - dropped0,
            )
            seen.append(now)
            return now[0] > 0 and now[0] == now[1] and now[2] >= now[0] - max(1.0, 0.02 * now[0]) \
                and seen[-4:] == [now] * 4

        wait_for(settled, 30, interval=0.25,
                 message=lambda: f"every mirrored request to fail and its label to be dropped; last {seen[-1:]}")
        copies = seen[-1][0]
        assert _binomial_ok(copies, 200, 0.5)
        assert seen[-1][2] <= copies + max(1.0, 0.02 * copies)  # no label without its prediction, but rarely

        # Healthy again, through the load generator: labels carry the served prediction and
        # reach the shadow exactly for the requests it saw (picked by the same request id).
        agreed = {o: _metric(chain.shadow, "kanaria_model_agreement_total", outcome=o) for o in ("agree", "disagree")}
        requests = _metric(chain.shadow, "kanaria_model_requests_total")
        dropped = _metric(chain.shadow, "kanaria_model_feedback_dropped_total", reason="unknown")
        # Labels come a second after their predictions here: the mirror copies each request
        # asynchronously, and on a loaded machine a label sent 0.2 s later could overtake the
        # copy of its own prediction and be dropped as unknown.
        stats = LoadGenerator(mirror.url, DATASET, rate=500, total=200, feedback_delay_s=1.0, seed=4).run()
        assert stats.by_revision == {"stable": 200} and stats.feedback_accepted == 200

        counts: list[tuple[float, float]] = []

        def labels_match_mirrored() -> bool:
            copies = _metric(chain.shadow, "kanaria_model_requests_total") - requests
            counted = sum(
                _metric(chain.shadow, "kanaria_model_agreement_total", outcome=o) - agreed[o] for o in agreed
            )
            counts.append((copies, counted))
            # Every mirrored prediction's label, but for a rare lost copy of a label (at most 2%),
            # once nothing moves any more.
            return copies > 0 and copies - max(1.0, 0.02 * copies) <= counted <= copies and counts[-4:] == [
                (copies, counted)] * 4

        wait_for(labels_match_mirrored, 30, interval=0.25,
                 message=lambda: f"every mirrored prediction's label to reach the shadow; last {counts[-1:]}")
        # A label for a request the shadow never saw is dropped as unknown. Mirroring is best
        # effort (nginx's mirror subrequest, like a mesh's): on a loaded machine a prediction's
        # copy can be lost while its label's copy arrives. Allow that rarely, never often.
        copies = _metric(chain.shadow, "kanaria_model_requests_total") - requests
        extra = _metric(chain.shadow, "kanaria_model_feedback_dropped_total", reason="unknown") - dropped
        assert extra <= max(1.0, 0.02 * copies), (extra, copies)
        assert _metric(chain.shadow, "kanaria_model_agreement_total", outcome="disagree") > agreed["disagree"]


class _NoEvents:
    """A watch that ends at once: the sync lists the route again shortly after."""

    def stream(self, *_: object, **__: object) -> Iterator[bytes]:
        yield from ()

    def close(self) -> None:
        return None

    def release_conn(self) -> None:
        return None


class _FakeRoutes:
    """The CustomObjectsApi calls HTTPRouteSync makes (a list, a watch), over one route."""

    def __init__(self) -> None:
        self.route: dict[str, Any] | None = None

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, **kwargs: Any) -> Any:
        assert (group, plural, namespace, kwargs["field_selector"]) == (
            "gateway.networking.k8s.io", "httproutes", "models", "metadata.name=bc"
        )
        if kwargs.get("watch"):
            return _NoEvents()
        return {"items": [] if self.route is None else [self.route], "metadata": {"resourceVersion": "1"}}


@needs_binaries
def test_httproute_mirror_sync_follows_the_route(chain: Chain) -> None:
    routes = _FakeRoutes()
    addresses = {"bc-shadow": ("127.0.0.1", chain.shadow.port)}

    def resolve(service: str) -> tuple[str, int]:
        return addresses[service]

    with MirrorProxy(chain.proxy.url) as mirror:
        follower = MirrorFollower(mirror, resolve)
        with HTTPRouteSync("bc", "models", [follower], api=routes, watch_timeout_seconds=1, retry_seconds=0.05) as sync:
            routes.route = _route(_mirror_rule({"backendRef": {"name": "bc-shadow", "port": 8080}, "fraction": {"numerator": 1, "denominator": 8}}))
            wait_for(lambda: follower.applied == ("bc-shadow", 12.5), 15, interval=0.05, message="the mirror to follow the route")
            assert mirror.state()["percent"] == 12.5
            assert mirror.state()["target"] == f"127.0.0.1:{chain.shadow.port}"
            routes.route = _route(_mirror_rule({"backendRef": {"name": "bc-unknown"}}))
            wait_for(lambda: sync.last_error is not None and "bc-unknown" in sync.last_error, 15, interval=0.05, message="an unresolvable Service to be reported")
            assert mirror.state()["percent"] == 12.5  # unchanged until it resolves
            routes.route = _route({"backendRefs": [{"name": "bc-stable", "weight": 100}]})
            wait_for(lambda: mirror.state()["target"] is None, 15, interval=0.05, message="a route without a mirror to clear it")
            routes.route = _route(_mirror_rule({"backendRef": {"name": "bc-shadow"}}))
            wait_for(lambda: mirror.state()["percent"] == 100, 15, interval=0.05, message="the mirror to come back")
            routes.route = None
            wait_for(lambda: mirror.state()["target"] is None, 15, interval=0.05, message="a deleted route to clear the mirror")


def test_pin_sends_the_matching_group_to_one_server_and_keeps_feedback_sticky() -> None:
    """nginx sets X-Kanaria-Server on requests that match every condition (an A/B test by
    header or cookie), unless the client already names a server (feedback stickiness)."""
    import http.server
    import threading
    import urllib.request

    from kanaria.api.routing import cookie_pattern
    from kanaria.sandbox.mirror import Pin

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.headers.get("X-Kanaria-Server", "-").encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with MirrorProxy(f"http://127.0.0.1:{upstream.server_port}") as mirror:
            mirror.set_pin(Pin("m-r2", (("x-tier", "be.ta", False), ("cookie", cookie_pattern("ab-g", "b.1"), True))))
            assert mirror.state()["pin"] == "m-r2"

            def server_for(headers: dict[str, str]) -> str:
                request = urllib.request.Request(mirror.url + "/predict-get", headers=headers)
                with urllib.request.urlopen(request, timeout=5) as response:
                    return str(response.read().decode())

            both = {"X-Tier": "be.ta", "Cookie": "x=1; ab-g=b.1; y=2"}
            assert server_for(both) == "m-r2"
            assert server_for({"X-Tier": "be.ta"}) == "-"  # every condition must hold
            assert server_for({"X-Tier": "beXta", "Cookie": "ab-g=b.1"}) == "-"  # exact, not a pattern
            assert server_for({"X-Tier": "be.ta", "Cookie": "ab-g=b.12"}) == "-"
            assert server_for({**both, "X-Kanaria-Server": "m-r1"}) == "m-r1"  # feedback stays sticky
            mirror.set_pin(None)
            assert server_for(both) == "-"
    finally:
        upstream.shutdown()
