"""The demo's ModelDeployment is named for what it serves."""

from __future__ import annotations

from kanaria.sandbox import demo, scenario


def test_the_demo_is_named_for_its_breast_cancer_classifier() -> None:
    assert scenario.DATASET == "breast_cancer"
    assert demo.NAME == "cancer-screen"
