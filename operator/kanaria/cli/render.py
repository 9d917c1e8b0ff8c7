"""Text views of ModelDeployments: pure functions of the object dicts the API returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from kanaria.api import ModelDeploymentSpec
from kanaria.rollout.clock import human_duration

__all__ = [
    "SETTLED",
    "table",
    "dump",
    "list_view",
    "status_view",
    "history_view",
    "analysis_table",
    "step_of",
    "settled",
    "fmt_number",
    "age",
]

SETTLED = ("Stable", "RolledBack", "Invalid")
"""Phases in which nothing moves until the spec changes or a person acts."""


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like kubectl's: three spaces between, no trailing spaces."""
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def dump(data: Any, fmt: str) -> str:
    """`data` as json or yaml."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False).rstrip("\n")


def fmt_number(x: object, digits: int = 4) -> str:
    if x is None or x == "":
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def age(at: str | None, now: datetime) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    if not at:
        return "-"
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    secs = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= 2 * size or (unit == "m" and secs >= size):
            return f"{secs // size}{unit}"
    return f"{secs}s"


def step_of(obj: dict[str, Any]) -> tuple[int, int] | None:
    """(step shown to a person, counting from 1; number of steps), or None outside a rollout."""
    status = obj.get("status") or {}
    if not status.get("canaryRevision"):
        return None
    total = _step_count(obj)
    current = int(status.get("currentStep") or 0)
    return min(current + 1, total) if total else current + 1, total


def settled(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") in SETTLED and not status.get("canaryRevision")


def _step_count(obj: dict[str, Any]) -> int:
    try:
        return len(ModelDeploymentSpec.model_validate(obj.get("spec") or {}).canary_steps())
    except ValueError:
        return 0


def _weights(status: dict[str, Any]) -> tuple[int, int]:
    canary = int(status.get("canaryWeight") or 0) if status.get("canaryRevision") else 0
    return 100 - canary, canary


def _step_text(obj: dict[str, Any]) -> str:
    step = step_of(obj)
    return f"{step[0]}/{step[1]}" if step else "-"


def _timeline_step(obj: dict[str, Any], entry: dict[str, Any]) -> str:
    if not entry.get("weight"):
        return ""
    total = _step_count(obj)
    shown = int(entry.get("step") or 0) + 1
    return f", step {min(shown, total) if total else shown}/{total}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- list


def list_view(items: Sequence[dict[str, Any]], *, all_namespaces: bool, now: datetime) -> str:
    headers = ["NAME", "MODEL", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in items:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        model = spec.get("model") or {}
        stable = status.get("stableRevision")
        canary = status.get("canaryRevision")
        row = [
            meta["name"],
            f"{model.get('name', '?')}:{model.get('version', '?')}",
            status.get("phase") or "Pending",
            f"{stable} ({status.get('stableVersion', '')})" if stable else "-",
            f"{canary} ({status.get('canaryVersion', '')})" if canary else "-",
            f"{status.get('canaryWeight', 0)}%" if canary else "-",
            _step_text(obj),
            age(meta.get("creationTimestamp"), now),
            _short(status.get("message") or "", 60),
        ]
        if all_namespaces:
            row.insert(0, meta["namespace"])
        rows.append(row)
    if not rows:
        return ""
    return table(headers, rows)


# --------------------------------------------------------------------------- status


def status_view(obj: dict[str, Any], now: datetime) -> str:
    """The live view of one rollout: where it is, the split, the evidence, why."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    model = spec.get("model") or {}
    stable_w, canary_w = _weights(status)
    phase = status.get("phase") or "Pending"
    if status.get("paused"):
        phase += " (paused by a person)"
    lines = [
        f"Name:       {meta['namespace']}/{meta['name']}",
        f"Model:      {model.get('name', '?')} {model.get('version', '?')}",
        f"Phase:      {phase}",
        f"Step:       {_step_text(obj)}",
        f"Stable:     {_revision(status, 'stable')}  weight {stable_w}%",
    ]
    if status.get("canaryRevision"):
        lines.append(f"Canary:     {_revision(status, 'canary')}  weight {canary_w}%")
    for arm in status.get("arms") or []:  # an A/B test with several challengers
        state = arm.get("outcome") or "running"
        why = f": {arm['reason']}" if arm.get("reason") else ""
        lines.append(f"Challenger: {arm.get('revision')} ({arm.get('version')})  weight "
                     f"{0 if arm.get('outcome') else arm.get('weight', 0)}%  {state}{why}")
    if status.get("priorRevision"):
        watch = f", watched until {status['watchUntil']}" if status.get("watchUntil") else ""
        lines.append(f"Prior:      {_revision(status, 'prior')} (kept warm{watch})")
    if status.get("rejectedRevision"):
        lines.append(f"Rejected:   {status['rejectedRevision']} (use retry to try it again)")
    lines.append(f"Failures:   {status.get('failures', 0)}   inconclusive streak: "
                 f"{status.get('inconclusiveStreak', 0)}")
    lines.append(f"Message:    {status.get('message') or '-'}")
    last = (status.get("timeline") or [None])[-1]
    if last:
        lines.append(
            f"Decision:   {last.get('reason')} {age(last.get('at'), now)} ago: {last.get('message', '')}"
            f" (weight {last.get('weight', 0)}%{_timeline_step(obj, last)})"
        )
    hist = (status.get("history") or [None])[-1]
    if hist:
        lines.append(
            f"History:    {hist.get('revision')} ({hist.get('modelVersion', '')}) {hist.get('outcome')}"
            f" {age(hist.get('at'), now)} ago: {hist.get('reason', '')}"
        )
    if status.get("lastAction"):
        lines.append(f"Action:     {status['lastAction']} (last handled)")
    analysis = status.get("analysis") or []
    lines += ["", "Analysis:" if analysis else "Analysis:   no measurements yet"]
    if analysis:
        lines.append(_indent(analysis_table(analysis, now)))
    lines += _monitoring_lines(status, now)
    lines += _job_lines(status, now)
    return "\n".join(lines)


