"""The arithmetic of ``make bench-scale`` (kanaria.sandbox.scale): parsing the operator's
metrics, quantiles of its gap histogram, and what the harness's watches record."""

from __future__ import annotations

import math

from kanaria.sandbox.scale import (
    OperatorProbe,
    Tracker,
    Window,
    histogram_quantile,
    manifest,
    object_names,
    parse_metrics,
    percentile,
    sample,
)

EXPOSITION = """# HELP kanaria_operator_requests Requests
# TYPE kanaria_operator_requests gauge
kanaria_operator_requests{target="api"} 120.0
kanaria_operator_requests{target="prometheus"} 4.0
kanaria_operator_requests{target="query"} 40.0
kanaria_analysis_gap_ratio_bucket{le="1.0"} 6.0
kanaria_analysis_gap_ratio_bucket{le="1.5"} 9.0
kanaria_analysis_gap_ratio_bucket{le="2.0"} 10.0
kanaria_analysis_gap_ratio_bucket{le="+Inf"} 10.0
"""


def test_samples_by_name_and_labels() -> None:
    samples = parse_metrics(EXPOSITION)
    assert sample(samples, "kanaria_operator_requests", target="api") == 120
    assert sample(samples, "kanaria_operator_requests") == 164
    assert sample(samples, "absent") == 0


def test_gap_quantiles_are_bucket_bounds_of_the_window_only() -> None:
    after = parse_metrics(EXPOSITION)
    assert histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.5) == (1.0, 10)
    assert histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.9) == (1.5, 10)
    assert histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.99) == (2.0, 10)
    before = parse_metrics(EXPOSITION.replace('"1.5"} 9.0', '"1.5"} 6.0')
                           .replace('"2.0"} 10.0', '"2.0"} 6.0').replace('"+Inf"} 10.0', '"+Inf"} 6.0'))
    # Within the window: 0 at <=1.0, 3 at <=1.5, 1 at <=2.0.
    assert histogram_quantile(after, "kanaria_analysis_gap_ratio", 0.5, before) == (1.5, 4)
    value, count = histogram_quantile(before, "kanaria_analysis_gap_ratio", 0.5, before)
    assert math.isnan(value) and count == 0


def test_window_rates() -> None:
    a = {"at": 0.0, "process_cpu": 1.0, "process_rss_mb": 100.0, "audit": 10.0, "audit_leases": 2.0,
         'kanaria_operator_requests{target="api"}': 5.0}
    b = {"at": 60.0, "process_cpu": 4.0, "process_rss_mb": 110.0, "audit": 52.0, "audit_leases": 14.0,
         'kanaria_operator_requests{target="api"}': 35.0,
         'kanaria_operator_requests{target="prometheus"}': 6.0,
         'kanaria_operator_requests{target="query"}': 60.0}
    w = OperatorProbe.window(a, b, 10, [100.0, 120.0])
    assert w == Window(seconds=60.0, cpu_cores=0.05, rss_mb=120.0, api_per_s=0.7, leases_per_s=0.2, api_per_object_min=3.0,
                       api_counted_per_s=0.5, prometheus_requests_per_s=0.1, queries_per_s=1.0)


def test_percentile_is_an_observed_value() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_objects_are_spread_over_namespaces_of_at_most_a_hundred() -> None:
    names = object_names(250)
    assert len(set(names)) == 250
    assert {ns for ns, _ in names} == {"scale-0", "scale-1", "scale-2"}
    body = manifest("scale-0", "m00000", "v1", "http://p", 10, 120)
    assert body["spec"]["analysis"]["interval"] == "10s"
    assert "{{revision}}" in body["spec"]["analysis"]["metrics"][0]["query"]


def test_tracker_times_a_change_to_its_canary_deployment_and_route_weight() -> None:
    t = Tracker()
    md = {"metadata": {"namespace": "ns", "name": "a"}, "status": {"phase": "Stable", "stableRevision": "r1"}}
    t.on_change("ModelDeployment", md, "MODIFIED")
    assert t.count("Stable") == 1
    labels = {"kanaria.io/deployment": "a", "kanaria.io/revision": "r2"}
    deployment = {"metadata": {"namespace": "ns", "labels": labels}, "spec": {"replicas": 1}, "status": {}}
    t.on_change("Deployment", deployment, "ADDED")
    assert ("ns", "a") not in t.created_at, "a Deployment before the change is not the canary's"
    t.changed_at[("ns", "a")] = 0.0
    stable = {"metadata": {"namespace": "ns", "labels": {**labels, "kanaria.io/revision": "r1"}},
              "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    t.on_change("Deployment", stable, "MODIFIED")
    assert ("ns", "a") not in t.ready_at, "the stable revision's Deployment is not the canary's"
    t.on_change("Deployment", deployment, "ADDED")
    assert ("ns", "a") in t.created_at and ("ns", "a") not in t.ready_at
    t.on_change("Deployment", {**deployment, "status": {"readyReplicas": 1}}, "MODIFIED")
    assert ("ns", "a") in t.ready_at
    route = {"metadata": {"namespace": "ns", "name": "a"},
             "spec": {"rules": [{"backendRefs": [{"name": "a-r1", "weight": 100}, {"name": "a-r2", "weight": 0}]}]}}
    t.on_change("HTTPRoute", route, "MODIFIED")
    assert ("ns", "a") not in t.weighted_at
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 20
    t.on_change("HTTPRoute", route, "MODIFIED")
    assert ("ns", "a") in t.weighted_at
