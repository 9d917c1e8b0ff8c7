"""An HTTPRoute as the sandbox's gateway reads it: the weighted split (Services or
InferencePools), the RequestMirror target of a shadow, and the header-matched rule of an A/B
test by match. HAProxy (:mod:`kanaria.sandbox.proxy`) and nginx
(:mod:`kanaria.sandbox.mirror`) are set from what these return."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kanaria.traffic.base import MATCH_RULE

__all__ = ["POOL_GROUP", "mirror_from_httproute", "pin_from_httproute", "pools_of_httproute",
           "weights_from_httproute"]

def _is_catch_all(rule: Mapping[str, Any]) -> bool:
    """A rule whose matches constrain nothing but the path (the weighted split)."""
    matches = rule.get("matches") or []
    return not matches or any(
        not (m.get("headers") or m.get("queryParams") or m.get("method")) for m in matches
    )


POOL_GROUP = "inference.networking.k8s.io"


def _is_pool(ref: Mapping[str, Any]) -> bool:
    return ref.get("group") == POOL_GROUP and ref.get("kind") == "InferencePool"


def _service_refs(rule: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    """The rule's Service and InferencePool backendRefs, as (name, weight)."""
    for ref in rule.get("backendRefs") or []:
        service = (ref.get("group") or "") == "" and (ref.get("kind") or "Service") == "Service"
        if not (service or _is_pool(ref)):
            continue
        weight = ref.get("weight")
        yield str(ref["name"]), 1 if weight is None else int(weight)


def pools_of_httproute(obj: Mapping[str, Any]) -> set[str]:
    """Names of the InferencePools an HTTPRoute's rules send traffic to."""
    return {
        str(ref["name"])
        for rule in (obj.get("spec") or {}).get("rules") or []
        for ref in rule.get("backendRefs") or []
        if _is_pool(ref)
    }


def weights_from_httproute(obj: Mapping[str, Any]) -> dict[str, int]:
    """Service (or InferencePool) name -> weight of an HTTPRoute's traffic split.

    The split is the first rule that has Service or InferencePool backendRefs and matches on
    nothing but the path (header- or query-matched rules are pinned routes, not the split);
    failing that, the first rule with such backendRefs. A missing weight is 1 (the Gateway API
    default); duplicates add up; other kinds of backend are ignored.
    """
    rules = [r for r in (obj.get("spec") or {}).get("rules") or [] if any(_service_refs(r))]
    if not rules:
        return {}
    rule = next((r for r in rules if _is_catch_all(r)), rules[0])
    weights: dict[str, int] = {}
    for name, weight in _service_refs(rule):
        weights[name] = weights.get(name, 0) + weight
    return weights


def _mirror_filter(rule: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for item in rule.get("filters") or []:
        if item.get("type") == "RequestMirror" and item.get("requestMirror"):
            mirror: Mapping[str, Any] = item["requestMirror"]
            return mirror
    return None


def mirror_from_httproute(obj: Mapping[str, Any]) -> tuple[str, float] | None:
    """(Service name, percent) of an HTTPRoute's RequestMirror filter, or None.

    Reads the first rule that carries a ``RequestMirror`` filter (the operator writes it on
    the first rule). The share is ``percent``, else ``fraction`` (``numerator`` over
    ``denominator``, which defaults to 100), else 100 (the Gateway API default: mirror
    everything). A backendRef of another kind than a core Service is ignored.
    """
    for rule in (obj.get("spec") or {}).get("rules") or []:
        mirror = _mirror_filter(rule)
        if mirror is None:
            continue
        ref = mirror.get("backendRef") or {}
        if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
            return None
        if not ref.get("name"):
            return None
        if mirror.get("percent") is not None:
            percent = float(int(mirror["percent"]))
        elif mirror.get("fraction") is not None:
            fraction = mirror["fraction"]
            denominator = int(fraction.get("denominator") or 100)
            if denominator <= 0:
                raise ValueError("RequestMirror fraction denominator must be positive")
            percent = 100.0 * int(fraction.get("numerator") or 0) / denominator
        else:
            percent = 100.0
        return str(ref["name"]), min(100.0, max(0.0, percent))
    return None


def pin_from_httproute(obj: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str, bool], ...]] | None:
    """(Service, header conditions) of the rule Kanaria adds for an A/B test by match, or None.

    Only the first match of that rule is read, and only its headers (the operator copies the
    user's path into it; the sandbox serves one path space)."""
    for rule in (obj.get("spec") or {}).get("rules") or []:
        if rule.get("name") != MATCH_RULE:
            continue
        refs = [r for r in rule.get("backendRefs") or [] if r.get("name")]
        if not refs:
            return None
        headers = ((rule.get("matches") or [{}])[0].get("headers")) or []
        conditions = tuple(
            (str(h["name"]), str(h["value"]), h.get("type", "Exact") == "RegularExpression") for h in headers
        )
        return str(refs[0]["name"]), conditions
    return None
