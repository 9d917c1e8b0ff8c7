"""Route matches: which requests a router sends to a revision regardless of the weights.

Shared by ``rollout`` (which asks for a match), ``traffic`` (which writes and reads it back) and
the controller; it lives in ``api`` so none of those imports another for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kanaria.api.models import TrafficMatch

__all__ = ["HeaderCondition", "RouteMatch", "cookie_pattern", "route_match"]


@dataclass(frozen=True)
class HeaderCondition:
    """One header a request must carry: ``name`` (lower case) equal to ``value``, or matching
    it as a regular expression."""

    name: str
    value: str
    regex: bool = False


@dataclass(frozen=True)
class RouteMatch:
    """Requests whose headers all match go to ``revision``; all others follow the weights."""

    revision: str
    headers: tuple[HeaderCondition, ...]


def cookie_pattern(name: str, value: str) -> str:
    """An anchored regular expression on the Cookie header for ``name=value`` (cookie tokens
    are validated by the API; regex metacharacters among them are escaped)."""
    return rf"^(.*;\s*)?{re.escape(name)}={re.escape(value)}(\s*;.*)?$"


def route_match(revision: str, match: TrafficMatch) -> RouteMatch:
    """The router-level form of an A/B test's match: the cookie becomes a Cookie header regex."""
    conditions = [
        HeaderCondition(h.name.lower(), h.value, h.type == "RegularExpression") for h in match.headers
    ]
    if match.cookie is not None:
        conditions.append(HeaderCondition("cookie", cookie_pattern(match.cookie.name, match.cookie.value), True))
    return RouteMatch(revision, tuple(conditions))
