"""Server-side request forgery through spec.analysis.prometheus.address: refused before any
request, also when a name resolves to a forbidden address, a redirect points elsewhere, or the
answer is not Prometheus's (its body never reaches status)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from kanaria.analysis.prometheus import PrometheusProvider
from kanaria.api import ModelDeploymentSpec
from kanaria.api.addresses import address_problem, resolved_problem


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http:///etc/passwd", "has no host"),
        ("http://169.254.169.254/latest/meta-data", "instance-metadata address"),
        ("http://169.254.10.1:9090", "link-local"),
        ("http://[fe80::1]:9090", "link-local"),
        ("http://[fd00:ec2::254]/", "instance-metadata address"),
        ("http://[::ffff:169.254.169.254]/", "instance-metadata address"),
        ("http://100.100.100.200/", "instance-metadata address"),
        ("http://2852039166/", "plain dotted-decimal form"),
        ("http://0xa9fea9fe/", "plain dotted-decimal form"),
        ("http://0251.0376.0251.0376/", "plain dotted-decimal form"),
        ("http://169.254.43518/", "plain dotted-decimal form"),
        ("http://metadata.google.internal/computeMetadata/v1/", "instance-metadata service"),
        ("http://user:secret@prometheus.monitoring:9090", "may not hold credentials"),
        ("http://prometheus.monitoring:9090/?x=1", "query or a fragment"),
        ("http://prometheus.monitoring:9090/a/../../api", "'..'"),
        ("https://kubernetes.default.svc/api/v1/secrets", "Kubernetes API server"),
        ("https://kubernetes.default.svc.cluster.local", "Kubernetes API server"),
        ("http://0.0.0.0:9090", "not a host address"),
        ("http://prometheus.monitoring:99999", "not a valid URL"),
    ],
)
def test_forbidden_addresses_are_refused_with_the_reason(address: str, message: str) -> None:
    problem = address_problem(address)
    assert problem is not None and message in problem, problem


@pytest.mark.parametrize("address", [
    "http://prometheus.monitoring:9090", "https://prom.example.com/prometheus", "http://127.0.0.1:9090",
    "http://10.0.0.7:9090", "http://[2001:db8::1]:9090",
])
def test_ordinary_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


def test_the_api_server_address_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert "Kubernetes API server" in (address_problem("https://10.96.0.1:443/api") or "")


def test_an_allow_list_of_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANARIA_PROMETHEUS_HOSTS", "prometheus.monitoring, .observability.svc.cluster.local")
    assert address_problem("http://prometheus.monitoring:9090") is None
    assert address_problem("http://thanos.observability.svc.cluster.local:9090") is None
    assert "not among the Prometheus hosts" in (address_problem("http://evil.example:9090") or "")


def test_the_spec_is_invalid_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="prometheus.address 169.254.169.254 is an instance-metadata address"):
        ModelDeploymentSpec.model_validate({
            "model": {"name": "m", "version": "v1", "uri": "file:///m"}, "traffic": {"gatewayAPI": {}},
            "analysis": {"prometheus": {"address": "http://169.254.169.254/latest"}}})


def test_a_name_that_resolves_to_a_forbidden_address_is_refused_before_any_request() -> None:
    # The resolver is the machine's own: "localhost" resolves to loopback (allowed); a literal
    # link-local address goes through the same check.
    assert resolved_problem("http://localhost:9090") is None
    assert "link-local" in (resolved_problem("http://169.254.1.1:9090") or "")


class _Server(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        if self.path.startswith("/secret/"):
            body = b"internal-secret-token-1234 and other private things"
            self.send_response(403)
        else:
            body = b'{"status":"error","errorType":"bad_data","error":"parse error at char 3"}'
            self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_redirects_are_not_followed(server: str) -> None:
    result = PrometheusProvider(f"{server}/redirect", timeout=5).query("up")
    assert result.error is not None and "does not follow redirects" in result.error


def test_a_non_prometheus_body_never_reaches_the_error(server: str) -> None:
    result = PrometheusProvider(f"{server}/secret", timeout=5).query("up")
    assert result.error is not None and "HTTP status 403 (not a Prometheus API answer)" in result.error
    assert "secret-token" not in result.error


def test_prometheus_own_error_is_kept(server: str) -> None:
    result = PrometheusProvider(server, timeout=5).query("up")
    assert result.error is not None and "HTTP status 400: bad_data: parse error at char 3" in result.error
