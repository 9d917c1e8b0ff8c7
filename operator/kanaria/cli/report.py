"""`kubectl kanaria report`: a timeline of one rollout — the canary's weight after each decision
(status.timeline), the last measurement of each metric (status.analysis), decisions marked —
as a PNG, or an HTML page with the PNG embedded and the evidence in tables."""

from __future__ import annotations

import base64
import html
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kanaria.cli.kube import CliError
from kanaria.cli.render import fmt_number

__all__ = ["DecisionPoint", "decisions", "weight_curve", "query_weight", "render_png", "render_html", "write_report"]

BAD = ("RolledBack", "Reverted", "Aborted", "ActionRejected")
GOOD = ("Promoted", "Stable", "Deployed")


@dataclass(frozen=True)
class DecisionPoint:
    at: datetime
    reason: str
    message: str
    weight: int
    step: int
    revision: str


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def decisions(obj: dict[str, Any]) -> list[DecisionPoint]:
    """status.timeline as typed entries, oldest first; entries without a readable time are skipped."""
    out = []
    for e in (obj.get("status") or {}).get("timeline") or []:
        at = _time(e.get("at"))
        if at is not None:
            out.append(DecisionPoint(at, str(e.get("reason", "")), str(e.get("message", "")),
                                int(e.get("weight") or 0), int(e.get("step") or 0),
                                str(e.get("revision") or "")))
    return sorted(out, key=lambda d: d.at)


def weight_curve(points: Sequence[DecisionPoint], end: datetime) -> tuple[list[datetime], list[int]]:
    """A step curve of the new revision's weight: each decision's weight holds until the next."""
    if not points:
        return [], []
    times = [d.at for d in points] + [max(end, points[-1].at)]
    weights = [d.weight for d in points] + [points[-1].weight]
    return times, weights


def query_weight(
    prometheus: str, namespace: str, name: str, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    """kanaria_canary_weight of this ModelDeployment over [start, end] from Prometheus' query_range."""
    span = max((end - start).total_seconds(), 1.0)
    query = f'kanaria_canary_weight{{namespace="{namespace}",name="{name}"}}'
    params = urllib.parse.urlencode({
        "query": query, "start": start.timestamp(), "end": end.timestamp(),
        "step": f"{max(1.0, span / 500):.3f}",
    })
    url = f"{prometheus.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - a user-given URL
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise CliError(f"cannot query Prometheus at {prometheus}: {exc}: {detail}") from exc
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot query Prometheus at {prometheus}: {exc}") from exc
    series = body.get("data", {}).get("result", [])
    return [(datetime.fromtimestamp(float(t), UTC), float(v)) for s in series[:1] for t, v in s["values"]]


def render_png(
    obj: dict[str, Any], now: datetime, prom_weights: Sequence[tuple[datetime, float]] = ()
) -> bytes:
    try:
        import matplotlib
    except ImportError as exc:  # an optional extra of the operator's distribution
        raise CliError(
            "the report is drawn with matplotlib, which is not installed: pip install 'kanaria[report]'"
        ) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = decisions(obj)
    analysis = (obj.get("status") or {}).get("analysis") or []
    fig, (ax_w, ax_m) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=[1, 1])
    times, weights = weight_curve(points, now)
    if times:
        ax_w.step(times, weights, where="post", color="tab:orange", label="canary weight (status.timeline)")
    if prom_weights:
        ax_w.plot([t for t, _ in prom_weights], [v for _, v in prom_weights], ".", markersize=3,
                  color="tab:blue", label="kanaria_canary_weight (Prometheus)")
    ax_w.set_ylabel("% of traffic on the new revision")
    ax_w.set_ylim(-5, 105)
    for r in analysis:
        at = _time(r.get("at"))
        if at is None or r.get("value") is None:
            continue
        marker = {"pass": "o", "fail": "X"}.get(r.get("verdict", ""), "s")
        line = ax_m.plot([at], [float(r["value"])], marker, markersize=8,
                         label=f"{r.get('metric')} ({r.get('verdict')})")[0]
        if r.get("baseline") is not None:
            ax_m.plot([at], [float(r["baseline"])], "_", markersize=14, color=line.get_color(),
                      label=f"{r.get('metric')} baseline")
    ax_m.set_ylabel("metric value (last measurement)")
    ax_m.set_xlabel("time (UTC)")
    for d in points:
        color = "tab:red" if d.reason in BAD else "tab:green" if d.reason in GOOD else "tab:purple"
        for ax in (ax_w, ax_m):
            ax.axvline(d.at, color=color, alpha=0.3, linewidth=1)
        ax_w.annotate(d.reason, (d.at, 102), fontsize=7, rotation=90, va="top", color=color)
    for ax in (ax_w, ax_m):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=8)
    meta = obj["metadata"]
    fig.suptitle(f"ModelDeployment {meta['namespace']}/{meta['name']}")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(obj: dict[str, Any], png: bytes) -> str:
    meta, status = obj["metadata"], obj.get("status") or {}
    title = html.escape(f"Rollout report: {meta['namespace']}/{meta['name']}")
    image = base64.b64encode(png).decode("ascii")
    analysis = _html_table(
        ["metric", "kind", "verdict", "value", "baseline", "samples", "statistic", "threshold", "p-value", "reason"],
        [[a.get("metric"), a.get("kind", ""), a.get("verdict"), fmt_number(a.get("value")),
          fmt_number(a.get("baseline")), f"{a.get('samples', 0)}/{a.get('baselineSamples', 0)}",
          a.get("statistic", ""), fmt_number(a.get("threshold")), fmt_number(a.get("pValue"), 3),
          a.get("reason", "")] for a in status.get("analysis") or []],
    )
    timeline = _html_table(
        ["at", "decision", "weight", "step", "revision", "message"],
        [[d.at.isoformat(), d.reason, f"{d.weight}%", d.step, d.revision, d.message] for d in decisions(obj)],
    )
    history = _html_table(
        ["at", "revision", "version", "outcome", "reason"],
        [[h.get("at", ""), h.get("revision"), h.get("modelVersion", ""), h.get("outcome"), h.get("reason", "")]
         for h in status.get("history") or []],
    )
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>Phase <b>{html.escape(str(status.get('phase', 'Pending')))}</b> — "
        f"{html.escape(str(status.get('message', '')))}</p>",
        f'<img alt="rollout timeline" src="data:image/png;base64,{image}">',
        "<h2>Last verdicts</h2>", analysis,
        "<h2>Decisions</h2>", timeline,
        "<h2>History</h2>", history,
        "</body></html>",
        "",
    ])


def write_report(
    obj: dict[str, Any], out: Path, now: datetime, prometheus: str | None = None
) -> Path:
    """Write `out` (.png, or .html/.htm with the PNG inside)."""
    kind = out.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise CliError(f"cannot write {out}: the report is .png or .html")
    prom: list[tuple[datetime, float]] = []
    points = decisions(obj)
    if prometheus:
        start = points[0].at if points else now
        prom = query_weight(prometheus, obj["metadata"]["namespace"], obj["metadata"]["name"], start, now)
    png = render_png(obj, now, prom)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".png":
        out.write_bytes(png)
    else:
        out.write_text(render_html(obj, png), encoding="utf-8")
    return out
