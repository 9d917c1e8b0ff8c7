"""Webhook notifications: both payload shapes reach a real HTTP receiver; a dead, slow or
failing receiver never holds up notify(); retries back off; bad URLs are refused; the URL's
secret parts never reach the logs."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kanaria.api.models import ModelDeploymentStatus
from kanaria.controller.notify import (
    DEFAULT_REASONS,
    Notifier,
    NotifierConfig,
    WebhookConfigError,
    WebhookNotifier,
    notifier_from_env,
    validate_webhook_url,
)
from kanaria.rollout.types import Decision, Event

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ROLLBACK = Event(
    "Warning", "RolledBack", "revision 7f3a (v2) rolled back: critical metric failed: errors fail"
)
SAFETY = 10.0  # upper bound on any wait, so a broken test fails instead of hanging


class Receiver:
    """A webhook receiver on 127.0.0.1: records requests, answers with queued status codes,
    and can hold every response until released."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(SAFETY)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the default writes the path (with its secret) to stderr

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    r = Receiver()
    yield r
    r.close()


class Delays:
    """A stand-in for the backoff sleep: records each delay, never sleeps."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.seen.append(seconds)
        return False


def make(url: str, **kwargs: Any) -> WebhookNotifier:
    wait = kwargs.pop("wait", None)
    return WebhookNotifier(NotifierConfig(url=url, **kwargs), clock=lambda: NOW, wait=wait)


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


# --------------------------------------------------------------------------- payloads


def test_rollback_reaches_the_receiver_in_the_generic_shape(receiver: Receiver) -> None:
    n = make(f"{receiver.url}/hooks/kanaria", format="generic")
    assert n.notify("ml", "iris", ROLLBACK, revision="7f3a", weight=0)
    assert n.flush(SAFETY)
    n.close()
    assert (n.sent, n.failed, n.dropped) == (1, 0, 0)
    [request] = receiver.requests
    assert request["path"] == "/hooks/kanaria"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "event": "RolledBack",
        "type": "Warning",
        "namespace": "ml",
        "name": "iris",
        "message": ROLLBACK.message,
        "revision": "7f3a",
        "weight": 0,
        "at": "2026-01-02T03:04:05Z",
    }


def test_rollback_reaches_the_receiver_in_the_slack_shape(receiver: Receiver) -> None:
    n = make(f"{receiver.url}/services/T0/B0/x", format="slack")
    event = Event("Warning", "RolledBack", "revision 7f3a rolled back: latency <fail> & more")
    assert n.notify("ml", "iris", event, revision="7f3a", weight=10)
    assert n.flush(SAFETY)
    n.close()
    [request] = receiver.requests
    body = request["body"]
    assert body["text"] == "RolledBack ml/iris: revision 7f3a rolled back: latency <fail> & more"
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*RolledBack* ml/iris" in section["text"]["text"]
    assert "latency &lt;fail&gt; &amp; more" in section["text"]["text"]  # Slack markup escaped
    assert "`7f3a`" in context["elements"][0]["text"]
    assert "10%" in context["elements"][0]["text"]


def test_on_decision_sends_each_event_with_the_revision_it_is_about(receiver: Receiver) -> None:
    n = make(receiver.url, format="generic")
    status = ModelDeploymentStatus(
        phase="RolledBack", stable_revision="aaaa", rejected_revision="bbbb", canary_weight=0
    )
    decision = Decision(
        status=status,
        events=[
            Event("Warning", "RolledBack", "revision bbbb (v2) rolled back: x"),
            Event("Normal", "Resumed", "not in the default reasons"),
        ],
    )
    n.on_decision({"metadata": {"namespace": "ml", "name": "iris"}}, decision)
    assert n.flush(SAFETY)
    n.close()
    assert [r["body"]["event"] for r in receiver.requests] == ["RolledBack"]
    assert receiver.requests[0]["body"]["revision"] == "bbbb"
    assert receiver.requests[0]["body"]["weight"] is None


def test_only_configured_reasons_are_sent(receiver: Receiver) -> None:
    n = make(receiver.url, reasons=frozenset({"Promoted"}))
    assert not n.notify("ml", "iris", ROLLBACK)
    assert n.notify("ml", "iris", Event("Normal", "Promoted", "revision b promoted"))
    assert n.flush(SAFETY)
    n.close()
    assert [r["body"]["text"].split()[0] for r in receiver.requests] == ["Promoted"]
    assert {
        "RolloutStarted",
        "StepAdvanced",
        "Promoted",
        "RolledBack",
        "Reverted",
        "Paused",
        "AnalysisFailed",
        "Superseded",
        "Degraded",
        "Drifting",
        "Recovered",
        "RetrainingStarted",
        "RetrainingFailed",
        "CandidateReady",
        "ValidationFailed",
    } == DEFAULT_REASONS


# --------------------------------------------------------------------------- never blocking


def test_unreachable_receiver_does_not_block_and_is_retried() -> None:
    delays = Delays()
    n = make(closed_port_url(), timeout=1.0, wait=delays)
    assert n.notify("ml", "iris", ROLLBACK)
    assert n.flush(SAFETY)
    n.close()
    assert (n.sent, n.failed, n.dropped) == (0, 1, 0)
    assert delays.seen == [0.5, 1.0]  # three attempts, backing off


def test_slow_receiver_does_not_block_notify(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    n = make(receiver.url, timeout=0.3, attempts=1)
    assert n.notify("ml", "iris", ROLLBACK)
    # notify() has returned; the receiver has not even been released yet.
    returned_before_release = not receiver.hold.is_set()
    assert receiver.arrived.wait(SAFETY)  # the request is in flight and being held
    assert n.notify("ml", "iris", Event("Normal", "Promoted", "revision b promoted"))
    returned_again_before_release = not receiver.hold.is_set()
    assert returned_before_release and returned_again_before_release
    assert n.flush(SAFETY)  # both attempts time out at the held receiver
    assert (n.sent, n.failed) == (0, 2)
    receiver.hold.set()
    n.close()


def test_full_queue_drops_the_oldest_and_counts(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    n = make(receiver.url, format="generic", queue_size=2, timeout=SAFETY)
    messages = [Event("Normal", "StepAdvanced", f"step {i}") for i in range(5)]
    assert n.notify("ml", "iris", messages[0])
    assert receiver.arrived.wait(SAFETY)  # message 0 is in flight, the queue is empty
    for event in messages[1:]:
        assert n.notify("ml", "iris", event)  # returns at once although the receiver holds
    assert not receiver.hold.is_set()
    assert n.dropped == 2  # steps 1 and 2 were pushed out by 3 and 4
    receiver.hold.set()
    assert n.flush(SAFETY)
    n.close()
    assert [r["body"]["message"] for r in receiver.requests] == ["step 0", "step 3", "step 4"]
    assert (n.sent, n.failed, n.dropped) == (3, 0, 2)


def test_notify_after_close_is_dropped(receiver: Receiver) -> None:
    n = make(receiver.url)
    n.close()
    assert not n.notify("ml", "iris", ROLLBACK)
    assert n.dropped == 1
    assert receiver.requests == []


# --------------------------------------------------------------------------- retries


def test_retries_with_exponential_backoff_until_success(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    delays = Delays()
    n = make(receiver.url, wait=delays)
    assert n.notify("ml", "iris", ROLLBACK)
    assert n.flush(SAFETY)
    n.close()
    assert len(receiver.requests) == 3  # failed twice, then succeeded
    assert delays.seen == [0.5, 1.0]
    assert (n.sent, n.failed) == (1, 0)


def test_backoff_is_capped(receiver: Receiver) -> None:
    receiver.statuses = [500] * 6
    delays = Delays()
    n = make(receiver.url, attempts=6, wait=delays)
    n.notify("ml", "iris", ROLLBACK)
    assert n.flush(SAFETY)
    n.close()
    assert delays.seen == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert (len(receiver.requests), n.failed) == (6, 1)


def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [404]
    delays = Delays()
    n = make(receiver.url, wait=delays)
    n.notify("ml", "iris", ROLLBACK)
    assert n.flush(SAFETY)
    n.close()
    assert (len(receiver.requests), n.failed, delays.seen) == (1, 1, [])


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("https://bot:hunter2@hooks.example.com/x", "user name or password"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https:///no-host", "no valid host"),
        ("http://", "no valid host"),
        ("https://hooks.example.com/a b", "whitespace"),
        (" https://hooks.example.com/x", "whitespace"),
        ("hooks.example.com/x", "http or https"),
    ],
)
def test_invalid_urls_are_refused_with_a_clear_message(url: str, says: str) -> None:
    with pytest.raises(WebhookConfigError, match="KANARIA_WEBHOOK_URL") as caught:
        validate_webhook_url(url)
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(WebhookConfigError):
        notifier_from_env({"KANARIA_WEBHOOK_URL": url})


def test_valid_urls_are_shown_as_scheme_and_host_only() -> None:
    assert (
        validate_webhook_url("https://hooks.slack.com/services/T0/B0/s3cr3t")
        == "https://hooks.slack.com"
    )
    assert validate_webhook_url("http://10.0.0.1:8080/hook?token=abc") == "http://10.0.0.1:8080"
    assert validate_webhook_url("https://[::1]:9443/x") == "https://[::1]:9443"


def test_environment_configuration() -> None:
    assert type(notifier_from_env({})) is Notifier  # off: a notifier that sends nothing
    assert not notifier_from_env({"KANARIA_WEBHOOK_URL": " "}).notify("ml", "iris", ROLLBACK)
    config = NotifierConfig.from_env(
        {
            "KANARIA_WEBHOOK_URL": "https://hooks.example.com/x",
            "KANARIA_WEBHOOK_FORMAT": "generic",
            "KANARIA_WEBHOOK_TIMEOUT": "750ms",
            "KANARIA_WEBHOOK_EVENTS": "RolledBack, Reverted",
        }
    )
    assert config is not None
    assert (config.format, config.timeout, config.reasons) == (
        "generic",
        0.75,
        frozenset({"RolledBack", "Reverted"}),
    )
    assert "hooks.example.com/x" not in repr(config)
    for bad in ({"KANARIA_WEBHOOK_FORMAT": "teams"}, {"KANARIA_WEBHOOK_TIMEOUT": "soon"},
                {"KANARIA_WEBHOOK_TIMEOUT": "0"}):  # fmt: skip
        with pytest.raises(WebhookConfigError, match="KANARIA_WEBHOOK_"):
            NotifierConfig.from_env({"KANARIA_WEBHOOK_URL": "https://hooks.example.com/x", **bad})


# --------------------------------------------------------------------------- secrecy


def test_the_url_secret_never_reaches_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "/hooks/SECRETPATH?token=SECRETTOKEN"
    receiver.statuses = [500, 500, 500, 500, 200]
    n = make(receiver.url + secret, attempts=3, wait=Delays())
    n.notify("ml", "iris", ROLLBACK)  # fails three times
    n.notify("ml", "iris", ROLLBACK)  # fails once, then is delivered
    assert n.flush(SAFETY)
    n.close()
    dead = make(closed_port_url().replace("/hook", secret), attempts=2, wait=Delays())
    dead.notify("ml", "iris", ROLLBACK)
    assert dead.flush(SAFETY)
    dead.close()
    assert (n.sent, n.failed, dead.failed) == (1, 1, 1)
    text = caplog.text
    assert "failed (attempt 3 of 3)" in text and "HTTP 500" in text
    assert receiver.url in text  # scheme and host are logged ...
    assert "SECRET" not in text  # ... the path and query never are
    assert all("SECRET" not in str(r.args) for r in caplog.records)
