"""Load generator: held-out rows through the proxy, with delayed ground-truth feedback.

Requests are the held-out split of a bundled data set (the same split the trainer keeps
out, see :func:`kanaria.sandbox.train.load_split`), sent at ``rate`` per second with a
request id each, until ``total`` requests or ``duration`` seconds (one of them is required,
and ``max_duration`` caps every run: the generator always stops by itself). Targets must be
on 127.0.0.1.

Feedback: ``feedback_delay_s`` after a prediction is answered, its true label is posted to
``/feedback`` at the same base URL with the ``X-Kanaria-Server`` header the proxy put on the
prediction's response. The proxy routes a request with that header to that very server
(see :mod:`kanaria.sandbox.proxy`), so the label reaches the revision that served the
prediction even after the split changed. Without a proxy (one server) the header is absent
and the label goes to the only server there is.

Outcome-dependent delays: with ``wrong_delay_s`` a label for a prediction the generator knows
is wrong (it holds the true label and the served prediction) is posted after ``wrong_delay_s``
instead, so errors can be reported sooner than confirmations (``wrong_delay_s`` <
``feedback_delay_s``) or later. The stats report that ground truth per revision: predictions
answered (``by_revision``), of them correct (``correct_by_revision``), and the labels the
server accepted, by outcome (``labelled_correct_by_revision``,
``labelled_incorrect_by_revision``), to compare with the model server's own counts.

Each label also carries ``served_prediction``, the class the response gave, so a shadow that
saw a mirrored copy of the request can count whether it agreed (see
:mod:`kanaria.sandbox.mirror`). Predictions and labels both carry the request id in the
``X-Request-Id`` header as well as in the body: the mirror picks requests to copy by that
header, so a label is mirrored exactly when its prediction was.

Cookies: ``cookie=(name, value, share)`` sends ``Cookie: name=value`` with a ``share`` of the
requests (the same requests on every run: chosen by a hash of the request's index), like
users enrolled in an A/B test's group; ``by_revision_with_cookie`` counts where they went.

Input drift: ``Drift(feature, shift_sd, fraction)`` adds ``shift_sd`` training standard
deviations to one feature of a ``fraction`` of the requests.

Covariate shift: ``Rescale(features, factor)`` (see :class:`kanaria.sandbox.train.Rescale`)
multiplies several features of every request by ``factor``, the labels unchanged, like a
recalibrated sensor. The default (breast_cancer's nine size measurements read 30% larger)
takes a model trained without it from 95.9% to 84.2% accuracy on the held-out rows; a model
retrained on shifted rows (``train_revision(..., rescale=Rescale())``) is back at 95.9%.

Both can change while the generator runs: :meth:`LoadGenerator.set_drift` and
:meth:`LoadGenerator.set_rescale` apply to every request from the next one on and return
that request's index. ``drifted`` and ``rescaled`` in the stats count the requests changed.

    python -m kanaria.sandbox.loadgen --url http://127.0.0.1:PORT --dataset breast_cancer \
        --rate 50 (--total N | --duration S) [--feedback-delay 1] [--wrong-delay S] [--no-feedback] \
        [--drift-feature K --drift-sd S --drift-fraction F] \
        [--rescale-factor 1.3 [--rescale-features NAME|INDEX,...] [--rescale-after S]] [--seed N]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import signal
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

from kanaria.sandbox.proxy import SERVER_HEADER
from kanaria.sandbox.train import (
    DATASETS,
    SIZE_FEATURES,
    Rescale,
    feature_index,
    load_split,
    parse_features,
)

__all__ = ["Drift", "LoadGenerator", "LoadStats", "Rescale", "main"]

ALLOWED_HOSTS = ("127.0.0.1",)
REQUEST_ID_HEADER = "X-Request-Id"


@dataclass(frozen=True)
class Drift:
    """Shift feature ``feature`` (index or name) by ``shift_sd`` standard deviations."""

    feature: int | str
    shift_sd: float
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("drift fraction must be within [0, 1]")


@dataclass(frozen=True)
class LoadStats:
    """What was sent and what came back, by the revision that answered."""

    sent: int = 0
    ok: int = 0
    errors: int = 0  # 5xx answers
    failed: int = 0  # no answer, or another status
    drifted: int = 0
    rescaled: int = 0
    by_revision: dict[str, int] = field(default_factory=dict)
    errors_by_revision: dict[str, int] = field(default_factory=dict)
    correct_by_revision: dict[str, int] = field(default_factory=dict)
    labelled_correct_by_revision: dict[str, int] = field(default_factory=dict)
    labelled_incorrect_by_revision: dict[str, int] = field(default_factory=dict)
    by_revision_with_cookie: dict[str, int] = field(default_factory=dict)
    feedback_sent: int = 0
    feedback_accepted: int = 0
    feedback_rejected: int = 0
    feedback_failed: int = 0
    elapsed_s: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    """The first FAILURES_KEPT 5xx answers and failed requests: seconds since the load began
    (``at``), the status (0 for no answer), the server that answered (HAProxy's header) and the
    start of the body or the error."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(order=True)
class _Label:
    due: float
    request_id: str = field(compare=False)
    label: str = field(compare=False)
    server: str | None = field(compare=False)
    served_prediction: str | None = field(compare=False, default=None)
    revision: str = field(compare=False, default="")
    correct: bool = field(compare=False, default=False)


FAILURES_KEPT = 200
"""How many failed requests a load generator describes one by one (see LoadStats.failures)."""


class _Counters:
    """Mutable tallies behind one lock; ``snapshot`` makes a :class:`LoadStats`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.by_revision: Counter[str] = Counter()
        self.errors_by_revision: Counter[str] = Counter()
        self.correct_by_revision: Counter[str] = Counter()
        self.labelled: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
        self.with_cookie: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def failure(self, status: int, server: str | None, detail: str) -> None:
        with self.lock:
            if len(self.failures) < FAILURES_KEPT:
                self.failures.append({"at": round(time.monotonic() - self.started, 3), "status": status,
                                      "server": server or "", "detail": detail[:160]})

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.totals.update(amounts)

    def snapshot(self, elapsed: float) -> LoadStats:
        with self.lock:
            t = self.totals
            return LoadStats(
                sent=t["sent"], ok=t["ok"], errors=t["errors"], failed=t["failed"],
                drifted=t["drifted"], rescaled=t["rescaled"], by_revision=dict(self.by_revision),
                errors_by_revision=dict(self.errors_by_revision),
                correct_by_revision=dict(self.correct_by_revision),
                labelled_correct_by_revision=dict(self.labelled[True]),
                labelled_incorrect_by_revision=dict(self.labelled[False]),
                by_revision_with_cookie=dict(self.with_cookie),
                feedback_sent=t["feedback_sent"], feedback_accepted=t["feedback_accepted"],
                feedback_rejected=t["feedback_rejected"], feedback_failed=t["feedback_failed"],
                elapsed_s=elapsed, failures=list(self.failures),
            )  # fmt: skip


class LoadGenerator:
    """Send predictions at a fixed rate and their labels after a delay; see the module doc.

    ``run()`` blocks until done; ``start()`` runs it in a daemon thread, ``stop()`` ends it
    early (pending labels are then not sent), ``stats()`` may be read at any time, and
    ``set_drift()`` / ``set_rescale()`` change the input shift at any time.
    """

    def __init__(
        self,
        base_url: str,
        dataset: str = "breast_cancer",
        *,
        rate: float = 50.0,
        total: int | None = None,
        duration: float | None = None,
        feedback: bool = True,
        feedback_delay_s: float = 1.0,
        wrong_delay_s: float | None = None,
        drift: Drift | None = None,
        rescale: Rescale | None = None,
        cookie: tuple[str, str, float] | None = None,
        seed: int = 0,
        split_seed: int = 0,
        concurrency: int = 8,
        timeout: float = 10.0,
        max_duration: float = 3600.0,
    ) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme != "http" or parsed.hostname not in ALLOWED_HOSTS:
            raise ValueError(f"only http://127.0.0.1 targets are allowed, not {base_url!r}")
        if total is None and duration is None:
            raise ValueError("give total or duration: a load generator must stop by itself")
        if not 0 < rate <= 5000:
            raise ValueError("rate must be within (0, 5000] requests per second")
        if total is not None and total < 0:
            raise ValueError("total must not be negative")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.total = total
        self.duration = min(duration, max_duration) if duration is not None else max_duration
        self.feedback = feedback
        if feedback_delay_s < 0 or (wrong_delay_s is not None and wrong_delay_s < 0):
            raise ValueError("label delays must not be negative")
        self.feedback_delay_s = feedback_delay_s
        self.wrong_delay_s = feedback_delay_s if wrong_delay_s is None else wrong_delay_s
        self.timeout = timeout
        self.concurrency = concurrency
        split = load_split(dataset, split_seed)
        self._rows = split.X_test.copy()
        self._labels = [split.classes[int(y)] for y in split.y_test]
        self.feature_names = split.feature_names
        self._train_sd = np.std(split.X_train, axis=0)
        if cookie is not None and not 0 <= cookie[2] <= 1:
            raise ValueError("the cookie's share must lie within [0, 1]")
        self._cookie = cookie
        # The input shift, read and changed under _shift_lock; _made counts the rows made.
        self._shift_lock = threading.Lock()
        self._made = 0
        self._drift: Drift | None = None
        self._drift_index = 0
        self._drift_shift = 0.0
        self._rescale: Rescale | None = None
        self._rescale_indices: list[int] = []
        self.set_drift(drift)
        self.set_rescale(rescale)
        self._rng = random.Random(seed)
        self._order = list(range(len(self._labels)))
        self._rng.shuffle(self._order)
        self._prefix = uuid.uuid4().hex[:8]
        self._counters = _Counters()
        self._labels_due: list[_Label] = []
        self._labels_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self.run, name="loadgen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if it has."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._done.is_set()

    def set_drift(self, drift: Drift | None) -> int:
        """Shift one feature (see :class:`Drift`), or nothing with None, from the next request
        on; returns the index of that request (the number of requests made before it)."""
        index, shift = 0, 0.0
        if drift is not None:
            index = feature_index(drift.feature, self.feature_names)
            shift = drift.shift_sd * float(self._train_sd[index])
        with self._shift_lock:
            self._drift, self._drift_index, self._drift_shift = drift, index, shift
            return self._made

    def set_rescale(self, rescale: Rescale | None) -> int:
        """Multiply features of every request (see :class:`Rescale`), or nothing with None,
        from the next request on; returns the index of that request."""
        indices = [] if rescale is None else list(rescale.indices(self.feature_names))
        with self._shift_lock:
            self._rescale, self._rescale_indices = rescale, indices
            return self._made

    def stats(self) -> LoadStats:
        if self._started_at is None:
            return self._counters.snapshot(0.0)
        end = self._finished_at if self._finished_at is not None else time.monotonic()
        return self._counters.snapshot(end - self._started_at)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> LoadStats:
        self._started_at = start = self._counters.started = time.monotonic()
        deadline = start + self.duration
        in_flight: list[Future[None]] = []
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client, ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="loadgen"
            ) as pool:
                index = 0
                while not self._stop.is_set():
                    now = time.monotonic()
                    if now >= deadline or (self.total is not None and index >= self.total):
                        break
                    self._send_due_labels(client, pool, now)
                    next_send = start + index / self.rate
                    if now >= next_send:
                        row = self._row(index)
                        in_flight.append(pool.submit(self._predict, client, index, row))
                        index += 1
                        in_flight = [f for f in in_flight if not f.done()]
                        continue
                    self._stop.wait(min(next_send, self._next_label_due(next_send)) - now)
                for future in in_flight:
                    future.result()
                longest = max(self.feedback_delay_s, self.wrong_delay_s)
                drain_until = time.monotonic() + longest + self.timeout + 1.0
                while not self._stop.is_set() and self._pending_labels():
                    now = time.monotonic()
                    if now > min(drain_until, deadline + longest + self.timeout):
                        break
                    self._send_due_labels(client, pool, now)
                    self._stop.wait(max(0.0, min(self._next_label_due(now + 0.1), now + 0.1) - now))
        finally:
            self._finished_at = time.monotonic()
            self._done.set()
        return self.stats()

    def _pending_labels(self) -> bool:
        with self._labels_lock:
            return bool(self._labels_due)

    def _next_label_due(self, default: float) -> float:
        with self._labels_lock:
            return self._labels_due[0].due if self._labels_due else default

    def _send_due_labels(self, client: httpx.Client, pool: ThreadPoolExecutor, now: float) -> None:
        due: list[_Label] = []
        with self._labels_lock:
            while self._labels_due and self._labels_due[0].due <= now:
                due.append(heapq.heappop(self._labels_due))
        for item in due:
            pool.submit(self._post_label, client, item)

    def _row(self, index: int) -> tuple[list[float], str]:
        """Request ``index``'s features (shifted as asked now) and true label; counts it."""
        position = self._order[index % len(self._order)]
        row = self._rows[position].astype(float)
        with self._shift_lock:
            self._made = index + 1
            drift, rescale = self._drift, self._rescale
            drifted = drift is not None and self._rng.random() < drift.fraction
            if rescale is not None:
                row[self._rescale_indices] *= rescale.factor
            if drifted:
                row[self._drift_index] += self._drift_shift
        self._counters.add(sent=1, drifted=int(drifted), rescaled=int(rescale is not None))
        return [float(v) for v in row], self._labels[position]

    def _predict(self, client: httpx.Client, index: int, row: tuple[list[float], str]) -> None:
        features, label = row
        request_id = f"{self._prefix}-{index}"
        headers = {REQUEST_ID_HEADER: request_id}
        cookied = self._cookie is not None and zlib.crc32(str(index).encode()) % 10_000 < self._cookie[2] * 10_000
        if cookied:
            assert self._cookie is not None
            headers["Cookie"] = f"{self._cookie[0]}={self._cookie[1]}"
        try:
            response = client.post(
                "/predict",
                json={"features": features, "request_id": request_id},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            self._counters.add(failed=1)
            self._counters.failure(0, None, f"{type(exc).__name__}: {exc}")
            return
        revision = response.headers.get("X-Kanaria-Revision", "")
        try:
            body = response.json()
            revision = str(body.get("revision") or revision)
        except ValueError:
            body = {}
        if response.status_code >= 500:
            with self._counters.lock:
                self._counters.totals["errors"] += 1
                self._counters.errors_by_revision[revision or "<none>"] += 1
            self._counters.failure(response.status_code, response.headers.get(SERVER_HEADER), response.text)
            return
        if response.status_code != 200:
            self._counters.add(failed=1)
            self._counters.failure(response.status_code, response.headers.get(SERVER_HEADER), response.text)
            return
        correct = body.get("prediction") == label
        with self._counters.lock:
            self._counters.totals["ok"] += 1
            self._counters.by_revision[revision] += 1
            self._counters.with_cookie[revision] += int(cookied)
            self._counters.correct_by_revision[revision] += int(correct)
        if self.feedback:
            item = _Label(
                time.monotonic() + (self.feedback_delay_s if correct else self.wrong_delay_s),
                str(body.get("request_id") or request_id),
                label,
                response.headers.get(SERVER_HEADER),
                None if body.get("prediction") is None else str(body["prediction"]),
                revision,
                correct,
            )
            with self._labels_lock:
                heapq.heappush(self._labels_due, item)

    def _post_label(self, client: httpx.Client, item: _Label) -> None:
        headers = {REQUEST_ID_HEADER: item.request_id}
        if item.server:
            headers[SERVER_HEADER] = item.server
        payload = {"request_id": item.request_id, "label": item.label}
        if item.served_prediction is not None:
            payload["served_prediction"] = item.served_prediction
        self._counters.add(feedback_sent=1)
        try:
            response = client.post("/feedback", json=payload, headers=headers)
            accepted = response.status_code == 200 and bool(response.json().get("accepted"))
        except (httpx.HTTPError, ValueError):
            self._counters.add(feedback_failed=1)
            return
        with self._counters.lock:
            self._counters.totals["feedback_accepted"] += int(accepted)
            self._counters.totals["feedback_rejected"] += int(not accepted)
            if accepted:
                self._counters.labelled[item.correct][item.revision] += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.loadgen")
    parser.add_argument("--url", required=True, help="base URL, e.g. the proxy's http://127.0.0.1:PORT")
    parser.add_argument("--dataset", choices=DATASETS, default="breast_cancer")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--total", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--feedback-delay", type=float, default=1.0, help="seconds before a label is sent")
    parser.add_argument(
        "--wrong-delay",
        type=float,
        help="seconds before the label of a wrong prediction is sent (default: --feedback-delay)",
    )
    parser.add_argument("--no-feedback", action="store_true")
    parser.add_argument("--drift-feature")
    parser.add_argument("--drift-sd", type=float, default=0.0)
    parser.add_argument("--drift-fraction", type=float, default=1.0)
    parser.add_argument(
        "--rescale-factor",
        type=float,
        help="multiply --rescale-features of every request by this factor (a covariate shift)",
    )
    parser.add_argument(
        "--rescale-features",
        type=parse_features,
        default=SIZE_FEATURES,
        help="comma-separated feature names or indices (default: breast_cancer's size features)",
    )
    parser.add_argument(
        "--rescale-after",
        type=float,
        default=0.0,
        help="seconds into the run before the rescale begins (default: from the first request)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    drift = None
    if args.drift_feature is not None:
        feature: int | str = int(args.drift_feature) if args.drift_feature.isdigit() else args.drift_feature
        drift = Drift(feature, args.drift_sd, args.drift_fraction)
    rescale = None
    if args.rescale_factor is not None:
        try:
            rescale = Rescale(args.rescale_features, args.rescale_factor)
            rescale.indices(load_split(args.dataset).feature_names)
        except ValueError as exc:
            parser.error(str(exc))
    if args.rescale_after < 0:
        parser.error("--rescale-after must not be negative")
    later = rescale is not None and args.rescale_after > 0
    generator = LoadGenerator(
        args.url, args.dataset, rate=args.rate, total=args.total, duration=args.duration,
        feedback=not args.no_feedback, feedback_delay_s=args.feedback_delay,
        wrong_delay_s=args.wrong_delay, drift=drift, rescale=None if later else rescale,
        seed=args.seed, concurrency=args.concurrency,
    )  # fmt: skip
    cancelled = threading.Event()

    def rescale_later() -> None:  # counted from the run's start, not from the process's
        while not generator.running and not cancelled.wait(0.01):
            pass
        if not cancelled.wait(args.rescale_after):
            generator.set_rescale(rescale)

    timer = threading.Thread(target=rescale_later, daemon=True)
    if later:
        timer.start()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: generator.stop())
    try:
        stats = generator.run()
    except KeyboardInterrupt:
        generator.stop()
        stats = generator.stats()
    finally:
        cancelled.set()
        signal.signal(signal.SIGTERM, previous)
    print(stats.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
