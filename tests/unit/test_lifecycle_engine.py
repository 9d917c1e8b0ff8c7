"""Retraining on evidence and offline validation before traffic: the engine's part (pure)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tests.unit.test_engine import T0, make_spec, ready

from kanaria.api.models import Finding, ModelDeploymentStatus, MonitorStatus
from kanaria.api.observed import JobState
from kanaria.rollout import Observations, UserAction, decide

JOB = {"spec": {"containers": [{"name": "train", "image": "trainer:1", "command": ["python", "-m", "train"]}]}}


def spec(**extra: Any) -> Any:
    return make_spec(retraining={"template": JOB, "cooldown": "10m", "dataWindow": "5m",
                                 **extra.pop("retraining", {})}, **extra)


def drifting(since: str = "2026-01-01T11:50:00.000Z") -> ModelDeploymentStatus:
    mon = MonitorStatus(revision="r1", started_at="2026-01-01T10:00:00.000Z",
                        findings=[Finding(kind="drift", alarm=True, value=0.3, detail="mean radius JS 0.30",
                                          since=since)])
    return ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1", monitoring=mon)


def seen(rev: str = "r1", version: str = "v1", **kw: Any) -> Observations:
    return Observations(revision=rev, version=version, generation=1, workloads=ready("r1"), weights={"r1": 100},
                        name="iris", stable_uri="file:///models/v1", **kw)


def reasons(d: Any) -> list[str]:
    return [e.reason for e in d.events]


def test_drift_starts_one_retraining_job_with_the_evidence() -> None:
    d = decide(spec(), drifting(), seen(), T0)
    assert "RetrainingStarted" in reasons(d) and len(d.jobs) == 1
    job = d.jobs[0]
    assert job.name.startswith("iris-retrain-") and job.purpose == "retrain" and job.deadline_seconds == 3600
    env = dict(job.env)
    assert env["KANARIA_MODEL_VERSION"] == "v1" and env["KANARIA_MODEL_URI"] == "file:///models/v1"
    assert env["KANARIA_TRIGGER"].startswith("drift since") and "mean radius" in env["KANARIA_EVIDENCE"]
    assert float(env["KANARIA_DATA_UNTIL"]) - float(env["KANARIA_DATA_SINCE"]) == 600  # since the finding began
    assert d.status.jobs[-1].state == "Running" and d.status.last_retrain_at is not None
    # Still drifting next cycle: the running Job is followed, no second one.
    again = decide(spec(), d.status, seen(jobs={job.name: JobState("Running")}), T0 + timedelta(seconds=30))
    assert again.jobs == [] and "RetrainingStarted" not in reasons(again)


def test_retraining_waits_for_a_data_window_of_the_new_regime() -> None:
    early = decide(spec(), drifting(since="2026-01-01T11:58:00.000Z"), seen(), T0)
    assert early.jobs == [] and "retraining starts once 5m of data" in early.status.message
    assert early.requeue_after <= 180
    assert len(decide(spec(), early.status, seen(), T0 + timedelta(minutes=3)).jobs) == 1


def test_a_candidate_is_recorded_and_adopted_by_a_person_or_automatically() -> None:
    d = decide(spec(), drifting(), seen(), T0)
    name = d.jobs[0].name
    result = json.dumps({"version": "v1-r1", "uri": "file:///models/v1-r1", "metrics": {"accuracy": 0.97}})
    done = decide(spec(), d.status, seen(jobs={name: JobState("Succeeded", result)}), T0 + timedelta(minutes=1))
    assert "CandidateReady" in reasons(done) and done.adopt is None
    assert done.status.candidate is not None and done.status.candidate.metrics == {"accuracy": 0.97}
    assert done.status.jobs[-1].state == "Succeeded"
    # One incident, one Job: the same alarm does not start another, even after the cooldown.
    later = decide(spec(), done.status, seen(), T0 + timedelta(hours=2))
    assert later.jobs == []
    # A person adopts it.
    person = decide(spec(), later.status, seen(action=UserAction("adopt", None, "adopt@1")), T0 + timedelta(hours=2))
    assert person.adopt == ("v1-r1", "file:///models/v1-r1") and "CandidateAdopted" in reasons(person)
    # retraining.adopt: auto adopts at once.
    auto = spec(retraining={"adopt": "auto"})
    d = decide(auto, drifting(), seen(), T0)
    done = decide(auto, d.status, seen(jobs={d.jobs[0].name: JobState("Succeeded", result)}), T0 + timedelta(minutes=1))
    assert done.adopt == ("v1-r1", "file:///models/v1-r1")


def test_failed_hanging_or_garbage_jobs_adopt_nothing_and_say_why() -> None:
    cases = {
        JobState("Failed", "", "DeadlineExceeded: Job was active longer than specified deadline"): "DeadlineExceeded",
        JobState("Succeeded", "not json at all"): "not JSON",
        JobState("Succeeded", json.dumps({"version": "", "uri": "x"})): "not a model Kanaria can serve",
        JobState("Succeeded", json.dumps({"version": "v1", "uri": "x", "metrics": {}})): "already in the spec",
        JobState("Succeeded", ""): "no termination message",
        JobState("Failed", json.dumps({"error": "only 12 labelled samples"}), "BackoffLimitExceeded"): "BackoffLimitExceeded",
    }
    for state, said in cases.items():
        d = decide(spec(retraining={"adopt": "auto"}), drifting(), seen(), T0)
        done = decide(spec(retraining={"adopt": "auto"}), d.status, seen(jobs={d.jobs[0].name: state}),
                      T0 + timedelta(minutes=1))
        failed = [e for e in done.events if e.reason == "RetrainingFailed"]
        assert failed and said in failed[0].message, (state, failed)
        assert done.adopt is None and done.status.candidate is None
        assert done.status.jobs[-1].state == "Failed" and said in done.status.jobs[-1].reason
        assert done.status.stable_revision == "r1"
        cond = next(c for c in done.status.conditions if c.type == "Retraining")
        assert cond.reason == "RetrainingFailed" and said in cond.message and "unchanged" in cond.message


def test_a_new_alarm_after_the_cooldown_starts_a_new_job_and_none_within_it() -> None:
    d = decide(spec(), drifting(), seen(), T0)
    done = decide(spec(), d.status, seen(jobs={d.jobs[0].name: JobState("Failed", "", "Error")}), T0 + timedelta(minutes=1))
    fresh = done.status.model_copy(update={"monitoring": drifting("2026-01-01T12:03:00.000Z").monitoring})
    soon = decide(spec(), fresh, seen(), T0 + timedelta(minutes=5))
    assert soon.jobs == []  # within the 10m cooldown
    late = decide(spec(), fresh, seen(), T0 + timedelta(minutes=11))
    assert len(late.jobs) == 1


def test_schedule_and_a_person_start_jobs_too() -> None:
    quiet = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1",
                                  monitoring=MonitorStatus(revision="r1", started_at="2026-01-01T11:00:00.000Z"))
    every = spec(retraining={"triggers": ["schedule"], "every": "30m"})
    assert decide(every, quiet, seen(), T0).jobs[0].env["KANARIA_TRIGGER"] == "schedule (every 30m)"
    none = spec(retraining={"triggers": ["manual"]})
    assert decide(none, quiet, seen(), T0).jobs == []
    asked = decide(none, quiet, seen(action=UserAction("retrain", None, "retrain@1")), T0)
    assert asked.jobs and asked.jobs[0].env["KANARIA_TRIGGER"] == "requested by a person"


def validating_spec() -> Any:
    return make_spec(validation={"template": JOB, "margin": 0.01})


def test_a_new_revision_is_validated_offline_before_any_traffic() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d = decide(validating_spec(), st, seen("r2", "v2"), T0)
    assert d.status.phase == "Validating" and d.status.canary_revision is None
    assert d.weights == {"r1": 100} and "r2" not in d.replicas
    (job,) = d.jobs
    assert job.purpose == "validate" and job.env["KANARIA_CANDIDATE_REVISION"] == "r2"
    assert job.env["KANARIA_STABLE_URI"] == "file:///models/v1" and job.env["KANARIA_CANDIDATE_VERSION"] == "v2"
    running = decide(validating_spec(), d.status, seen("r2", "v2", jobs={job.name: JobState("Running")}),
                     T0 + timedelta(seconds=10))
    assert running.status.phase == "Validating" and running.weights == {"r1": 100} and running.jobs == []
    passed = json.dumps({"candidate": {"accuracy": 0.95}, "stable": {"accuracy": 0.955}})
    ok = decide(validating_spec(), running.status, seen("r2", "v2", jobs={job.name: JobState("Succeeded", passed)}),
                T0 + timedelta(seconds=20))
    assert "ValidationPassed" in reasons(ok) and ok.status.canary_revision == "r2"
    assert ok.status.validation is not None and ok.status.validation.verdict == "pass"


def test_a_revision_that_fails_validation_never_gets_traffic() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d = decide(validating_spec(), st, seen("r2", "v2"), T0)
    worse = json.dumps({"candidate": {"accuracy": 0.80}, "stable": {"accuracy": 0.95}})
    done = decide(validating_spec(), d.status, seen("r2", "v2", jobs={d.jobs[0].name: JobState("Succeeded", worse)}),
                  T0 + timedelta(seconds=20))
    assert "ValidationFailed" in reasons(done) and done.status.canary_revision is None
    assert done.status.rejected_revision == "r2" and done.status.history[-1].outcome == "rejected"
    assert "accuracy 0.8 below the stable revision's 0.95" in done.status.history[-1].reason
    assert done.weights == {"r1": 100} and done.status.phase == "RolledBack"
    later = decide(validating_spec(), done.status, seen("r2", "v2"), T0 + timedelta(minutes=5))
    assert later.jobs == [] and later.status.canary_revision is None and later.weights == {"r1": 100}
    # retry validates it again from the start.
    retry = decide(validating_spec(), later.status, seen("r2", "v2", action=UserAction("retry", None, "retry@1")),
                   T0 + timedelta(minutes=6))
    assert [j.purpose for j in retry.jobs] == ["validate"] and retry.status.phase == "Validating"
    # Garbage from the validation Job is a failure too.
    d = decide(validating_spec(), st, seen("r3", "v3"), T0)
    junk = decide(validating_spec(), d.status, seen("r3", "v3", jobs={d.jobs[0].name: JobState("Succeeded", "[1, 2]")}),
                  T0 + timedelta(seconds=20))
    assert junk.status.rejected_revision == "r3" and "not a JSON object" in junk.status.validation.reason  # type: ignore[union-attr]
