"""Between rollouts, the rest of the loop: retraining Jobs (started by a finding, a schedule or
a person; one Job per incident), their candidates (adopted by Kanaria or by a person), and the
offline validation every new revision passes before it gets any traffic.

Jobs report through their termination message, JSON:

* retraining: ``{"version": "...", "uri": "...", "metrics": {"accuracy": 0.97, ...}}``
* validation: ``{"candidate": {"accuracy": 0.96}, "stable": {"accuracy": 0.95}, ...}``

Anything else — a failed or vanished Job, no message, a message that is not such JSON, a
version or URI Kanaria could not serve — is a failure with a clear reason: nothing is adopted,
nothing gets traffic, and nothing is retried until the next incident, schedule or request.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kanaria.api.durations import parse_duration
from kanaria.api.models import Candidate, JobRun, Model, ValidationResult
from kanaria.rollout.clock import iso
from kanaria.rollout.cycle import Cycle
from kanaria.rollout.monitoring import alarms, parse_time
from kanaria.rollout.types import JobRequest

__all__ = ["adopt", "follow_jobs", "retrain", "retrain_if_needed", "validation_gate", "JOBS_KEPT"]

JOBS_KEPT = 20


def _job_name(owner: str, purpose: str, now: datetime) -> str:
    stamp = _base36(int(now.timestamp() * 1000))
    return f"{owner[:40].rstrip('-')}-{purpose}-{stamp}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _running(c: Cycle, purpose: str) -> JobRun | None:
    return next((j for j in reversed(c.st.jobs) if j.purpose == purpose and j.state == "Running"), None)


def _start(c: Cycle, purpose: str, subject: str, trigger: str, env: dict[str, str]) -> JobRun:
    spec = c.spec.retraining if purpose == "retrain" else c.spec.validation
    assert spec is not None
    run = JobRun(name=_job_name(c.obs.name or c.spec.model.name, purpose, c.now), purpose=purpose,  # type: ignore[arg-type]
                 subject=subject, started_at=iso(c.now), trigger=trigger)
    c.d.jobs.append(JobRequest(run.name, purpose, spec.template, env, int(parse_duration(spec.active_deadline))))
    c.st.jobs = [*c.st.jobs, run][-JOBS_KEPT:]
    return run


# --------------------------------------------------------------------------- following Jobs


def follow_jobs(c: Cycle) -> None:
    """Take in the Jobs that ended since the last cycle; look again soon while one runs."""
    if any(j.state == "Running" for j in c.st.jobs):
        c.requeue(2.0)
    for run in list(c.st.jobs):
        if run.state != "Running":
            continue
        seen = c.obs.jobs.get(run.name)
        if seen is None or seen.state == "Running":
            continue
        done = run.model_copy(update={"finished_at": iso(c.now), "state": seen.state})
        if done.purpose == "retrain":
            _retrain_ended(c, done, seen.state == "Succeeded", seen.message, seen.reason)
        else:
            _validation_ended(c, done, seen.state == "Succeeded", seen.message, seen.reason)
        c.st.jobs = [done if j.name == run.name else j for j in c.st.jobs]


def _result(message: str) -> tuple[dict[str, Any] | None, str]:
    if not message.strip():
        return None, "the Job left no termination message (its result)"
    try:
        value = json.loads(message)
    except ValueError:
        return None, f"its termination message is not JSON: {message[:200]!r}"
    if not isinstance(value, dict):
        return None, "its termination message is not a JSON object"
    if "error" in value:
        return None, f"it reported an error: {str(value['error'])[:300]}"
    return value, ""


def _numbers(value: Any) -> dict[str, float] | None:
    if not isinstance(value, dict):
        return None
    out = {str(k)[:63]: float(v) for k, v in list(value.items())[:20]
           if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}
    return out


def _retrain_ended(c: Cycle, run: JobRun, ok: bool, message: str, reason: str) -> None:
    result, problem = _result(message) if ok else (None, reason or "the Job failed")
    candidate: Candidate | None = None
    if result is not None:
        metrics = _numbers(result.get("metrics", {}))
        try:
            model = Model(name=c.spec.model.name, version=str(result.get("version", "")), uri=str(result.get("uri", "")))
        except ValidationError as exc:
            problem = f"its result is not a model Kanaria can serve: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}"
        else:
            if metrics is None:
                problem = "its result's metrics are not an object of numbers"
            elif model.version == c.spec.model.version:
                problem = f"it returned the version already in the spec ({model.version})"
            else:
                candidate = Candidate(version=model.version, uri=model.uri, metrics=metrics, job=run.name, at=iso(c.now))
    if candidate is None:
        if not ok and message:
            detail, _ = _result(message)
            problem = f"{problem}; {message[:300]}" if detail is None else problem
        run.state = "Failed"
        run.reason = problem[:1024]
        c.event("RetrainingFailed", f"retraining Job {run.name} failed: {problem}; nothing adopted", warning=True)
        return
    run.reason = f"candidate {candidate.version}"
    c.st.candidate = candidate
    shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(candidate.metrics.items())) or "no metrics"
    c.event("CandidateReady", f"retraining Job {run.name} produced {candidate.version} at {candidate.uri} ({shown})")
    if c.spec.retraining is not None and c.spec.retraining.adopt == "auto":
        adopt(c, "adopted automatically (retraining.adopt: auto)")


def adopt(c: Cycle, why: str) -> bool:
    """Make the candidate the desired model: the controller writes it into spec.model."""
    cand = c.st.candidate
    if cand is None or c.spec.model.version == cand.version:
        c.event("ActionIgnored", "no candidate to adopt (none, or it is spec.model already)", warning=True)
        return False
    c.d.adopt = (cand.version, cand.uri)
    c.st.candidate = cand.model_copy(update={"adopted": True})
    c.event("CandidateAdopted", f"{cand.version} ({cand.uri}) written into spec.model: {why}")
    return True


# --------------------------------------------------------------------------- retraining


def retrain_if_needed(c: Cycle) -> None:
    """Start a retraining Job when a trigger of the spec fires: a finding (one Job per alarm
    episode, and no Job within the cooldown of the last) or the schedule."""
    r = c.spec.retraining
    st = c.st
    if r is None or _running(c, "retrain") is not None or st.stable_revision is None:
        return
    last = parse_time(st.last_retrain_at)
    if last is not None and (c.now - last).total_seconds() < parse_duration(r.cooldown):
        return
    tried = {j.trigger for j in st.jobs if j.purpose == "retrain"}
    for kind, trigger in (("drift", "drift"), ("accuracy", "accuracy"), ("validated", "accuracy"),
                          ("latency", None), ("errors", None)):
        if trigger is None or trigger not in r.triggers:
            continue
        for found in alarms(st, (kind,)):
            key = f"{kind} since {found.since}"
            began = parse_time(found.since)
            if key in tried or began is None:
                continue
            waited = (c.now - began).total_seconds()
            window = parse_duration(r.data_window)
            if waited < window:  # collect dataWindow of the new regime first
                c.requeue(window - waited)
                st.message = f"{kind}: retraining starts once {r.data_window} of data since the finding is in"
                return
            retrain(c, key, found.detail, since=began.timestamp())
            return
    if "schedule" in r.triggers and r.every is not None:
        mon = st.monitoring
        since = last or (parse_time(mon.started_at) if mon is not None else None)
        if since is not None and (c.now - since).total_seconds() >= parse_duration(r.every):
            retrain(c, f"schedule (every {r.every})", "")


def retrain(c: Cycle, trigger: str, evidence: str, since: float | None = None) -> JobRun | None:
    """Start a retraining Job now (a trigger fired, or a person asked). Its data window begins
    at ``since`` (a finding's start), else dataWindow ago."""
    r, st = c.spec.retraining, c.st
    if r is None:
        c.event("ActionIgnored", "no spec.retraining: nothing to start", warning=True)
        return None
    if _running(c, "retrain") is not None:
        c.event("ActionIgnored", "a retraining Job is running already", warning=True)
        return None
    since = _data_since(c) if since is None else since
    mon = st.monitoring
    evidence_json = json.dumps({
        "trigger": trigger, "evidence": evidence[:1000],
        "findings": [f.model_dump(mode="json", by_alias=True) for f in (mon.findings if mon else []) if f.alarm],
    })[:8000]
    env = {
        "KANARIA_MODEL_NAME": c.spec.model.name,
        "KANARIA_MODEL_VERSION": c.spec.model.version,
        "KANARIA_MODEL_URI": c.spec.model.uri,
        "KANARIA_REVISION": st.stable_revision or "",
        "KANARIA_TRIGGER": trigger,
        "KANARIA_EVIDENCE": evidence_json,
        "KANARIA_DATA_SINCE": f"{since:.0f}",
        "KANARIA_DATA_UNTIL": f"{c.now.timestamp():.0f}",
    }
    run = _start(c, "retrain", c.spec.model.version, trigger, env)
    st.last_retrain_at = iso(c.now)
    c.event("RetrainingStarted", f"retraining Job {run.name} started: {trigger}" + (f" ({evidence[:300]})" if evidence else ""))
    return run


# --------------------------------------------------------------------------- validation


def validation_gate(c: Cycle) -> bool:
    """True when the new revision may get traffic: no validation asked, or it passed. Starts
    the validation Job the first time; False while it runs or after it failed."""
    v, st, rev = c.spec.validation, c.st, c.obs.revision
    if v is None:
        return True
    result = st.validation
    if result is not None and result.revision == rev:
        if result.verdict == "pass":
            return True
        if result.verdict == "pending" and _running(c, "validate") is None:
            st.validation = None  # its Job was lost (a restart before it was recorded): start again
        else:
            st.message = f"validating revision {rev} ({c.obs.version}) offline before any traffic"
            return False
    env = {
        "KANARIA_MODEL_NAME": c.spec.model.name,
        "KANARIA_CANDIDATE_VERSION": c.obs.version,
        "KANARIA_CANDIDATE_URI": c.spec.model.uri,
        "KANARIA_CANDIDATE_REVISION": rev,
        "KANARIA_STABLE_VERSION": st.stable_version or "",
        "KANARIA_STABLE_URI": c.obs.stable_uri or "",
        "KANARIA_STABLE_REVISION": st.stable_revision or "",
        "KANARIA_METRIC": v.metric,
        "KANARIA_DATA_SINCE": f"{_data_since(c):.0f}",
        "KANARIA_DATA_UNTIL": f"{c.now.timestamp():.0f}",
    }
    run = _start(c, "validate", rev, "", env)
    st.validation = ValidationResult(revision=rev, reason=f"Job {run.name} running")
    st.message = f"validating revision {rev} ({c.obs.version}) offline before any traffic"
    c.event("ValidationStarted", f"validation Job {run.name} started for revision {rev} ({c.obs.version})")
    return False


def _data_since(c: Cycle) -> float:
    """The start of the recent data a Job may use: retraining.dataWindow ago (1h without)."""
    window = parse_duration(c.spec.retraining.data_window) if c.spec.retraining is not None else 3600.0
    return c.now.timestamp() - window


def _validation_ended(c: Cycle, run: JobRun, ok: bool, message: str, reason: str) -> None:
    v, st = c.spec.validation, c.st
    if st.validation is None or st.validation.revision != run.subject or v is None:
        run.reason = "no longer wanted"
        return
    result, problem = _result(message) if ok else (None, reason or "the Job failed")
    score = stable = None
    if result is not None:
        cand = _numbers(result.get("candidate"))
        base = _numbers(result.get("stable")) if result.get("stable") is not None else {}
        score = cand.get(v.metric) if cand else None
        stable = base.get(v.metric) if base else None
        if score is None:
            problem = f"its result has no finite candidate {v.metric!r}"
    if score is None:
        verdict, why = "fail", f"validation could not score the revision: {problem}"
    else:
        low = []
        if stable is not None and score < stable - v.margin:
            low.append(f"{v.metric} {score:.4g} below the stable revision's {stable:.4g} − {v.margin:g}")
        if v.min_score is not None and score < v.min_score:
            low.append(f"{v.metric} {score:.4g} below minScore {v.min_score:g}")
        shown = f"{v.metric} {score:.4g}" + (f" vs stable {stable:.4g} on the same data" if stable is not None else "")
        verdict, why = ("fail", "; ".join(low)) if low else ("pass", shown)
    st.validation = ValidationResult(revision=run.subject, verdict=verdict, score=score,  # type: ignore[arg-type]
                                     stable_score=stable, reason=why[:1024])
    run.reason = f"{verdict}: {why}"[:1024]
    if verdict == "pass":
        c.event("ValidationPassed", f"revision {run.subject} passed offline validation: {why}")
        return
    run.state = "Failed" if not ok or score is None else run.state
    version = c.obs.version if c.obs.revision == run.subject else ""
    st.rejected_revision = run.subject
    c.history(run.subject, version, "rejected", f"failed offline validation: {why}")
    c.event("ValidationFailed", f"revision {run.subject} rejected before any traffic: {why}", warning=True)
    st.message = f"revision {run.subject} rejected by offline validation: {why}"
