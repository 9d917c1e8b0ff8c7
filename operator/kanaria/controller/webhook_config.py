"""Configuration of webhook notifications, read from the operator's environment, and the
checks on it (the URL is a secret: only its scheme and host are ever shown). See
:mod:`kanaria.controller.notify` for the variables and the delivery."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from kanaria.api.durations import parse_duration

__all__ = [
    "DEFAULT_REASONS",
    "Format",
    "NotifierConfig",
    "WebhookConfigError",
    "validate_webhook_url",
]

Format = Literal["slack", "generic"]

DEFAULT_REASONS: frozenset[str] = frozenset(
    {
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
    }
)
"""Event reasons sent unless KANARIA_WEBHOOK_EVENTS says otherwise."""


class WebhookConfigError(ValueError):
    """The webhook configuration cannot be used. The message never contains the URL."""


def validate_webhook_url(url: str) -> str:
    """Check a webhook URL; return its loggable form (``scheme://host[:port]``).

    http and https only, a host, no user name or password, no whitespace or control
    characters. Raises :class:`WebhookConfigError` with a message that does not repeat the URL.
    """
    if (
        not url
        or url != url.strip()
        or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url)
    ):
        raise WebhookConfigError(
            "KANARIA_WEBHOOK_URL is empty or contains whitespace or control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookConfigError(
            f"KANARIA_WEBHOOK_URL is not a valid URL ({_first_words(exc)})"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = scheme if scheme.isalnum() and len(scheme) <= 16 else "?"
        raise WebhookConfigError(
            f"KANARIA_WEBHOOK_URL must use http or https, not {shown!r} (for example https://hooks.example.com/...)"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebhookConfigError(
            "KANARIA_WEBHOOK_URL must not contain a user name or password; put the token in the path or query"
        )
    host = parts.hostname
    if not host or host.startswith(".") or host.endswith("..") or ".." in host:
        raise WebhookConfigError("KANARIA_WEBHOOK_URL has no valid host")
    if port == 0:
        raise WebhookConfigError("KANARIA_WEBHOOK_URL has port 0")
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}" + (f":{port}" if port is not None else "")


def _first_words(exc: BaseException) -> str:
    """A short, URL-free description of a parse error."""
    text = str(exc)
    return "invalid port" if "port" in text.lower() else "unparseable"


def _parse_timeout(text: str) -> float:
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise WebhookConfigError(
                f"KANARIA_WEBHOOK_TIMEOUT must be seconds or a duration such as 5s, not {value[:32]!r}"
            ) from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 300:
        raise WebhookConfigError(
            "KANARIA_WEBHOOK_TIMEOUT must be more than 0 and at most 300 seconds"
        )
    return seconds


@dataclass(frozen=True)
class NotifierConfig:
    """Where and how to deliver notifications."""

    url: str = field(repr=False)
    format: Format = "slack"
    timeout: float = 5.0
    """Seconds per request (connect, and each read)."""
    attempts: int = 3
    """Tries per message, including the first."""
    backoff_initial: float = 0.5
    backoff_max: float = 4.0
    queue_size: int = 100
    reasons: frozenset[str] = DEFAULT_REASONS

    def __post_init__(self) -> None:
        validate_webhook_url(self.url)
        if self.format not in ("slack", "generic"):
            raise WebhookConfigError(
                f"KANARIA_WEBHOOK_FORMAT must be slack or generic, not {self.format[:32]!r}"
            )
        if self.attempts < 1 or self.queue_size < 1 or self.timeout <= 0:
            raise WebhookConfigError("attempts, queue size and timeout must be positive")

    @property
    def target(self) -> str:
        """The loggable form of the URL (scheme and host only)."""
        return validate_webhook_url(self.url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifierConfig | None:
        """The configuration in ``env`` (os.environ by default); None when no URL is set."""
        env = os.environ if env is None else env
        url = env.get("KANARIA_WEBHOOK_URL", "")
        if not url.strip():
            return None
        fmt = env.get("KANARIA_WEBHOOK_FORMAT", "slack").strip().lower() or "slack"
        if fmt not in ("slack", "generic"):
            raise WebhookConfigError(
                f"KANARIA_WEBHOOK_FORMAT must be slack or generic, not {fmt[:32]!r}"
            )
        timeout = _parse_timeout(env.get("KANARIA_WEBHOOK_TIMEOUT", "5"))
        reasons = DEFAULT_REASONS
        if env.get("KANARIA_WEBHOOK_EVENTS", "").strip():
            reasons = frozenset(
                r.strip() for r in env["KANARIA_WEBHOOK_EVENTS"].split(",") if r.strip()
            )
        return cls(url=url, format=fmt, timeout=timeout, reasons=reasons)  # type: ignore[arg-type]
