"""manifests/monitoring: rules pass promtool, alerts fire (and stay quiet) in promtool's unit
tests, the PrometheusRule carries the same groups as rules.yaml, and the dashboard only queries
metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yaml"))
PROMTOOL = shutil.which("promtool")

_skip_without_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (hack/install-system-deps.sh installs Debian's prometheus package)",
)


def needs_promtool(test: Callable[..., None]) -> Callable[..., None]:
    """Marked `prometheus`, and skipped only when promtool is missing."""
    marked: Callable[..., None] = pytest.mark.prometheus(_skip_without_promtool(test))
    return marked


# Metrics Kanaria exports: the operator (kanaria.controller.metrics) and model servers
# (kanaria.monitor). Histograms also have _bucket, _sum and _count series.
OPERATOR_METRICS = {
    "kanaria_rollout_phase",
    "kanaria_canary_weight",
    "kanaria_rollout_step",
    "kanaria_verdicts_total",
    "kanaria_promotions_total",
    "kanaria_rollbacks_total",
    "kanaria_metric_query_errors_total",
    "kanaria_reconcile_errors_total",
    "kanaria_leader",
    "kanaria_serving_finding",
    "kanaria_serving_accuracy_decay_ratio",
    "kanaria_serving_estimated_accuracy",
}
MODEL_METRICS = {
    "kanaria_model_requests_total",
    "kanaria_model_errors_total",
    "kanaria_model_labels_total",
    "kanaria_model_info",
}
HISTOGRAMS = {
    "kanaria_analysis_duration_seconds",
    "kanaria_model_request_duration_seconds",
    "kanaria_model_feature",
    "kanaria_model_prediction",
}
SCRAPE_METRICS = {"up"}

PROMQL_WORDS = {
    # aggregations, functions and keywords that can appear bare (not followed by "(")
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def _recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def _known_metrics() -> set[str]:
    known = OPERATOR_METRICS | MODEL_METRICS | SCRAPE_METRICS | _recorded_names()
    for h in HISTOGRAMS:
        known |= {f"{h}_bucket", f"{h}_sum", f"{h}_count"}
    return known


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (good enough for the expressions we write)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_metric_names_parser() -> None:
    expr = (
        'sum by (metric, outcome) (increase(kanaria_verdicts_total{namespace="$namespace",'
        'name=~"a|b"}[$__rate_interval])) / on (namespace) group_left(x) up offset 5m'
    )
    assert metric_names(expr) == {"kanaria_verdicts_total", "up"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))") == {
        "x_bucket"
    }


# --------------------------------------------------------------------------- rules


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    run = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_unit_tests() -> None:
    assert PROMTOOL is not None
    assert PROMTOOL_TESTS, "no promtool unit tests in tests/promtool"
    run = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, PROMTOOL_TESTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert {
        "KanariaRollback",
        "KanariaRolloutStuck",
        "KanariaStableDrift",
        "KanariaOperatorDown",
        "KanariaMetricsUnavailable",
        "KanariaReconcileErrors",
    } <= alerts
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_alerts_have_severity_and_annotations() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_rules_only_reference_known_metrics() -> None:
    known = _known_metrics()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses {unknown}"


def test_prometheusrule_has_the_same_groups_as_rules_yaml() -> None:
    plain = yaml.safe_load(RULES.read_text())["groups"]
    cr = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert cr["apiVersion"] == "monitoring.coreos.com/v1"
    assert cr["kind"] == "PrometheusRule"
    assert cr["spec"]["groups"] == plain


def test_prometheusrule_is_what_the_generator_writes() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_rules.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_monitors_select_kanaria() -> None:
    docs = list(yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert (
        monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        and labels["app.kubernetes.io/name"] == "kanaria"
    )
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True  # keeps the ModelDeployment's `namespace` label
    operator = yaml.safe_load((ROOT / "manifests" / "base" / "operator.yaml").read_text())
    pod_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())

    pod_monitor = yaml.safe_load((MONITORING / "podmonitor-models.yaml").read_text())
    assert pod_monitor["kind"] == "PodMonitor"
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kanaria"
    }
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}


# --------------------------------------------------------------------------- dashboard


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in _panels(dashboard) for t in p.get("targets", [])]
    found += [
        (f"annotation {a['name']}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if "expr" in a
    ]
    return found


def test_dashboard_shape() -> None:
    d = _dashboard()
    assert d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "name"} <= set(variables)
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in _panels(d))
    for topic in (
        "phase",
        "canary weight",
        "verdicts",
        "promotions",
        "rollbacks",
        "accuracy",
        "error ratio",
        "latency p95",
        "request rate",
    ):
        assert topic in titles, topic
    for panel in _panels(d):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel[
                "title"
            ]


def test_dashboard_queries_only_known_metrics() -> None:
    d = _dashboard()
    known = _known_metrics()
    exprs = _exprs(d)
    assert len(exprs) >= 10
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= known, f"{title}: unknown metrics {names - known}"
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert inner is not None, var["name"]
            assert metric_names(inner.group(1)) <= known, var["name"]


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each panel's PromQL (Grafana variables filled in) is valid, checked by promtool."""
    assert PROMTOOL is not None
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m"}
    rules = []
    for i, (_, expr) in enumerate(_exprs(_dashboard())):
        for var, value in fill.items():
            expr = expr.replace(var, value)
        expr = re.sub(r"\$\w+", "x", expr)
        rules.append({"record": f"dashboard:check_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
