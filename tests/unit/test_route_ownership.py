"""Kanaria never takes over another application's route without its owner's opt-in."""

from __future__ import annotations

from typing import Any

from kanaria.traffic.base import ADOPT_ANNOTATION, foreign_route_problem


def route(backends: list[str], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "fraud", **meta},
            "spec": {"rules": [{"backendRefs": [{"name": b} for b in backends]}]}}


def test_a_route_to_another_application_is_refused_with_the_way_to_hand_it_over() -> None:
    problem = foreign_route_problem("HTTPRoute", route(["payments"]), "fraud", "uid-1", ["payments"])
    assert problem is not None
    assert "sends traffic to payments" in problem and f"{ADOPT_ANNOTATION}=fraud" in problem


def test_a_name_that_only_looks_like_a_revision_is_foreign() -> None:
    # fraud-payments is not NAME-<10 hex>: it belongs to someone else.
    assert foreign_route_problem("HTTPRoute", route([]), "fraud", "u", ["fraud-payments"]) is not None
    assert foreign_route_problem("HTTPRoute", route([]), "fraud", "u", ["fraud-0123456789"]) is None


def test_owned_opted_in_empty_or_already_ours_may_be_managed() -> None:
    assert foreign_route_problem("HTTPRoute", route([], ownerReferences=[{"uid": "u"}]), "fraud", "u", ["x"]) is None
    assert foreign_route_problem("HTTPRoute", route([], annotations={ADOPT_ANNOTATION: "fraud"}), "fraud", "u",
                                 ["x"]) is None
    assert foreign_route_problem("HTTPRoute", route([], annotations={ADOPT_ANNOTATION: "other"}), "fraud", "u",
                                 ["x"]) is not None
    assert foreign_route_problem("HTTPRoute", route([]), "fraud", "u", []) is None
    assert foreign_route_problem("VirtualService", route([]), "fraud", "u", ["fraud-aaaaaaaaaa", "fraud"]) is None
