"""Reading weights and mirrors back from route objects (pure)."""

from __future__ import annotations

from kanaria.traffic.base import normalise
from kanaria.traffic.gatewayapi import mirror_from_route, route_unprogrammed, weights_from_route
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


def test_match_rule_round_trips_and_leaves_the_weighted_rule_alone() -> None:
    from kanaria.api.routing import HeaderCondition, RouteMatch, cookie_pattern
    from kanaria.traffic.gatewayapi import _match_rule, match_from_route

    user = {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"},
                         "headers": [{"name": "x-env", "value": "prod", "type": "Exact"}]}],
            "backendRefs": [{"name": "m-r1", "port": 80, "weight": 100}, {"name": "m-r2", "port": 80, "weight": 0}]}
    match = RouteMatch("r2", (HeaderCondition("x-group", "b"), HeaderCondition("cookie", cookie_pattern("ab", "b"), True)))
    ours = _match_rule("m", 80, match, [user])
    # The user's own path and headers stay in the match, so the rule is strictly more specific.
    assert ours["matches"][0]["path"] == {"type": "PathPrefix", "value": "/v1"}
    assert [h["name"] for h in ours["matches"][0]["headers"]] == ["x-env", "x-group", "cookie"]
    assert ours["matches"][0]["headers"][2]["type"] == "RegularExpression"
    route = {"spec": {"rules": [ours, user]}}
    assert match_from_route("m", route) == match
    assert weights_from_route("m", route) == {"r1": 100, "r2": 0}
    assert match_from_route("m", {"spec": {"rules": [user]}}) is None


def test_istio_match_route_round_trips() -> None:
    from kanaria.api.routing import HeaderCondition, RouteMatch
    from kanaria.traffic.istio import match_from_virtualservice

    vs = {"spec": {"http": [
        {"name": "kanaria-match", "match": [{"uri": {"prefix": "/"}, "headers": {"x-group": {"exact": "b"}}}],
         "route": [{"destination": {"host": "m-r2"}, "weight": 100}]},
        {"match": [{"uri": {"prefix": "/"}}],
         "route": [{"destination": {"host": "m-r1"}, "weight": 100}, {"destination": {"host": "m-r2"}, "weight": 0}]},
    ]}}
    assert match_from_virtualservice("m", vs) == RouteMatch("r2", (HeaderCondition("x-group", "b"),))
    assert weights_from_virtualservice("m", vs) == {"r1": 100, "r2": 0}


def _reported(generation: int, *parents: tuple[str, int | None, str]) -> dict[str, object]:
    return {"metadata": {"name": "m", "generation": generation}, "status": {"parents": [
        {"controllerName": who, "parentRef": {"name": "gw"}, "conditions": [
            {"type": "Accepted", "status": status, "reason": "NotAllowedByListeners" if status != "True" else "Accepted",
             **({"observedGeneration": seen} if seen is not None else {})}]}
        for who, seen, status in parents]}}


def test_a_route_is_programmed_when_every_reporting_gateway_accepted_its_generation() -> None:
    assert route_unprogrammed({"metadata": {"name": "m", "generation": 3}}) is None  # no gateway reports
    assert route_unprogrammed(_reported(3, ("a", 3, "True"), ("b", 3, "True"))) is None
    assert route_unprogrammed(_reported(3, ("a", None, "True"))) is None  # says nothing about generations
    behind = route_unprogrammed(_reported(4, ("a", 4, "True"), ("b", 3, "True")))
    assert behind == "b has not yet programmed generation 4 of HTTPRoute m (it reports generation 3)"
    refused = route_unprogrammed(_reported(4, ("a", 4, "False")))
    assert refused is not None and refused.startswith("a does not accept HTTPRoute m: NotAllowedByListeners")


def test_a_garbled_gateway_status_says_nothing_and_breaks_nothing() -> None:
    for status in ({"parents": "x"}, {"parents": ["x", {"conditions": "y"}]},
                   {"parents": [{"conditions": [{"type": "Accepted", "observedGeneration": "3"}]}]},
                   {"parents": [{"conditions": [{"type": "Accepted", "observedGeneration": True}]}]},
                   {"parents": [{"conditions": [7, {"type": "Accepted", "observedGeneration": {"a": 1}}]}]}):
        assert route_unprogrammed({"metadata": {"name": "m", "generation": 4}, "status": status}) is None
