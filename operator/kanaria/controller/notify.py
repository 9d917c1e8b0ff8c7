"""Optional webhook notifications about rollouts (Slack-compatible or a generic JSON shape).

Configured from the operator's environment:

``KANARIA_WEBHOOK_URL``
    http(s) URL to POST to. Unset or empty: notifications are off.
``KANARIA_WEBHOOK_FORMAT``
    ``slack`` (default) or ``generic``.
``KANARIA_WEBHOOK_TIMEOUT``
    Seconds (``5``, ``2.5``) or a duration (``5s``, ``500ms``) per request; default 5s.
``KANARIA_WEBHOOK_EVENTS``
    Comma-separated Event reasons to send; default :data:`DEFAULT_REASONS`.

``notify()`` only puts a message on a bounded in-memory queue and returns: one background
thread delivers, with a per-request timeout and retries with exponential backoff. When the
queue is full the oldest message is dropped (and counted), so a dead or slow receiver never
holds up the reconcile loop. The URL is a secret (webhook paths and query strings carry
tokens): only its scheme and host are ever logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kanaria.api.models import ModelDeploymentStatus
from kanaria.controller.webhook_config import (
    DEFAULT_REASONS,
    NotifierConfig,
    WebhookConfigError,
    validate_webhook_url,
)
from kanaria.rollout.types import Decision, Event

__all__ = [
    "DEFAULT_REASONS",
    "Notifier",
    "NotifierConfig",
    "WebhookConfigError",
    "WebhookNotifier",
    "notifier_from_env",
    "validate_webhook_url",
]

log = logging.getLogger("kanaria.notify")


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class _Message:
    event: str
    type: str
    namespace: str
    name: str
    text: str
    revision: str | None
    weight: int | None
    at: str


def _generic(m: _Message) -> dict[str, Any]:
    return {
        "event": m.event,
        "type": m.type,
        "namespace": m.namespace,
        "name": m.name,
        "message": m.text,
        "revision": m.revision,
        "weight": m.weight,
        "at": m.at,
    }


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ICONS = {
    "Promoted": ":white_check_mark:",
    "RolledBack": ":rotating_light:",
    "Reverted": ":rotating_light:",
}


def _slack(m: _Message) -> dict[str, Any]:
    icon = _ICONS.get(m.event, ":warning:" if m.type == "Warning" else ":information_source:")
    title = f"{icon} *{m.event}* {_mrkdwn(m.namespace)}/{_mrkdwn(m.name)}"
    context = [
        f"revision `{_mrkdwn(m.revision)}`" if m.revision else None,
        f"canary weight {m.weight}%" if m.weight is not None else None,
        m.at,
    ]
    return {
        "text": f"{m.event} {m.namespace}/{m.name}: {m.text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{_mrkdwn(m.text)}"}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": " · ".join(c for c in context if c)}],
            },
        ],
    }


def _revision_for(reason: str, status: ModelDeploymentStatus) -> str | None:
    """The revision an Event is about, read from the status after the decision."""
    if reason in ("RolledBack", "Reverted"):
        return status.rejected_revision or status.stable_revision
    if reason == "Promoted":
        return status.stable_revision
    return status.canary_revision or status.stable_revision


# --------------------------------------------------------------------------- notifiers


class Notifier:
    """Sends nothing. The interface every notifier has; used when no webhook is configured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self._failed = 0
        self._dropped = 0

    @property
    def sent(self) -> int:
        """Messages the receiver accepted (2xx)."""
        return self._sent

    @property
    def failed(self) -> int:
        """Messages given up on after every attempt (or a permanent 4xx)."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Messages never attempted: pushed out of a full queue, or sent after close()."""
        return self._dropped

    def notify(
        self,
        namespace: str,
        name: str,
        event: Event,
        *,
        revision: str | None = None,
        weight: int | None = None,
    ) -> bool:
        """Queue a notification about one Event; returns at once. True if it was queued."""
        return False

    def on_decision(self, obj: Mapping[str, Any], decision: Decision) -> None:
        """Notify about every Event of a decision (the revision and weight come from status)."""
        meta = obj["metadata"]
        st = decision.status
        for event in decision.events:
            weight = st.canary_weight if st.canary_revision else None
            self.notify(
                meta["namespace"],
                meta["name"],
                event,
                revision=_revision_for(event.reason, st),
                weight=weight,
            )

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was delivered or given up on; False on timeout."""
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting messages, deliver what is queued for up to ``timeout`` seconds."""