def _monitoring_lines(status: dict[str, Any], now: datetime) -> list[str]:
    """The serving revision's monitoring: baseline, accuracy, the estimate, findings."""
    mon = status.get("monitoring")
    if not mon or mon.get("revision") != status.get("stableRevision"):
        return []
    base = mon.get("baselineAccuracy")
    if base is None:
        accuracy = f"learning its baseline ({mon.get('earlyLabels', 0)} labels so far)"
    else:
        recent = mon.get("recentAccuracy")
        accuracy = (f"{fmt_number(recent, 3)} recently ({mon.get('recentLabels', 0)} labels), baseline "
                    f"{fmt_number(base, 3)}; decay statistic {fmt_number(mon.get('cusum', 0.0), 3)} of "
                    f"{fmt_number(mon.get('threshold'), 3)}")
    lines = ["", f"Monitoring: revision {mon['revision']}, last checked "
             f"{age(mon.get('lastAt') or mon.get('startedAt'), now)} ago",
             f"  accuracy:  {accuracy}"]
    if mon.get("referenceAccuracy") is not None:
        lines.append(f"  validated: {fmt_number(mon['referenceAccuracy'], 3)} (reference profile)")
    if mon.get("estimatedAccuracy") is not None:
        lines.append(f"  estimate:  {fmt_number(mon['estimatedAccuracy'], 3)} from confidences (an estimate, "
                     "not a measurement)")
    findings = mon.get("findings") or []
    rows = [[f.get("kind", ""), "ALARM" if f.get("alarm") else "ok", fmt_number(f.get("value")),
             fmt_number(f.get("reference")), str(f.get("samples", 0)),
             age(f["since"], now) if f.get("since") else "-", _short(f.get("detail", ""), 70)] for f in findings]
    if rows:
        lines.append(_indent(table(["FINDING", "STATE", "VALUE", "REFERENCE", "SAMPLES", "SINCE", "DETAIL"], rows)))
    return lines


def _job_lines(status: dict[str, Any], now: datetime) -> list[str]:
    """Retraining and validation Jobs, the candidate and the validation verdict."""
    lines: list[str] = []
    jobs = status.get("jobs") or []
    if jobs:
        rows = [[j.get("purpose", ""), j.get("name", ""), j.get("state", ""), age(j.get("startedAt"), now),
                 _short(j.get("trigger") or j.get("subject") or "", 30), _short(j.get("reason", ""), 60)]
                for j in jobs[-5:]]
        lines += ["", "Jobs:", _indent(table(["PURPOSE", "JOB", "STATE", "AGE", "FOR", "RESULT"], rows))]
    cand = status.get("candidate")
    if cand:
        metrics = ", ".join(f"{k} {fmt_number(v, 3)}" for k, v in sorted((cand.get("metrics") or {}).items()))
        state = "adopted" if cand.get("adopted") else "not adopted yet (kubectl kanaria adopt)"
        lines.append(f"Candidate:  {cand.get('version')} {cand.get('uri')} ({metrics or 'no metrics'}); {state}")
    val = status.get("validation")
    if val:
        lines.append(f"Validation: {val.get('revision')} {val.get('verdict')}: {val.get('reason', '')}")
    return lines


def analysis_table(results: Sequence[dict[str, Any]], now: datetime) -> str:
    headers = ["METRIC", "KIND", "VERDICT", "VALUE", "BASELINE", "SAMPLES", "NEEDED", "STATISTIC",
               "SCORE", "THRESHOLD", "P-VALUE", "AGE", "REASON"]
    rows = [
        [
            r.get("metric", "?"),
            r.get("kind") or "-",
            r.get("verdict", "?"),
            fmt_number(r.get("value")),
            fmt_number(r.get("baseline")),
            f"{r.get('samples', 0)}/{r.get('baselineSamples', 0)}",
            _needed(r),
            r.get("statistic") or "-",
            fmt_number(r.get("score")),
            fmt_number(r.get("threshold")),
            fmt_number(r.get("pValue"), 3),
            age(r.get("at"), now),
            r.get("reason") or "",
        ]
        for r in results
    ]
    return table(headers, rows)


def _needed(result: dict[str, Any]) -> str:
    """``~340 (~2m)``: the samples a metric still needs and how long they take at the rate
    seen; ``-`` once decided or when it cannot tell."""
    needed, eta = result.get("needed"), result.get("etaSeconds")
    if not needed:
        return "-"
    if eta is None:
        return f"~{needed}"
    return f"~{needed} (~{human_duration(float(eta))})"


def _revision(status: dict[str, Any], which: str) -> str:
    rev = status.get(f"{which}Revision")
    if not rev:
        return "-"
    version = status.get(f"{which}Version")
    return f"{rev} ({version})" if version else str(rev)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# --------------------------------------------------------------------------- history


def history_view(obj: dict[str, Any], now: datetime) -> str:
    entries = (obj.get("status") or {}).get("history") or []
    if not entries:
        return ""
    rows = [
        [
            h.get("revision", "?"),
            h.get("modelVersion", ""),
            h.get("outcome", "?"),
            h.get("at", "") or "-",
            age(h.get("at"), now),
            h.get("reason", ""),
        ]
        for h in entries
    ]
    return table(["REVISION", "VERSION", "OUTCOME", "AT", "AGE", "REASON"], rows)
