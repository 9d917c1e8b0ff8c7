#!/usr/bin/env python3
"""Write manifests/monitoring/prometheusrule.yaml from manifests/monitoring/rules.yaml.

rules.yaml (a plain Prometheus rule file) is the source; the PrometheusRule carries the same
groups for the Prometheus Operator. ``--check`` exits 1 when the file on disk is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "manifests" / "monitoring" / "rules.yaml"
TARGET = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# Generated from rules.yaml by hack/gen_rules.py; edit rules.yaml, then run
#     python3 hack/gen_rules.py
# The Prometheus Operator loads this only if its ruleSelector matches the labels below
# (kube-prometheus-stack, for example, selects `release: <its release name>` by default).
"""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings so that PromQL stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "kanaria",
            "namespace": "kanaria-system",
            "labels": {
                "app.kubernetes.io/name": "kanaria",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": groups},
    }


def render(source: Path = SOURCE) -> str:
    groups = yaml.safe_load(source.read_text())["groups"]
    body = yaml.dump(prometheus_rule(groups), Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if prometheusrule.yaml is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(
                f"{TARGET.relative_to(ROOT)} is out of date: run python3 hack/gen_rules.py",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