class WebhookNotifier(Notifier):
    """Delivers notifications to one webhook from a background thread."""

    def __init__(
        self,
        config: NotifierConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """``wait(seconds)`` sleeps between attempts and returns True when the notifier is
        closing (default: wait on the close signal); tests pass their own."""
        super().__init__()
        self.config = config
        self.target = config.target
        self._clock = clock
        self._queue: deque[_Message] = deque()
        self._ready = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._busy = False
        self._wait = wait if wait is not None else self._closing.wait
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._thread = threading.Thread(target=self._run, name="kanaria-notify", daemon=True)
        self._thread.start()
        log.info("webhook notifications on: %s format to %s", config.format, self.target)

    # -- the caller's side: never blocks on the network ---------------------------------

    def notify(
        self,
        namespace: str,
        name: str,
        event: Event,
        *,
        revision: str | None = None,
        weight: int | None = None,
    ) -> bool:
        if event.reason not in self.config.reasons:
            return False
        message = _Message(
            event=event.reason,
            type=event.type,
            namespace=namespace,
            name=name,
            text=event.message,
            revision=revision,
            weight=weight,
            at=self._clock().isoformat().replace("+00:00", "Z"),
        )
        with self._ready:
            if self._closing.is_set():
                self._dropped += 1
                return False
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self._dropped += 1
                log.warning(
                    "notification queue full (%d); dropped the oldest", self.config.queue_size
                )
            self._queue.append(message)
            self._ready.notify_all()
        return True

    def flush(self, timeout: float) -> bool:
        with self._ready:
            return self._ready.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._ready:
            self._closing.set()
            self._dropped += len(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        self._thread.join(timeout=max(0.1, min(timeout, self.config.timeout)))

    # -- the delivery thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._queue) or self._closing.is_set())
                if self._closing.is_set():
                    return
                message = self._queue.popleft()
                self._busy = True
            try:
                ok = self._deliver(message)
            except Exception as exc:  # never let the thread die
                log.error(
                    "notification %s failed unexpectedly: %s", message.event, type(exc).__name__
                )
                ok = False
            with self._ready:
                if ok:
                    self._sent += 1
                else:
                    self._failed += 1
                self._busy = False
                self._ready.notify_all()

    def _body(self, message: _Message) -> bytes:
        payload = _slack(message) if self.config.format == "slack" else _generic(message)
        return json.dumps(payload).encode()

    def _deliver(self, message: _Message) -> bool:
        body = self._body(message)
        delay = self.config.backoff_initial
        for attempt in range(1, self.config.attempts + 1):
            retry, why = self._post(body)
            if why is None:
                log.debug(
                    "notified %s of %s %s/%s",
                    self.target,
                    message.event,
                    message.namespace,
                    message.name,
                )
                return True
            last = attempt == self.config.attempts or not retry
            log.log(
                logging.WARNING if last else logging.INFO,
                "notification %s to %s failed (attempt %d of %d): %s%s",
                message.event, self.target, attempt, self.config.attempts, why,
                "" if last else f"; retrying in {delay:g}s",
            )  # fmt: skip
            if last or self._wait(delay):
                return False
            delay = min(delay * 2, self.config.backoff_max)
        return False

    def _post(self, body: bytes) -> tuple[bool, str | None]:
        """(worth retrying, why it failed); why is None on success. Messages never hold the URL."""
        request = urllib.request.Request(
            self.config.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "kanaria-notifier"},
        )
        try:
            with self._opener.open(request, timeout=self.config.timeout) as response:
                response.read(65536)
                return False, None
        except urllib.error.HTTPError as exc:
            exc.close()
            code = exc.code
            return (code >= 500 or code in (408, 429)), f"HTTP {code}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return True, f"timed out after {self.config.timeout:g}s"
            if isinstance(reason, OSError):
                return True, f"{type(reason).__name__}: {reason.strerror or 'error'}"
            return True, "cannot connect"
        except TimeoutError:
            return True, f"timed out after {self.config.timeout:g}s"
        except http.client.HTTPException as exc:
            return True, f"bad response ({type(exc).__name__})"
        except OSError as exc:
            return True, f"{type(exc).__name__}: {exc.strerror or 'error'}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: the message must not follow a 3xx to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def notifier_from_env(env: Mapping[str, str] | None = None) -> Notifier:
    """A WebhookNotifier when KANARIA_WEBHOOK_URL is set, else a Notifier that sends nothing.

    Raises :class:`WebhookConfigError` on a bad configuration, so the operator fails at
    startup instead of silently never notifying.
    """
    config = NotifierConfig.from_env(env)
    if config is None:
        return Notifier()
    return WebhookNotifier(config)
