"""Reading weights and mirrors back from route objects (pure)."""

from __future__ import annotations

from kanaria.traffic.base import normalise
from kanaria.traffic.gatewayapi import mirror_from_route, weights_from_route
from kanaria.traffic.istio import weights_from_virtualservice
from kanaria.traffic.replicas import split_replicas


def test_weights_and_mirror_from_httproute() -> None:
    route = {"spec": {"rules": [{
        "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m-r2"}, "percent": 30}}],
        "backendRefs": [{"name": "m-r1", "weight": 3}, {"name": "m-r2", "weight": 1}, {"name": "other", "weight": 5}],
    }]}}
    assert weights_from_route("m", route) == {"r1": 75, "r2": 25}
    assert mirror_from_route("m", route) == ("r2", 30)
    assert mirror_from_route("m", {"spec": {"rules": [{"backendRefs": []}]}}) is None
    frac = {"spec": {"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "m-r2"}, "fraction": {"numerator": 1, "denominator": 4}}}]}]}}
    assert mirror_from_route("m", frac) == ("r2", 25)


def test_weights_from_virtualservice() -> None:
    vs = {"spec": {"http": [{"route": [{"destination": {"host": "m-r1.ns.svc"}, "weight": 90},
                                       {"destination": {"host": "m-r2"}, "weight": 10}]}]}}
    assert weights_from_virtualservice("m", vs) == {"r1": 90, "r2": 10}


def test_normalise_sums_to_100() -> None:
    assert sum(normalise({"a": 1, "b": 1, "c": 1}).values()) == 100
    assert normalise({"a": 0, "b": 0}) == {"a": 0, "b": 0}


def test_split_replicas_gives_every_live_revision_one() -> None:
    assert split_replicas(4, {"a": 90, "b": 10}) == {"a": 3, "b": 1}
    assert split_replicas(1, {"a": 90, "b": 10}) == {"a": 1, "b": 1}
    assert split_replicas(4, {"a": 100, "b": 0}) == {"a": 4, "b": 0}
