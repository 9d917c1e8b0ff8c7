"""The CLI's pure parts: tables, the status view, actions and the report, on sample objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanaria.api import ModelDeploymentStatus
from kanaria.cli import actions, render
from kanaria.cli.kube import CliError, kubeconfig_path
from kanaria.cli.main import build_parser
from kanaria.cli.report import decisions, render_html, weight_curve, write_report

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"analysis": {}}]


def sample(**status: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phase": "Progressing",
        "message": "step 2/4: waiting for a person to promote",
        "stableRevision": "aaa111",
        "stableVersion": "v1",
        "canaryRevision": "bbb222",
        "canaryVersion": "v2",
        "canaryWeight": 20,
        "currentStep": 1,
        "failures": 0,
        "inconclusiveStreak": 2,
        "retired": {"zzz000": "2026-01-02T10:00:00Z"},
        "priorRevision": "yyy999",
        "lastAction": "pause@1",
        "analysis": [
            {"metric": "quality", "kind": "custom", "verdict": "pass", "value": 0.9712345,
             "baseline": 0.95, "samples": 1200, "baselineSamples": 4800, "statistic": "mSPRT",
             "threshold": 0.9, "pValue": 0.0123, "reason": "0.97 >= 0.9", "at": "2026-01-02T11:59:50Z"},
            {"metric": "latency", "kind": "latency", "verdict": "inconclusive", "value": None,
             "samples": 3, "baselineSamples": 10, "reason": "not enough samples", "at": "2026-01-02T11:59:50Z",
             "needed": 197, "etaSeconds": 150.0},
        ],
        "history": [
            {"revision": "aaa111", "modelVersion": "v1", "outcome": "deployed", "reason": "first", "at": "2026-01-02T09:00:00Z"},
            {"revision": "bbb222", "modelVersion": "v2", "outcome": "rolledBack", "reason": "quality fail: 0.5 >= 0.9 is false", "at": "2026-01-02T11:00:00Z"},
        ],
        "timeline": [
            {"at": "2026-01-02T11:50:00Z", "reason": "RolloutStarted", "message": "v2 at 20%", "revision": "bbb222", "weight": 20, "step": 0},
            {"at": "2026-01-02T11:55:00Z", "reason": "StepAdvanced", "message": "held for a person", "revision": "bbb222", "weight": 20, "step": 1},
        ],
    }
    base.update(status)
    ModelDeploymentStatus.model_validate(base)  # the samples are valid status objects
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "creationTimestamp": "2026-01-02T09:00:00Z",
                     "resourceVersion": "7"},
        "spec": {
            "model": {"name": "iris", "version": "v2", "uri": "file:///m/v2"},
            "traffic": {"gatewayAPI": {}},
            "strategy": {"canary": {"steps": STEPS}},
            "analysis": {"prometheus": {"address": "http://p:9090"},
                         "metrics": [{"name": "quality", "kind": "custom", "query": "q{revision=\"{{revision}}\"}", "condition": ">= 0.9"}]},
        },
        "status": base,
    }


def stable_sample() -> dict[str, Any]:
    return sample(phase="Stable", canaryRevision=None, canaryVersion=None, canaryWeight=0, currentStep=0,
                  message="aaa111 serves all traffic")


def test_table_aligns_columns_without_trailing_spaces() -> None:
    out = render.table(["A", "LONGER"], [["xxxx", "1"], ["y", ""]])
    assert out.splitlines() == ["A      LONGER", "xxxx   1", "y"]


def test_age_is_kubectl_style() -> None:
    assert render.age("2026-01-02T11:59:15Z", NOW) == "45s"
    assert render.age("2026-01-02T11:50:00Z", NOW) == "10m"
    assert render.age("2026-01-02T06:00:00Z", NOW) == "6h"
    assert render.age("2025-12-30T12:00:00Z", NOW) == "3d"
    assert render.age(None, NOW) == "-" and render.age("garbage", NOW) == "-"


def test_step_counts_from_one_and_uses_the_spec() -> None:
    assert render.step_of(sample()) == (2, 4)
    assert render.step_of(sample(currentStep=4)) == (4, 4)  # promoted past the last step
    assert render.step_of(stable_sample()) is None
    obj = sample()
    del obj["spec"]["strategy"]  # the default steps: 10%, judge, 50%, judge
    assert render.step_of(obj) == (2, 4)


def test_settled_only_without_a_canary() -> None:
    assert render.settled(stable_sample())
    assert not render.settled(sample())
    assert not render.settled(sample(phase="Paused"))
    assert render.settled(sample(phase="RolledBack", canaryRevision=None))


def test_list_view() -> None:
    out = render.list_view([sample(), stable_sample()], all_namespaces=True, now=NOW)
    header, first, second = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "MODEL", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE", "MESSAGE"]
    assert first.split()[:10] == ["ml", "iris", "iris:v2", "Progressing", "aaa111", "(v1)", "bbb222", "(v2)", "20%", "2/4"]
    assert "3h" in first and "waiting for a person" in first
    assert "Stable" in second and second.split()[6:8] == ["-", "-"]
    assert render.list_view([], all_namespaces=False, now=NOW) == ""
    assert not render.list_view([sample()], all_namespaces=False, now=NOW).startswith("NAMESPACE")


def test_status_view_shows_the_evidence_and_the_last_decision() -> None:
    out = render.status_view(sample(), NOW)
    lines = out.splitlines()
    assert "Name:       ml/iris" in lines
    assert "Phase:      Progressing" in lines
    assert "Step:       2/4" in lines
    assert "Stable:     aaa111 (v1)  weight 80%" in lines
    assert "Canary:     bbb222 (v2)  weight 20%" in lines
    assert "Message:    step 2/4: waiting for a person to promote" in lines
    assert "Decision:   StepAdvanced 5m ago: held for a person (weight 20%, step 2/4)" in lines
    assert any(line.startswith("History:    bbb222 (v2) rolledBack") and "0.5 >= 0.9" in line for line in lines)
    header = next(line for line in lines if "METRIC" in line).split()
    assert header == ["METRIC", "KIND", "VERDICT", "VALUE", "BASELINE", "SAMPLES", "NEEDED", "STATISTIC",
                      "SCORE", "THRESHOLD", "P-VALUE", "AGE", "REASON"]
    quality = next(line for line in lines if line.strip().startswith("quality")).split()
    assert quality[:11] == ["quality", "custom", "pass", "0.9712", "0.95", "1200/4800", "-", "mSPRT", "-", "0.9",
                            "0.0123"]
    assert "0.97 >= 0.9" in out
    latency = next(line for line in lines if line.strip().startswith("latency")).split()
    assert latency[2:8] == ["inconclusive", "-", "-", "3/10", "~197", "(~2m)"]


def test_status_view_of_a_stable_and_a_new_object() -> None:
    out = render.status_view(stable_sample(), NOW)
    assert "Stable:     aaa111 (v1)  weight 100%" in out and "Canary:" not in out and "Step:       -" in out
    fresh = sample()
    fresh.pop("status")
    out = render.status_view(fresh, NOW)
    assert "Phase:      Pending" in out and "no measurements yet" in out
    paused = render.status_view(sample(paused=True, phase="Paused"), NOW)
    assert "Phase:      Paused (paused by a person)" in paused


def test_history_view_and_dumps() -> None:
    out = render.history_view(sample(), NOW).splitlines()
    assert out[0].split() == ["REVISION", "VERSION", "OUTCOME", "AT", "AGE", "REASON"]
    assert out[1].split()[:3] == ["aaa111", "v1", "deployed"]
    assert out[2].split()[:3] == ["bbb222", "v2", "rolledBack"] and out[2].endswith("0.5 >= 0.9 is false")
    assert render.history_view(stable_sample() | {"status": {}}, NOW) == ""
    data = sample()["status"]["history"]
    assert json.loads(render.dump(data, "json")) == data
    assert yaml.safe_load(render.dump(data, "yaml")) == data


def test_action_values_are_unique_and_parse_as_the_operator_reads_them() -> None:
    from kanaria.rollout.types import UserAction

    a, b = actions.action_value("promote", now=NOW), actions.action_value("promote", now=NOW)
    assert a != b and a.startswith("promote@20260102T120000-")
    parsed = UserAction.parse(actions.action_value("rollback", "zzz000"))
    assert parsed is not None and (parsed.verb, parsed.arg) == ("rollback", "zzz000")
    assert actions.action_patch(a) == {"metadata": {"annotations": {"kanaria.io/action": a}}}


def test_rollback_accepts_only_kept_revisions() -> None:
    obj = sample()
    assert actions.kept_revisions(obj) == ["yyy999", "zzz000"]
    actions.check_rollback(obj, "zzz000")
    with pytest.raises(CliError, match=r'cannot roll back modeldeployment "iris" to "nope".*kept: yyy999, zzz000'):
        actions.check_rollback(obj, "nope")
    with pytest.raises(CliError, match="kept: none"):
        actions.check_rollback(sample(retired={}, priorRevision=None), "aaa111")


def test_wait_handled_times_out_with_a_clear_message() -> None:
    obj = sample()
    assert actions.wait_handled(lambda: obj, "pause@1", timeout=1) is obj
    with pytest.raises(CliError, match="did not handle kanaria.io/action=promote@2 within 0.1s"):
        actions.wait_handled(lambda: obj, "promote@2", timeout=0.1, interval=0.02)


def test_kubeconfig_path_follows_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/a/one:/b/two")
    assert kubeconfig_path(None) == Path("/a/one")
    assert kubeconfig_path("/x") == Path("/x")
    monkeypatch.delenv("KUBECONFIG")
    assert kubeconfig_path(None) == Path("~/.kube/config").expanduser()


def test_parser_accepts_global_flags_before_and_after_the_command() -> None:
    p = build_parser()
    a = p.parse_args(["-n", "ml", "status", "iris", "--watch"])
    assert (a.namespace, a.name, a.watch, a.output) == ("ml", "iris", True, "table")
    a = p.parse_args(["rollback", "iris", "--to", "abc", "--kubeconfig", "k", "--context", "c"])
    assert (a.kubeconfig, a.context, a.to, a.wait) == ("k", "c", "abc", False)
    assert not hasattr(p.parse_args(["list"]), "namespace")
    with pytest.raises(SystemExit):
        p.parse_args(["list", "-o", "wide"])


def test_report_curve_and_files(tmp_path: Path) -> None:
    obj = sample()
    points = decisions(obj)
    assert [d.reason for d in points] == ["RolloutStarted", "StepAdvanced"]
    times, weights = weight_curve(points, NOW)
    assert weights == [20, 20, 20] and times[-1] == NOW
    assert weight_curve([], NOW) == ([], [])
    png = write_report(obj, tmp_path / "r.png", NOW)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = write_report(obj, tmp_path / "r.html", NOW).read_text()
    assert page.startswith("<!DOCTYPE html>") and 'src="data:image/png;base64,iVBOR' in page
    assert "StepAdvanced" in page and "mSPRT" in page and "0.5 &gt;= 0.9 is false" in page
    with pytest.raises(CliError, match="the report is .png or .html"):
        write_report(obj, tmp_path / "r.pdf", NOW)
    assert "<h1>" in render_html(stable_sample() | {"status": {}}, b"x")


class FakeKube:
    """Stands in for kanaria.cli.kube.Kube: serves a list of successive objects, records patches."""

    namespace = "ml"

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)
        self.patches: list[dict[str, Any]] = []

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        if name != "iris":
            raise CliError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
        return self.objects.pop(0) if len(self.objects) > 1 else self.objects[0]

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        return self.objects[:1]

    def merge_patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        return self.objects[0]

    def close(self) -> None:
        pass


def run_main(monkeypatch: pytest.MonkeyPatch, fake: FakeKube, *argv: str) -> int:
    from kanaria.cli import main as cli_main

    monkeypatch.setattr(cli_main, "connect", lambda *a: fake)
    return cli_main.main(list(argv))


def test_actions_write_one_annotation(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeKube(sample())
    assert run_main(monkeypatch, fake, "promote", "iris", "--full") == 0
    assert run_main(monkeypatch, fake, "rollback", "iris", "--to", "zzz000") == 0
    values = [p["metadata"]["annotations"]["kanaria.io/action"] for p in fake.patches]
    assert values[0].startswith("promote-full@") and values[1].startswith("rollback:zzz000@")
    out = capsys.readouterr().out
    assert 'promote-full requested for modeldeployment "iris" in namespace "ml"' in out
    assert "rollback to zzz000 requested" in out


def test_errors_exit_1_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeKube(sample())
    assert run_main(monkeypatch, fake, "rollback", "iris", "--to", "nope") == 1
    assert run_main(monkeypatch, fake, "history", "other") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith('error: cannot roll back modeldeployment "iris" to "nope"')
    assert err[1] == 'error: modeldeployment "other" not found in namespace "ml"'
    assert fake.patches == []


def test_wait_prints_the_resulting_phase(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kanaria.cli import actions as cli_actions

    monkeypatch.setattr(cli_actions, "action_value", lambda verb, arg=None: f"{verb}@x")
    fake = FakeKube(sample(), sample(lastAction="pause@x", phase="Paused", paused=True,
                                     message="paused by a person at step 2/4"))
    assert run_main(monkeypatch, fake, "pause", "iris", "--wait", "--timeout", "5") == 0
    assert "handled: phase Paused, step 2/4, canary weight 20%: paused by a person at step 2/4" in capsys.readouterr().out


def test_watch_redraws_on_change_until_settled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    first, same, done = sample(), sample(), stable_sample()
    done["metadata"]["resourceVersion"] = "8"
    fake = FakeKube(first, same, done)
    assert run_main(monkeypatch, fake, "status", "iris", "--watch", "--interval", "0") == 0
    frames = capsys.readouterr().out.split("---\n")
    assert len(frames) == 2  # the unchanged object is not drawn again
    assert "Phase:      Progressing" in frames[0] and "Phase:      Stable" in frames[1]
    fake = FakeKube(sample())
    assert run_main(monkeypatch, fake, "status", "iris", "-w", "--interval", "0.01", "--timeout", "0.05") == 1
    assert capsys.readouterr().err.strip() == "error: still Progressing after 0.05s (stopped watching)"


def test_report_of_an_object_without_status(tmp_path: Path) -> None:
    obj = sample()
    obj.pop("status")
    assert write_report(obj, tmp_path / "empty.png", NOW).read_bytes().startswith(b"\x89PNG")


def test_status_view_lists_every_challenger_of_an_ab_test() -> None:
    arms = [{"revision": "bbb222", "version": "v2", "weight": 30, "outcome": "lost", "reason": "the incumbent wins"},
            {"revision": "ccc333", "version": "v3", "weight": 30}]
    lines = render.status_view(sample(arms=arms), NOW).splitlines()
    assert "Challenger: bbb222 (v2)  weight 0%  lost: the incumbent wins" in lines
    assert "Challenger: ccc333 (v3)  weight 30%  running" in lines


def test_status_view_shows_the_serving_revisions_monitoring_and_jobs() -> None:
    from datetime import UTC, datetime

    from kanaria.cli.render import status_view

    now = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    obj = {
        "metadata": {"namespace": "ml", "name": "iris"},
        "spec": {"model": {"name": "iris", "version": "v1"}},
        "status": {
            "phase": "Stable", "stableRevision": "r1", "stableVersion": "v1",
            "monitoring": {
                "revision": "r1", "startedAt": "2026-01-01T11:00:00Z", "lastAt": "2026-01-01T12:09:30Z",
                "baselineAccuracy": 0.95, "recentAccuracy": 0.9, "recentLabels": 300, "cusum": 9.5,
                "threshold": 13.7, "referenceAccuracy": 0.96, "estimatedAccuracy": 0.93,
                "findings": [{"kind": "drift", "alarm": True, "value": 0.31, "samples": 900,
                              "since": "2026-01-01T12:05:00Z", "detail": "1/31 drifted: mean radius"}],
            },
            "jobs": [{"name": "iris-retrain-1", "purpose": "retrain", "startedAt": "2026-01-01T12:06:00Z",
                      "state": "Succeeded", "trigger": "drift", "reason": "candidate v1-r2"}],
            "candidate": {"version": "v1-r2", "uri": "file:///m/v1-r2", "metrics": {"accuracy": 0.97}},
        },
    }
    text = status_view(obj, now)
    assert "Monitoring: revision r1, last checked 30s ago" in text
    assert "0.9 recently (300 labels), baseline 0.95" in text
    assert "estimate:  0.93 from confidences (an estimate" in text
    assert "drift" in text and "ALARM" in text and "mean radius" in text
    assert "iris-retrain-1" in text and "Succeeded" in text
    assert "Candidate:  v1-r2 file:///m/v1-r2 (accuracy 0.97); not adopted yet" in text


def test_what_others_wrote_cannot_rewrite_the_terminal() -> None:
    from kanaria.cli.main import printable

    hostile = "v2\x1b[2J\x1b[31mPROMOTED\u202egpj.exe\u200b\x07 ok\n\tnext"
    shown = printable(hostile)
    assert "\x1b" not in shown and "\u202e" not in shown and "\u200b" not in shown and "\x07" not in shown
    assert shown == "v2\\u{001b}[2J\\u{001b}[31mPROMOTED\\u{202e}gpj.exe\\u{200b}\\u{0007} ok\n\tnext"
    assert printable("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
