"""The reference LLM server's configuration (from the pod's environment) and its run-time faults
(extra latency, aborts, bad answers), which the sandbox's tests and demos switch on."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RATING_RANGE", "FaultDraw", "LLMConfig", "LLMFaults", "user_mood"]

RATING_RANGE = (1.0, 5.0)
"""The range of the ``rating`` feedback signal."""


def user_mood(request_id: str) -> float:
    """A uniform number in [0, 1) from a request id: the same in the server (which answers of
    a faulty revision are bad) and the load generator (which users are unhappy anyway)."""
    digest = hashlib.sha256(f"mood:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMConfig:
    """What the server serves and how fast; the environment variables are in the doc of
    :mod:`kanaria.sandbox.llmserver`."""

    model_name: str = "kanaria-ngram"
    adapter: str = ""
    """A LoRA adapter served beside the base model (its name, as requests' ``model`` says it)."""
    revision: str = "local"
    version: str = ""
    order: int = 3
    seed: int = 0
    max_running: int = 4
    max_waiting: int = 256
    max_model_len: int = 2048
    first_token_ms: float = 30.0
    prompt_token_ms: float = 0.05
    token_ms: float = 8.0
    jitter: float = 0.1
    feedback_max_pending: int = 100_000
    feedback_ttl_seconds: float = 3600.0
    faults_enabled: bool = False
    """Whether the fault switches (below, ``/admin/faults``) may be used at all."""
    fault_first_token_ms: float | None = None
    fault_token_ms: float | None = None
    fault_abort_rate: float | None = None
    fault_bad_rate: float | None = None
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.order <= 4:
            raise ValueError(f"the n-gram order must lie within 2..4, not {self.order}")
        if self.max_running < 1 or self.max_waiting < 0:
            raise ValueError("max_running must be at least 1 and max_waiting not negative")
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be at least 2")
        delays = (self.first_token_ms, self.prompt_token_ms, self.token_ms)
        if any(not 0 <= d <= 60_000 for d in delays):
            raise ValueError("delays must lie within [0, 60000] ms")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must lie within [0, 1)")

    def requested_faults(self) -> list[str]:
        """The fault settings asked for, by name (empty when none is)."""
        return [
            name
            for name, value in (
                ("KANARIA_FAULT_FIRST_TOKEN_MS", self.fault_first_token_ms),
                ("KANARIA_FAULT_TOKEN_MS", self.fault_token_ms),
                ("KANARIA_FAULT_ABORT_RATE", self.fault_abort_rate),
                ("KANARIA_FAULT_BAD_RATE", self.fault_bad_rate),
                ("KANARIA_FAULT_SEED", self.fault_seed),
            )
            if value is not None
        ]

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, faults_enabled: bool = False) -> LLMConfig:
        def raw(key: str) -> str:
            return env.get(key, "").strip()

        def number(key: str) -> float | None:
            value = raw(key)
            try:
                return float(value) if value else None
            except ValueError as exc:
                raise ValueError(f"{key} must be a number, not {value!r}") from exc

        def integer(key: str) -> int | None:
            value = raw(key)
            try:
                return int(value) if value else None
            except ValueError as exc:
                raise ValueError(f"{key} must be a whole number, not {value!r}") from exc

        given: dict[str, Any] = {
            "model_name": raw("KANARIA_MODEL_NAME") or None,
            "adapter": raw("KANARIA_MODEL_ADAPTER") or None,
            "revision": raw("KANARIA_REVISION") or None,
            "version": raw("KANARIA_MODEL_VERSION") or None,
            "order": integer("KANARIA_LLM_ORDER"),
            "seed": integer("KANARIA_LLM_SEED"),
            "max_running": integer("KANARIA_LLM_MAX_RUNNING"),
            "max_waiting": integer("KANARIA_LLM_MAX_WAITING"),
            "max_model_len": integer("KANARIA_LLM_MAX_MODEL_LEN"),
            "first_token_ms": number("KANARIA_LLM_FIRST_TOKEN_MS"),
            "prompt_token_ms": number("KANARIA_LLM_PROMPT_TOKEN_MS"),
            "token_ms": number("KANARIA_LLM_TOKEN_MS"),
            "jitter": number("KANARIA_LLM_JITTER"),
            "feedback_max_pending": integer("KANARIA_FEEDBACK_MAX_PENDING"),
            "feedback_ttl_seconds": number("KANARIA_FEEDBACK_TTL_SECONDS"),
        }
        return cls(
            **{k: v for k, v in given.items() if v is not None},
            faults_enabled=faults_enabled,
            fault_first_token_ms=number("KANARIA_FAULT_FIRST_TOKEN_MS"),
            fault_token_ms=number("KANARIA_FAULT_TOKEN_MS"),
            fault_abort_rate=number("KANARIA_FAULT_ABORT_RATE"),
            fault_bad_rate=number("KANARIA_FAULT_BAD_RATE"),
            fault_seed=integer("KANARIA_FAULT_SEED"),
        )


@dataclass(frozen=True)
class FaultDraw:
    """What the faults do to one request."""

    first_token_s: float = 0.0
    token_s: float = 0.0
    abort: bool = False
    bad: bool = False


class LLMFaults:
    """Extra latency, an abort rate and a bad-answer rate, changeable at run time. Thread-safe."""

    _LIMITS: Mapping[str, tuple[float, float]] = {
        "first_token_ms": (0.0, 60_000.0),
        "token_ms": (0.0, 10_000.0),
        "abort_rate": (0.0, 1.0),
        "bad_rate": (0.0, 1.0),
    }

    def __init__(self, seed: int | None = None, **values: float | None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._values = dict.fromkeys(self._LIMITS, 0.0)
        self.update(**values)

    def update(self, **values: float | None) -> dict[str, float]:
        """Change the named settings (None leaves one as it is); returns them all."""
        unknown = sorted(set(values) - set(self._LIMITS))
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}; known: {sorted(self._LIMITS)}")
        checked: dict[str, float] = {}
        for name, value in values.items():
            if value is None:
                continue
            low, high = self._LIMITS[name]
            number = float(value)
            if not low <= number <= high:
                raise ValueError(f"{name} must lie within [{low:g}, {high:g}], not {value!r}")
            checked[name] = number
        with self._lock:
            self._values.update(checked)
            return dict(self._values)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def draw(self, request_id: str) -> FaultDraw:
        """What the faults do to the request ``request_id``: bad when its mood is at least
        1 − bad_rate (:func:`user_mood`), aborted at random."""
        with self._lock:
            v = self._values
            return FaultDraw(
                first_token_s=v["first_token_ms"] / 1000.0,
                token_s=v["token_ms"] / 1000.0,
                abort=self._rng.random() < v["abort_rate"],
                bad=v["bad_rate"] > 0 and user_mood(request_id) >= 1.0 - v["bad_rate"],
            )


# -- scheduling -------------------------------------------------------------------------------
