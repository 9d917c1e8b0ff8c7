"""The report of ``make bench-scale``: the table in docs/benchmarks.md, the plot of cost against
N, and the results saved as JSON (to add an N to earlier runs)."""

from __future__ import annotations

import json
from pathlib import Path

from kanaria.sandbox.scale import ScaleResult, Window

__all__ = ["load", "plot", "save", "table"]


def table(results: list[ScaleResult]) -> str:
    rows = [
        "| N | to Stable (s) | at rest: CPU (cores) | RSS (MB) | API req/s (Lease) | API req/object/min | Prom req/s "
        "| queries/s | change → first weight p50 / p99 (s) | operator share p50 / p99 (s) | cluster share p50 / p99 (s) "
        "| rollout: CPU | Prom req/s | queries/s | gap/interval p50 / p99 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r.n} | {r.stable_s:.0f} | {r.idle.cpu_cores:.3f} | {r.idle.rss_mb:.0f} "
            f"| {r.idle.api_per_s:.2f} ({r.idle.leases_per_s:.2f}) "
            f"| {r.idle.api_per_object_min:.4f} | {r.idle.prometheus_requests_per_s:.2f} | {r.idle.queries_per_s:.2f} "
            f"| {r.change_to_weight_p50_s:.1f} / {r.change_to_weight_p99_s:.1f} "
            f"| {r.operator_share_p50_s:.1f} / {r.operator_share_p99_s:.1f} "
            f"| {r.cluster_share_p50_s:.1f} / {r.cluster_share_p99_s:.1f} "
            f"| {r.rollout.cpu_cores:.2f} | {r.rollout.prometheus_requests_per_s:.2f} | {r.rollout.queries_per_s:.1f} "
            f"| ≤{r.gap_p50:g} / ≤{r.gap_p99:g} |"
        )
    return "\n".join(rows)


def plot(results: list[ScaleResult], path: Path) -> None:
    """Cost against N (log scale): CPU, API requests/s and Prometheus requests/s, at rest and
    during the rollout; matplotlib (the ``report`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r.n for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    series = [("CPU (cores)", "cpu_cores"), ("Kubernetes API requests/s", "api_per_s"),
              ("Prometheus requests/s", "prometheus_requests_per_s")]
    for ax, (title, attr) in zip(axes, series, strict=True):
        ax.plot(ns, [getattr(r.idle, attr) for r in results], "o-", label="at rest")
        ax.plot(ns, [getattr(r.rollout, attr) for r in results], "s-", label="during a rollout of all")
        ax.set_xscale("log")
        ax.set_xlabel("ModelDeployments")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(results: list[ScaleResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    (out / "scale.md").write_text(table(results) + "\n")


def load(out: Path) -> list[ScaleResult]:
    rows = json.loads((out / "scale.json").read_text())
    results = []
    for row in rows:
        row["idle"], row["rollout"] = Window(**row["idle"]), Window(**row["rollout"])
        results.append(ScaleResult(**row))
    return results
