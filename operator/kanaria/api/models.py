"""The ModelDeployment resource: what a user writes (spec) and what Kanaria reports (status).

These pydantic models are the single source of truth: ``make crds`` generates
``crds/modeldeployment.yaml`` from them, and the controller parses every object through them.
Field docstrings become the CRD's descriptions, so ``kubectl explain`` shows them.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kanaria.api.addresses import address_problem
from kanaria.api.durations import (
    DURATION_PATTERN,
    OPTIONAL_DURATION_PATTERN,
    bounded_duration,
    parse_duration,
)
from kanaria.api.llmservers import LLM_KINDS, EvidenceUnit, LLMServer, kind_problem
from kanaria.api.podsecurity import baseline_violations, policy
from kanaria.api.querytemplate import check_template

__all__ = [
    "GROUP",
    "VERSION",
    "KIND",
    "PLURAL",
    "Model",
    "PauseStep",
    "AnalysisStep",
    "CanaryStep",
    "CanaryStrategy",
    "ABTestStrategy",
    "ShadowStrategy",
    "Strategy",
    "GatewayAPITraffic",
    "ParentRef",
    "IstioTraffic",
    "ReplicasTraffic",
    "Traffic",
    "PrometheusSource",
    "MetricKind",
    "Metric",
    "Analysis",
    "RollbackPolicy",
    "ModelDeploymentSpec",
    "Condition",
    "MetricResult",
    "HistoryEntry",
    "TimelineEntry",
    "Phase",
    "ModelDeploymentStatus",
]

GROUP = "kanaria.io"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"

Duration = str
"""A duration: its field's pattern (DURATION_PATTERN, e.g. "30s", "5m", "1h") and at most 3650d
(every model checks the durations among its fields)."""

VISIBLE = r"^[^\p{Z}\p{Cc}\p{Cf}\p{Co}]+$"
"""Visible characters only: no spaces, control or format characters (zero-width joiners,
right-to-left overrides, terminal escape sequences) that make two strings look alike or
rewrite a terminal."""
PRINTABLE = r"^[^\p{Cc}\p{Cf}\p{Co}\p{Zl}\p{Zp}]+$"
"""Like VISIBLE, but spaces are allowed (feature names such as "mean radius")."""
MODEL_VERSION = r"^[A-Za-z0-9][-A-Za-z0-9._+:~]*$"
"""A model version: ASCII letters, digits and -._+:~ (v2, 2026-11-01, 1.4.0+build.7)."""
METRIC_NAME = r"^[a-zA-Z][-a-zA-Z0-9_]*$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name (RFC 1123 subdomain): routes the operator writes, Gateways it names."""
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=METRIC_NAME)]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=PRINTABLE),
                        AfterValidator(lambda name: unicodedata.normalize("NFC", name))]
"""A feature name, NFC-normalised (and compared with the exported names normalised alike):
two spellings of "é" are one feature, never two that look the same."""
Host = Annotated[str, StringConstraints(
    min_length=1, max_length=253,
    pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
"""A host name a route answers for: no wildcards (``*`` would take other applications' traffic)."""
SERVED_MODEL_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._:/-]{0,126}[A-Za-z0-9])?$"
"""A model name as an OpenAI-compatible server serves it (``org/model``, ``sql-lora:v2``)."""
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


_DURATION_PATTERNS = (DURATION_PATTERN, OPTIONAL_DURATION_PATTERN)


def _one_of(*fields: str) -> str:
    return "[" + ", ".join(f"has(self.{f})" for f in fields) + "].filter(x, x).size() == 1"


class _Base(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )

    @model_validator(mode="after")
    def _bounded_durations(self) -> Any:
        for name, info in type(self).model_fields.items():
            if any(getattr(m, "pattern", None) in _DURATION_PATTERNS for m in info.metadata):
                value = getattr(self, name)
                if isinstance(value, str):
                    try:
                        bounded_duration(value)
                    except ValueError as exc:
                        raise ValueError(f"{info.alias or name}: {exc}") from None
        return self


# --------------------------------------------------------------------------- spec


class Model(_Base):
    """The model this deployment serves. Changing any field starts a rollout."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Model name, used as the `model` label on metrics (a DNS label)."""
    version: str = Field(min_length=1, max_length=128, pattern=MODEL_VERSION)
    """Human version of the model (for example v2 or 2026-11-01; ASCII letters, digits and
    -._+:~). Recorded in history."""
    uri: str = Field(min_length=1, max_length=2048, pattern=VISIBLE)
    """Where the model artifact lives; reaches the pod as KANARIA_MODEL_URI."""
    adapter: str | None = Field(default=None, max_length=128, pattern=SERVED_MODEL_NAME)
    """LoRA adapter served on top of the base model (its served name, as clients' ``model``
    field says it); reaches the pod as KANARIA_MODEL_ADAPTER. With
    ``traffic.gatewayAPI.inferencePool.modelRewrite`` an adapter rollout moves the weights of
    an InferenceModelRewrite from the old adapter to the new one."""


class PauseStep(_Base):
    """Hold the current weight. Without a duration the rollout waits for a promote action."""

    duration: Duration | None = Field(default=None, pattern=DURATION_PATTERN)
    """How long to hold, for example 30s or 5m. Omit to wait until a person promotes."""


class AnalysisStep(_Base):
    """Hold the current weight until every listed metric passes (evidence, not the clock)."""

    metrics: list[MetricName] | None = Field(default=None, max_length=32)
    """Names of metrics from spec.analysis.metrics to judge here; all of them when omitted."""
    deadline: Duration | None = Field(default=None, pattern=DURATION_PATTERN)
    """Longest time to wait for a decision at this step; spec.analysis.progressDeadline when omitted."""


class CanaryStep(_Base):
    """One step of a canary: exactly one of setWeight, pause or analysis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _one_of("setWeight", "pause", "analysis"),
                    "message": "each step must set exactly one of setWeight, pause or analysis",
                }
            ]
        }
    )

    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic for the new revision, 0 to 100."""
    pause: PauseStep | None = None
    """Hold the current weight for a duration, or until promoted."""
    analysis: AnalysisStep | None = None
    """Hold the current weight until the metrics decide."""

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        if sum(x is not None for x in (self.set_weight, self.pause, self.analysis)) != 1:
            raise ValueError("each step must set exactly one of setWeight, pause or analysis")
        return self


def _default_steps() -> list[CanaryStep]:
    return [
        CanaryStep(set_weight=10),
        CanaryStep(analysis=AnalysisStep()),
        CanaryStep(set_weight=50),
        CanaryStep(analysis=AnalysisStep()),
    ]


class CanaryStrategy(_Base):
    """Shift traffic to the new revision step by step; promote after the last step."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                    "message": "setWeight values must not decrease from one step to the next",
                }
            ]
        }
    )

    steps: list[CanaryStep] = Field(min_length=1, max_length=50)
    """The steps, in order; the new revision is promoted after the last one."""

    @model_validator(mode="after")
    def _non_decreasing(self) -> CanaryStrategy:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if weights != sorted(weights):
            raise ValueError("setWeight values must not decrease from one step to the next")
        return self


HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
COOKIE_TOKEN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"


class HeaderMatch(_Base):
    """One HTTP header a request must carry."""

    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME)
    """Header name (case-insensitive on the wire)."""
    value: str = Field(min_length=1, max_length=1024, pattern=PRINTABLE)
    """The value, or a regular expression when type is RegularExpression."""
    type: Literal["Exact", "RegularExpression"] = "Exact"
    """Exact (every router) or RegularExpression (an RE2/PCRE subset; the router's dialect)."""


class CookieMatch(_Base):
    """A cookie a request must carry, with this exact value."""

    name: str = Field(min_length=1, max_length=256, pattern=COOKIE_TOKEN)
    """Cookie name."""
    value: str = Field(min_length=1, max_length=1024, pattern=COOKIE_TOKEN)
    """Cookie value (a token: no spaces, quotes, commas or semicolons)."""


class TrafficMatch(_Base):
    """Which requests go to the challenger: all the headers match and, when given, the cookie."""

    headers: list[HeaderMatch] = Field(default_factory=list, max_length=8)
    """Headers that must all match."""
    cookie: CookieMatch | None = None
    """A cookie that must be present with this value (matched on the Cookie header)."""

    @model_validator(mode="after")
    def _something(self) -> TrafficMatch:
        if not self.headers and self.cookie is None:
            raise ValueError("match needs at least one header or a cookie")
        names = [h.name.lower() for h in self.headers]
        twice = next((h.name for h in self.headers if names.count(h.name.lower()) > 1), None)
        if twice is not None:
            raise ValueError(f"header {twice!r} is matched twice (header names are case-insensitive)")
        return self


class ABArm(_Base):
    """Another challenger in an A/B test: the same template and model name, another version."""

    version: str = Field(min_length=1, max_length=128, pattern=MODEL_VERSION)
    """Version of this challenger's model; recorded in history."""
    uri: str = Field(min_length=1, max_length=2048, pattern=VISIBLE)
    """Where its model artifact lives."""
    weight: int = Field(ge=1, le=98)
    """Percent of traffic for this challenger."""


class ABTestStrategy(_Base):
    """Split traffic between the incumbent and the challenger — at a fixed weight, or by a
    header or cookie match — and pick a winner."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.match) || !has(self.bandit) || !self.bandit",
                    "message": "bandit moves weights; an A/B test by match has none",
                },
                {
                    "rule": "!has(self.match) || size(self.match.headers) > 0 || has(self.match.cookie)",
                    "message": "match needs at least one header or a cookie",
                },
                {
                    "rule": "!has(self.challengers) || size(self.challengers) == 0 || "
                    "(!has(self.match) && (!has(self.bandit) || !self.bandit))",
                    "message": "more challengers need a weighted split: no match, no bandit",
                },
                {
                    "rule": "!has(self.challengers) || "
                    "self.challengers.map(c, c.weight).sum() + (has(self.weight) ? self.weight : 50) <= 99",
                    "message": "the challengers' weights must leave the incumbent at least 1%",
                },
            ]
        }
    )

    weight: int = Field(default=50, ge=1, le=99)
    """Percent of traffic for the challenger (the new revision); unused with match."""
    match: TrafficMatch | None = None
    """Send the requests that match to the challenger and all others to the incumbent, instead
    of a weighted split (users keep their arm). Needs gatewayAPI or istio."""
    challengers: list[ABArm] = Field(default_factory=list, max_length=4)
    """More challengers beside spec.model, each at its own weight: every challenger is judged
    against the incumbent, losers are retired as they lose, and the best significant winner
    is promoted (even if it is not spec.model: the status then says which version won)."""
    primary_metric: str = Field(min_length=1, max_length=63, pattern=METRIC_NAME)
    """Name of the metric (from spec.analysis.metrics) that decides the winner."""
    guardrails: list[MetricName] = Field(default_factory=list, max_length=32)
    """Metrics every winner must pass."""
    max_duration: Duration = Field(default="1h", pattern=DURATION_PATTERN)
    """When no winner is decided by then, the incumbent stays."""
    bandit: bool = False
    """Move the split toward the better arm by Thompson sampling on the primary metric
    (accuracy or errorRate), only while every guardrail passes. Off by default: delayed labels
    and changing traffic bias bandits, and bandits do not control error rates."""
    exploration_floor: int = Field(default=10, ge=1, le=50)
    """With bandit: the least percent of traffic either arm keeps."""

    @model_validator(mode="after")
    def _match_without_bandit(self) -> ABTestStrategy:
        if self.match is not None and self.bandit:
            raise ValueError("bandit moves weights; an A/B test by match has none")
        if self.challengers and (self.match is not None or self.bandit):
            raise ValueError("more challengers need a weighted split: no match, no bandit")
        if self.challengers and self.weight + sum(c.weight for c in self.challengers) > 99:
            raise ValueError("the challengers' weights must leave the incumbent at least 1%")
        versions = [c.version for c in self.challengers]
        if len(set(versions)) != len(versions):
            raise ValueError("abTest.challengers need distinct versions")
        return self


class ShadowStrategy(_Base):
    """Mirror live traffic to the new revision (its responses discarded) and judge it there;
    it is promoted only when every metric passes, without ever serving a user before."""

    percent: int = Field(default=100, ge=1, le=100)
    """Percent of requests mirrored."""
    duration: Duration = Field(default="10m", pattern=DURATION_PATTERN)
    """Longest time to wait for the shadow's metrics to decide; then onInconclusive acts."""


class Strategy(_Base):
    """How a new revision earns its traffic: exactly one of canary, abTest or shadow."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.canary), has(self.abTest), has(self.shadow)].filter(x, x).size() <= 1",
                    "message": "choose at most one of canary, abTest or shadow",
                }
            ]
        }
    )

    canary: CanaryStrategy | None = None
    """Stepped canary (the default when no strategy is given)."""
    ab_test: ABTestStrategy | None = None
    """A/B test with a winner."""
    shadow: ShadowStrategy | None = None
    """Shadow (mirrored) traffic."""

    @model_validator(mode="after")
    def _at_most_one(self) -> Strategy:
        if sum(x is not None for x in (self.canary, self.ab_test, self.shadow)) > 1:
            raise ValueError("choose at most one of canary, abTest or shadow")
        return self



class ParentRef(_Base):
    """A Gateway the HTTPRoute attaches to."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Gateway."""
    namespace: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Namespace of the Gateway; the ModelDeployment's when omitted."""
    section_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    """Listener name on the Gateway."""


class EndpointPickerRef(_Base):
    """The InferencePool's endpoint picker (the Inference Extension's EPP), a Service."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Name of the endpoint picker's Service, in the ModelDeployment's namespace."""
    port: int = Field(default=9002, ge=1, le=65535)
    """Its gRPC ext-proc port."""
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"
    """What the gateway does when the picker does not answer."""


class ModelRewrite(_Base):
    """An adapter rollout: clients ask for ``modelName``; an InferenceModelRewrite sends each
    request to one revision's ``spec.model.adapter`` by weight."""

    model_name: str = Field(min_length=1, max_length=128, pattern=SERVED_MODEL_NAME)
    """The model name clients send (the request body's ``model``)."""


class InferencePoolBackend(_Base):
    """Route to Gateway API Inference Extension InferencePools (v1.5.0,
    ``inference.networking.k8s.io/v1``) instead of Services."""

    endpoint_picker: EndpointPickerRef
    """The endpoint picker every pool Kanaria creates names."""
    target_port: int = Field(default=8080, ge=1, le=65535)
    """The model servers' port in the pods."""
    model_rewrite: ModelRewrite | None = None
    """Set: one pool over every revision's pods, and the weights move in an
    InferenceModelRewrite between the revisions' adapters. Unset: one pool per revision,
    weighted in the HTTPRoute."""


class GatewayAPITraffic(_Base):
    """Route with a Gateway API HTTPRoute: Kanaria owns the weights of its backendRefs."""

    http_route: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the HTTPRoute. Defaults to the ModelDeployment's name."""
    parent_refs: list[ParentRef] = Field(default_factory=list, max_length=16)
    """Gateways to attach to, when Kanaria creates the route."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port of the per-revision Services."""
    inference_pool: InferencePoolBackend | None = None
    """Route to InferencePools Kanaria creates instead of to the per-revision Services."""


class IstioTraffic(_Base):
    """Route with an Istio VirtualService: Kanaria owns the weights of its route destinations."""

    virtual_service: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the VirtualService. Defaults to the ModelDeployment's name."""
    hosts: list[Host] = Field(default_factory=list, max_length=16)
    """Hosts of the VirtualService; the ModelDeployment's name when empty."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port of the per-revision Services."""


class ReplicasTraffic(_Base):
    """No mesh: one Service selects every revision; weights become replica ratios."""

    port: int = Field(default=8080, ge=1, le=65535)
    """Port of the shared Service."""


class Traffic(_Base):
    """How traffic reaches the revisions: exactly one of gatewayAPI, istio or replicas."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _one_of("gatewayAPI", "istio", "replicas"),
                    "message": "choose exactly one traffic router: gatewayAPI, istio or replicas",
                }
            ]
        }
    )

    gateway_api: GatewayAPITraffic | None = Field(default=None, alias="gatewayAPI")
    """Gateway API HTTPRoute weights."""
    istio: IstioTraffic | None = None
    """Istio VirtualService weights."""
    replicas: ReplicasTraffic | None = None
    """Replica ratios behind one Service (no mesh)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Traffic:
        if sum(x is not None for x in (self.gateway_api, self.istio, self.replicas)) != 1:
            raise ValueError("choose exactly one traffic router: gatewayAPI, istio or replicas")
        return self

    @property
    def router_kind(self) -> str:
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.istio is not None:
            return "istio"
        return "replicas"


class PrometheusSource(_Base):
    """The Prometheus that holds the model servers' metrics."""

    address: str = Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")
    """Base URL, for example http://prometheus.monitoring:9090."""
    timeout: Duration = Field(default="10s", pattern=DURATION_PATTERN)
    """Timeout of one query."""

    @model_validator(mode="after")
    def _reachable_safely(self) -> PrometheusSource:
        problem = address_problem(self.address)
        if problem is not None:
            raise ValueError(f"prometheus.address {problem}")
        return self


MetricKind = Literal[
    "accuracy", "latency", "errorRate", "drift", "agreement", "custom",
    "timeToFirstToken", "timePerOutputToken", "requestLatency", "queueTime", "abortRate",
    "outputTokensPerSecond", "serverErrorRate", "successRate",
    "feedback", "rating",
]
FEEDBACK_KINDS = ("feedback", "rating")
"""User feedback on the answers, from the monitor library's matured counters (delayed labels)."""


DEFAULT_MATURITY_SECONDS: dict[str, float] = {"accuracy": 300.0, "feedback": 300.0, "rating": 300.0}
"""The maturity horizon of a metric kind when the spec names none (0: by arrival)."""
MAX_MATURITY_SECONDS = 24 * 3600.0


class Metric(_Base):
    """One signal the new revision is judged on, compared with the revision serving beside it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.kind != 'custom' || (has(self.query) && has(self.condition))",
                    "message": "a custom metric needs a query and a condition",
                },
                {
                    "rule": "self.name != 'sample-ratio'",
                    "message": "sample-ratio is the name of Kanaria's own split check; choose another name",
                },
                {
                    "rule": "self.kind != 'rating' || (has(self.ratingMin) && has(self.ratingMax) "
                    "&& self.ratingMin < self.ratingMax)",
                    "message": "a rating metric needs ratingMin < ratingMax",
                },
                {
                    "rule": "self.kind == 'rating' || !has(self.margin) || self.margin <= 1.0",
                    "message": "margin is a share (at most 1) except for rating metrics",
                },
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63, pattern=METRIC_NAME)
    """Name of this metric, referenced by steps and shown in status (not sample-ratio: that is
    the split check Kanaria adds to every weighted step)."""
    kind: MetricKind
    """accuracy (delayed ground-truth labels), latency (histogram), errorRate, drift (feature and
    prediction histograms), agreement (how often the new revision's prediction matches the one
    served; for shadows) or custom (your PromQL with a condition). For large language models,
    from the inference server's own metrics (vLLM's names; no PromQL to write):
    timeToFirstToken, timePerOutputToken, requestLatency, queueTime and outputTokensPerSecond
    (histograms, judged like latency), and abortRate, serverErrorRate and successRate (finished
    requests by how they ended, judged like errorRate). spec.analysis.server names the server
    whose metric names are read (docs/llm.md). User feedback on the answers, recorded with the
    monitor library as delayed labels: feedback (the share of positive feedback — thumbs up,
    task success — judged like accuracy) and rating (the mean of a rating in [ratingMin,
    ratingMax])."""
    critical: bool = False
    """A failure of a critical metric rolls back at once, whatever failureLimit says."""
    min_samples: int | None = Field(default=None, ge=1, le=10_000_000)
    """Fewest samples per arm before any verdict other than inconclusive (labels for accuracy,
    requests otherwise, rated answers for feedback and rating). Defaults: accuracy 500, errorRate
    1000, latency 200, drift 1000, feedback and rating 500."""
    margin: float | None = Field(default=None, ge=0, le=1e6)
    """accuracy, feedback: the non-inferiority margin; the canary passes when it is not worse
    by more than this (default 0.02, at most 1). rating: the same in the rating's units
    (default 5% of the range: 0.2 on 1..5)."""
    signal: str | None = Field(default=None, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.:-]+$")
    """feedback, rating: the name the server records the signal under (the monitor library's
    ``signal`` label; default thumbs for feedback, rating for rating)."""
    rating_min: float | None = Field(default=None, ge=-1e6, le=1e6)
    """rating: the lowest rating (for example 1 of 1..5 stars)."""
    rating_max: float | None = Field(default=None, ge=-1e6, le=1e6)
    """rating: the highest rating (for example 5)."""
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    """errorRate: an absolute guardrail on the canary's error rate (default 0.01)."""
    max_error_ratio: float | None = Field(default=None, ge=1, le=100)
    """errorRate: the non-inferiority margin as a ratio; the canary passes on evidence that its
    error rate is below this multiple of the stable revision's (default 1.5). A canary whose
    rate is significantly above the stable's fails, however small the increase."""
    max_auc: float | None = Field(default=None, ge=0.5, le=1)
    """latency: the probability that a canary request is slower than a baseline request above
    which a significant slowdown fails (default 0.56)."""
    objective_seconds: float | None = Field(default=None, gt=0, le=86400)
    """latency: an objective on a histogram bucket edge, for the share of slow requests."""
    max_exceedance: float | None = Field(default=None, gt=0, lt=1)
    """latency, with objectiveSeconds: the largest share of the new revision's requests that may
    be slower than the objective (default 0.1). Fails when the share is significantly above it;
    a pass also needs the share shown below it."""
    features: list[FeatureName] | None = Field(default=None, max_length=256)
    """drift: the features to check; every feature the model exports when omitted."""
    min_agreement: float | None = Field(default=None, gt=0, lt=1)
    """agreement: the least share of predictions that must match the served ones (default 0.95)."""
    share_threshold: float | None = Field(default=None, gt=0, le=1)
    """drift: the share of drifted features that fails the metric (default 0.5)."""
    alpha: float | None = Field(default=None, gt=0, lt=0.5)
    """Significance level of the test (defaults per kind: 0.05, latency 0.01)."""
    maturity: Duration | None = Field(default=None, pattern=OPTIONAL_DURATION_PATTERN)
    """accuracy, feedback, rating (and custom, to opt in): the maturity horizon H. Each label is credited to the
    prediction it judges, and both revisions are compared on the predictions they served in the
    same period, each counted H after it was served: correct or incorrect when its label arrived
    by then, unlabelled otherwise (for both revisions alike, so a label's delay cannot favour
    one of them). Choose H from the label delays the model server exports
    (kanaria_model_label_delay_seconds), for example their 95th percentile: a longer H counts
    more labels but decides later. The model server must export matured counts for H; Kanaria
    puts every horizon the spec uses in KANARIA_MATURITY_HORIZONS of the pods. Default for
    accuracy, feedback and rating 5m. "0s" counts labels by arrival since the step began instead (biased when a
    label's delay depends on its outcome). For custom metrics, {{window}} then becomes the
    cohort window and {{horizon}} the horizon in seconds."""
    query: str | None = Field(default=None, max_length=4096)
    """custom: a PromQL template. Variables: {{name}}, {{namespace}}, {{model}}, {{revision}},
    {{stableRevision}}, {{window}}, {{horizon}}. Values are escaped for use inside label
    matchers."""
    condition: str | None = Field(
        default=None, max_length=64,
        pattern=r"^\s*(<|<=|>|>=|==|!=)\s*-?([0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15})([eE][-+]?[0-9]{1,2})?\s*$",
    )
    """custom: how the query's single value passes, for example "< 0.05" or ">= 0.9"."""
    evidence_unit: EvidenceUnit | None = None
    """LLM kinds: judge per request or per output token (spec.analysis.evidenceUnit when
    omitted). token: timePerOutputToken compares the servers' per-token latencies, and the
    rates count failures per output token served instead of per request (docs/llm.md). A
    kind with one value per request (timeToFirstToken, requestLatency, queueTime,
    outputTokensPerSecond) refuses token."""

    @model_validator(mode="after")
    def _custom_needs_query(self) -> Metric:
        if self.kind == "custom" and (self.query is None or self.condition is None):
            raise ValueError("a custom metric needs a query and a condition")
        if self.kind == "custom" and self.query is not None:
            check_template(self.query)  # a TemplateError is a ValueError: InvalidSpec, with the reason
        if self.maturity is not None and self.kind not in ("accuracy", "custom", *FEEDBACK_KINDS):
            raise ValueError("maturity applies to accuracy and custom metrics, and to feedback and rating")
        if self.kind == "rating" and not (
            self.rating_min is not None and self.rating_max is not None and self.rating_min < self.rating_max
        ):
            raise ValueError("a rating metric needs ratingMin < ratingMax")
        if self.kind == "rating" and self.maturity is not None and parse_duration(self.maturity) == 0:
            raise ValueError("a rating metric is judged on matured cohorts: maturity must not be 0s")
        if self.kind != "rating" and self.margin is not None and self.margin > 1:
            raise ValueError("margin is a share (at most 1) except for rating metrics")
        if self.maturity is not None and parse_duration(self.maturity) > MAX_MATURITY_SECONDS:
            raise ValueError(f"maturity may be at most {MAX_MATURITY_SECONDS / 3600:.0f}h")
        if self.evidence_unit is not None and self.kind not in LLM_KINDS:
            raise ValueError("evidenceUnit applies to the LLM metric kinds")
        if self.kind == "outputTokensPerSecond" and self.objective_seconds is not None:
            raise ValueError("outputTokensPerSecond takes no objectiveSeconds: state an objective on "
                             "timePerOutputToken (seconds per token, 1 / tokens per second)")
        if self.maturity is not None and not parse_duration(self.maturity).is_integer():
            # The model server counts cohorts at whole-second horizons.
            raise ValueError("maturity must be a whole number of seconds (for example 90s or 5m)")
        return self

    def maturity_seconds(self) -> float:
        """The horizon H in seconds (0: labels counted by arrival)."""
        if self.maturity is not None:
            return parse_duration(self.maturity)
        return DEFAULT_MATURITY_SECONDS.get(self.kind, 0.0)


class Analysis(_Base):
    """How the new revision is judged."""

    prometheus: PrometheusSource
    """Where metrics are read from."""
    interval: Duration = Field(default="30s", pattern=DURATION_PATTERN)
    """How often metrics are measured during a rollout and the watch window."""
    failure_limit: int = Field(default=0, ge=0, le=1000)
    """Failed measurements tolerated; one more rolls back (0: the first failure rolls back)."""
    inconclusive_limit: int = Field(default=20, ge=0, le=100_000)
    """Consecutive inconclusive measurements tolerated at one step before onInconclusive acts."""
    on_inconclusive: Literal["pause", "rollback"] = "pause"
    """What happens after too long without evidence: pause for a person, or roll back."""
    progress_deadline: Duration = Field(default="15m", pattern=DURATION_PATTERN)
    """Longest time an analysis step may wait for a decision before onInconclusive acts."""
    metrics: list[Metric] = Field(default_factory=list, max_length=32)
    """The metrics."""
    server: LLMServer = "vllm"
    """LLM kinds: the inference server whose own metric names are read: vllm, sglang, tgi or
    tensorrtLLM (trtllm-serve). A kind the server does not export makes the spec invalid, with
    the reason (docs/llm.md has the mapping)."""
    evidence_unit: EvidenceUnit = "request"
    """LLM kinds: request (each request one observation) or token: timePerOutputToken judged on
    the per-token latencies and the rates as failures per output token, where the server has
    them; kinds with one value per request stay per request. A metric's own evidenceUnit wins."""

    @model_validator(mode="after")
    def _llm_kinds_on_server(self) -> Analysis:
        for m in self.metrics:
            unit = m.evidence_unit or self.evidence_unit
            problem = kind_problem(m.kind, self.server, unit, explicit_unit=m.evidence_unit is not None)
            if problem is not None:
                raise ValueError(f"metric {m.name!r}: {problem}")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique")
        if "sample-ratio" in names:
            raise ValueError("sample-ratio is the name of Kanaria's own split check; choose another name")
        return self


class RollbackPolicy(_Base):
    """What happens around promotion and rollback."""

    post_promotion_window: Duration = Field(default="5m", pattern=OPTIONAL_DURATION_PATTERN)
    """After promotion, metrics keep being watched this long with the prior revision kept warm;
    a regression reverts to it. "0s" turns the window off."""
    revision_history_limit: int = Field(default=3, ge=0, le=100)
    """How many old revisions' records and scaled-down Deployments to keep."""
    scale_down_delay: Duration = Field(default="30s", pattern=OPTIONAL_DURATION_PATTERN)
    """How long a retired revision keeps its replicas before it is scaled to zero."""


class Monitoring(_Base):
    """Watching the serving revision between rollouts (on whenever spec.analysis is set)."""

    enabled: bool = True
    """Set false to stop watching between rollouts."""
    interval: Duration = Field(default="1m", pattern=DURATION_PATTERN)
    """How often the serving revision is checked."""
    false_alarm_every: Duration = Field(default="30d", pattern=DURATION_PATTERN)
    """The false-alarm budget of every detector: the expected time between false alarms when
    nothing changes. Longer is quieter but slower to detect."""
    accuracy_drop: float = Field(default=0.02, gt=0, lt=0.5)
    """The decay of accuracy worth detecting (absolute; 0.02 is two points)."""
    baseline_labels: int = Field(default=5000, ge=50, le=10_000_000)
    """Matured labels of the revision's early life in production that set its baseline
    accuracy, before the accuracy detector starts. Fewer labels give a baseline too uncertain
    for a decay of accuracyDrop: false alarms beyond the budget (see docs/benchmarks.md)."""
    window: Duration = Field(default="10m", pattern=DURATION_PATTERN)
    """The recent traffic that drift, latency and errors are judged on."""
    history: Duration = Field(default="1h", pattern=DURATION_PATTERN)
    """The revision's own history that recent latency and errors are compared with."""
    min_samples: int = Field(default=500, ge=50, le=10_000_000)
    """Fewest requests in the window before drift, latency or errors are judged."""


class JobSpec(_Base):
    """A Job Kanaria starts (retraining or validation): its pod template and limits."""

    template: dict[str, Any]
    """Pod template (a PodTemplateSpec) of the Job. Kanaria adds its labels, restartPolicy
    Never and the KANARIA_* environment (see the user guide) to every container; the first
    container reports its result as JSON in its termination message."""
    active_deadline: Duration = Field(default="1h", pattern=DURATION_PATTERN)
    """A Job running longer is stopped and counted as failed."""

    @model_validator(mode="after")
    def _template_shape(self) -> JobSpec:
        problem = _template_problem(self.template)
        if problem is None and not ((self.template.get("spec") or {}).get("containers")):
            problem = "spec.containers needs at least one container"
        if problem is not None:
            raise ValueError(f"template: {problem}")
        return self


RetrainTrigger = Literal["drift", "accuracy", "schedule", "manual"]


def _default_triggers() -> list[RetrainTrigger]:
    return ["drift", "accuracy", "manual"]


class Retraining(JobSpec):
    """Retrain the model when the evidence says so, on a schedule, or when a person asks."""

    triggers: list[RetrainTrigger] = Field(default_factory=_default_triggers, max_length=4)
    """What may start the Job: drift of the inputs (Drifting), accuracy decay (Degraded by
    accuracy), a schedule (every) or a person (kubectl kanaria retrain)."""
    every: Duration | None = Field(default=None, pattern=DURATION_PATTERN)
    """With the schedule trigger: start a Job this long after the last one."""
    cooldown: Duration = Field(default="1h", pattern=DURATION_PATTERN)
    """After a Job starts, no other starts for this long (one incident, one Job)."""
    data_window: Duration = Field(default="1h", pattern=DURATION_PATTERN)
    """The Job's data (KANARIA_DATA_SINCE..KANARIA_DATA_UNTIL): after a finding, the data since
    the finding began, and the Job starts once this much of it is in (the new regime, not the
    old); on a schedule or a person's request, this long back from now."""
    adopt: Literal["auto", "manual"] = "manual"
    """auto: Kanaria writes the candidate into spec.model (its own field manager) and the
    rollout begins; manual: a person adopts it (kubectl kanaria adopt) or writes it into the
    spec (for example in the GitOps repository that owns it)."""


class Validation(JobSpec):
    """Evaluate every new revision offline, beside the stable one, before it gets traffic."""

    active_deadline: Duration = Field(default="30m", pattern=DURATION_PATTERN)
    """A validation running longer is stopped and counts as failed."""
    metric: str = Field(default="accuracy", min_length=1, max_length=63, pattern=METRIC_NAME)
    """The score in the Job's result to compare (higher is better)."""
    margin: float = Field(default=0.0, ge=0, le=1)
    """The new revision passes when its score is at least the stable revision's minus this."""
    min_score: float | None = None
    """And, when set, at least this."""


class ModelDeploymentSpec(_Base):
    """The model to serve and how a new version of it must earn its traffic."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.strategy) || !has(self.strategy.shadow) || "
                    "!has(self.traffic.replicas)",
                    "message": "a shadow needs a router that can mirror: gatewayAPI or istio",
                },
                {
                    "rule": "!has(self.strategy) || !has(self.strategy.abTest) || "
                    "!has(self.strategy.abTest.match) || !has(self.traffic.replicas)",
                    "message": "an A/B test by match needs a router that can match: gatewayAPI or istio",
                },
                {
                    "rule": "!has(self.strategy) || !has(self.strategy.canary) || "
                    "!self.strategy.canary.steps.exists(s, has(s.analysis)) || "
                    "(has(self.analysis) && size(self.analysis.metrics) > 0)",
                    "message": "analysis steps need spec.analysis with at least one metric",
                }
            ]
        }
    )

    model: Model
    """The model served. A change here (or in template) starts a rollout."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Replicas of each serving revision."""
    template: dict[str, Any] = Field(default_factory=dict)
    """Pod template (a PodTemplateSpec) of the model server. The model's name, version, URI and
    revision reach every container as KANARIA_MODEL_NAME, KANARIA_MODEL_VERSION,
    KANARIA_MODEL_URI and KANARIA_REVISION."""
    traffic: Traffic
    """How traffic reaches the revisions."""
    strategy: Strategy = Field(default_factory=Strategy)
    """How a new revision earns traffic (canary with default steps when omitted)."""
    analysis: Analysis | None = None
    """How a new revision is judged. Without it, steps advance on the clock alone."""
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    """The watch window after promotion, and history."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """Watching the serving revision between rollouts (needs spec.analysis)."""
    retraining: Retraining | None = None
    """An optional retraining Job and what starts it."""
    validation: Validation | None = None
    """An optional offline validation Job every new revision must pass before any traffic."""

    @model_validator(mode="after")
    def _template_shape(self) -> ModelDeploymentSpec:
        problem = _template_problem(self.template)
        if problem is not None:
            raise ValueError(f"template: {problem}")
        return self

    @model_validator(mode="after")
    def _analysis_steps_need_metrics(self) -> ModelDeploymentSpec:
        ab = self.strategy.ab_test
        if ab is not None and ab.match is not None and self.traffic.replicas is not None:
            raise ValueError("an A/B test by match needs a router that can match: gatewayAPI or istio")
        if self.strategy.shadow is not None and self.traffic.replicas is not None:
            raise ValueError("a shadow needs a router that can mirror: gatewayAPI or istio")
        if self.strategy.shadow is not None and (self.analysis is None or not self.analysis.metrics):
            raise ValueError("a shadow needs spec.analysis with at least one metric")
        steps = self.strategy.canary.steps if self.strategy.canary else []
        if any(s.analysis is not None for s in steps) and (
            self.analysis is None or not self.analysis.metrics
        ):
            raise ValueError("analysis steps need spec.analysis with at least one metric")
        known = {m.name for m in self.analysis.metrics} if self.analysis else set()
        for s in steps:
            for name in (s.analysis.metrics or []) if s.analysis else []:
                if name not in known:
                    raise ValueError(f"analysis step names unknown metric {name!r}")
        if ab is not None and any(c.version == self.model.version for c in ab.challengers):
            raise ValueError("abTest.challengers must not repeat spec.model.version")
        if self.strategy.ab_test is not None:
            needed = [self.strategy.ab_test.primary_metric, *self.strategy.ab_test.guardrails]
            for name in needed:
                if name not in known:
                    raise ValueError(f"abTest names unknown metric {name!r}")
        kinds = {m.name: m.kind for m in self.analysis.metrics} if self.analysis else {}
        if ab is not None and ab.bandit and kinds.get(ab.primary_metric) not in BANDIT_KINDS:
            raise ValueError(f"bandit draws proportions: its primaryMetric must be of kind "
                             f"{', '.join(BANDIT_KINDS)}, not {kinds.get(ab.primary_metric)}")
        if self.strategy.shadow is not None:
            labelled = sorted(n for n, k in kinds.items() if k in LABELLED_KINDS)
            if labelled:
                raise ValueError(f"a shadow's answers reach nobody, so no label or feedback can judge them: "
                                 f"metric {labelled[0]!r} ({kinds[labelled[0]]}); judge shadows on latency, "
                                 "errors, drift or agreement")
        return self

    def arm_specs(self) -> list[ModelDeploymentSpec]:
        """The spec of each extra A/B challenger: this one with its model version and URI."""
        ab = self.strategy.ab_test
        if ab is None:
            return []
        return [
            self.model_copy(update={"model": self.model.model_copy(update={"version": a.version, "uri": a.uri})})
            for a in ab.challengers
        ]

    def canary_steps(self) -> list[CanaryStep]:
        """The canary steps in force. Without a canary strategy: 10%, judge, 50%, judge (or
        10%, wait 1m, 50%, wait 1m when there is no analysis)."""
        if self.strategy.canary is not None:
            return list(self.strategy.canary.steps)
        if self.analysis is not None and self.analysis.metrics:
            return _default_steps()
        return [
            CanaryStep(set_weight=10),
            CanaryStep(pause=PauseStep(duration="1m")),
            CanaryStep(set_weight=50),
            CanaryStep(pause=PauseStep(duration="1m")),
        ]

    def interval_seconds(self) -> float:
        return parse_duration(self.analysis.interval) if self.analysis else 10.0

    def maturity_horizons(self) -> tuple[float, ...]:
        """Every maturity horizon the metrics use, in seconds, ascending (none at 0)."""
        metrics = self.analysis.metrics if self.analysis else []
        return tuple(sorted({h for h in (m.maturity_seconds() for m in metrics) if h > 0}))


_OWN_LABEL_PREFIXES = ("kanaria.io/", "app.kubernetes.io/managed-by")


BANDIT_KINDS = ("accuracy", "errorRate", "feedback")
"""Primary-metric kinds whose evidence is a proportion, which Thompson sampling draws from."""
LABELLED_KINDS = ("accuracy", "feedback", "rating")
"""Kinds judged on what users or labels say about the answers served: never for a shadow."""


def _template_problem(template: dict[str, Any]) -> str | None:
    """Why the pod template cannot be the template of a Deployment Kanaria writes; None if it
    can, as far as the parts Kanaria reads and extends (metadata labels, containers, env)."""
    meta = template.get("metadata", {})
    if not isinstance(meta, dict):
        return "metadata must be an object"
    for key in ("labels", "annotations"):
        entries = meta.get(key) or {}
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            return f"metadata.{key} must map names to strings"
        bad = next((k for k in entries if not _LABEL_KEY.match(k)), None)
        if bad is not None:
            return f"metadata.{key}: {bad!r} is not a valid key"
        if key == "labels":
            wrong = next((v for v in entries.values() if not _LABEL_VALUE.match(v)), None)
            if wrong is not None:
                return f"metadata.labels: {wrong!r} is not a valid label value"
    pod = template.get("spec", {})
    if not isinstance(pod, dict):
        return "spec must be an object"
    containers = pod.get("containers") or []
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        return "spec.containers must be a list of containers"
    for i, container in enumerate(containers):
        env = container.get("env") or []
        if not isinstance(env, list) or not all(isinstance(e, dict) for e in env):
            return f"spec.containers[{i}].env must be a list of name/value objects"
        if not isinstance(container.get("image"), str) or not container["image"].strip():
            return f"spec.containers[{i}] ({container.get('name')}) needs an image"
    own = next((k for k in (meta.get("labels") or {}) if k.startswith(_OWN_LABEL_PREFIXES)), None)
    if own is not None:
        return f"metadata.labels: {own!r} is Kanaria's own label; it sets it on every pod itself"
    if policy() == "baseline":
        broken = baseline_violations(template)
        if broken:
            return ("breaks the baseline pod security profile (Kanaria creates pods with its own rights): "
                    + "; ".join(broken[:5]))
    return None


# --------------------------------------------------------------------------- status

Phase = Literal[
    "Pending", "Validating", "Progressing", "Paused", "Watching", "Stable", "RolledBack", "Invalid"
]


class Condition(_Base):
    """A standard Kubernetes condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None


class MetricResult(_Base):
    """The last verdict on one metric, with the numbers behind it."""

    metric: str
    kind: str = ""
    verdict: Literal["pass", "fail", "inconclusive"]
    value: float | None = None
    """The new revision's measurement."""
    baseline: float | None = None
    """The measurement of the revision it is compared with."""
    samples: int = 0
    baseline_samples: int = 0
    statistic: str = ""
    score: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    reason: str = ""
    error: str | None = None
    """Set when the metrics could not be read at all (the verdict is then inconclusive)."""
    needed: int | None = None
    """About how many more samples of the new revision the metric needs to decide, if what was
    seen so far holds (0 once decided; unset when it cannot tell)."""
    eta_seconds: float | None = None
    """How long those samples take at the rate observed so far."""
    at: str = ""


class ArmStatus(_Base):
    """One challenger of an A/B test with more than one."""

    model_config = ConfigDict(frozen=False)

    revision: str
    version: str
    weight: int = 0
    """Its configured share while it runs."""
    outcome: Literal["", "lost", "won"] = ""
    """Empty while it runs."""
    reason: str = ""


class HistoryEntry(_Base):
    """One revision's outcome."""

    revision: str
    model_version: str
    outcome: Literal[
        "deployed", "promoted", "rolledBack", "aborted", "superseded", "reverted", "lost", "rejected"
    ]
    reason: str = ""
    at: str = ""


class TimelineEntry(_Base):
    """One decision, with the traffic split right after it (for reports and `kubectl kanaria report`)."""

    at: str
    reason: str
    message: str = ""
    revision: str | None = None
    """The new revision (canary or challenger) the decision was about."""
    weight: int = 0
    """Percent of traffic on the new revision after the decision."""
    step: int = 0


class Finding(_Base):
    """What a detector of the serving revision found."""

    kind: Literal["accuracy", "validated", "drift", "latency", "errors"]
    alarm: bool = False
    value: float | None = None
    """The recent measurement (accuracy, drift distance, P(slower), error rate)."""
    reference: float | None = None
    """What it is compared with (baseline accuracy, reference profile, history)."""
    samples: int = 0
    detail: str = ""
    since: str | None = None
    """When the alarm began."""


class MonitorStatus(_Base):
    """The serving revision's monitoring: its baseline, the detectors' state and findings."""

    model_config = ConfigDict(frozen=False)

    revision: str
    started_at: str
    last_at: str | None = None
    """The end of the last period checked."""
    early_correct: int = 0
    early_labels: int = 0
    """Matured labels of its early life so far (until they reach baselineLabels)."""
    baseline_accuracy: float | None = None
    """Its accuracy in early life: the baseline the decay detector compares with."""
    reference_accuracy: float | None = None
    """Its offline (validation) accuracy from the reference profile."""
    estimated_accuracy: float | None = None
    """An estimate from the model's confidences, before labels arrive (not a measurement)."""
    recent_accuracy: float | None = None
    recent_labels: int = 0
    labels: int = 0
    """Matured labels since monitoring began."""
    cusum: float = 0.0
    """The accuracy detector's statistic (log-likelihood ratio of a decay, CUSUM)."""
    threshold: float | None = None
    """The statistic at which it alarms, from falseAlarmEvery and the label rate."""
    findings: list[Finding] = Field(default_factory=list)


class JobRun(_Base):
    """A Job Kanaria started, and how it ended."""

    model_config = ConfigDict(frozen=False)

    name: str
    purpose: Literal["retrain", "validate"]
    subject: str = ""
    """For validation: the revision judged. For retraining: the version retrained."""
    started_at: str
    finished_at: str | None = None
    state: Literal["Running", "Succeeded", "Failed"] = "Running"
    reason: str = ""
    trigger: str = ""
    """Why it was started (retraining)."""


class Candidate(_Base):
    """A model a retraining Job produced."""

    version: str
    uri: str
    metrics: dict[str, float] = Field(default_factory=dict)
    job: str = ""
    at: str = ""
    adopted: bool = False


class ValidationResult(_Base):
    """The offline validation of one revision."""

    revision: str
    verdict: Literal["pending", "pass", "fail"] = "pending"
    score: float | None = None
    stable_score: float | None = None
    reason: str = ""


class ModelDeploymentStatus(_Base):
    """What Kanaria observed and decided. Everything needed to resume after a restart is here."""

    model_config = ConfigDict(frozen=False)

    observed_generation: int | None = None
    phase: Phase = "Pending"
    message: str = ""
    stable_revision: str | None = None
    stable_version: str | None = None
    canary_revision: str | None = None
    canary_version: str | None = None
    canary_weight: int = 0
    """Percent of traffic the new revision has (the challenger's share in an A/B test)."""
    current_step: int = 0
    """Index of the canary step in force."""
    step_started_at: str | None = None
    rollout_started_at: str | None = None
    last_analysis_at: str | None = None
    failures: int = 0
    """Failed measurements in this rollout."""
    inconclusive_streak: int = 0
    """Consecutive inconclusive measurements at this step."""
    paused: bool = False
    """The rollout is paused until a person resumes, promotes or aborts it."""
    pause_reason: str = ""
    split_changed_at: list[str] = Field(default_factory=list, max_length=16)
    """When a bandit moved the split during the current step (at most the 16 latest): the
    evidence is judged per period between them, never pooled."""
    evidence_warned_step: int | None = None
    """The step at which a Warning said its evidence cannot arrive before the deadline."""
    """Why it paused, when not by a person's request (for example not enough evidence in time)."""
    prior_revision: str | None = None
    """The revision promoted over, kept warm through the watch window."""
    prior_version: str | None = None
    promoted_at: str | None = None
    watch_until: str | None = None
    retired: dict[str, str] = Field(default_factory=dict)
    """Revisions taken out of service, with when; scaled to zero after scaleDownDelay."""
    rejected_revision: str | None = None
    """The last revision rolled back; it is not retried until the spec changes or retry."""
    arms: list[ArmStatus] = Field(default_factory=list)
    """During an A/B test with several challengers: each of them (spec.model's first)."""
    last_action: str | None = None
    """The last user action handled (the value of the kanaria.io/action annotation)."""
    analysis: list[MetricResult] = Field(default_factory=list)
    monitoring: MonitorStatus | None = None
    """The serving revision's monitoring between rollouts."""
    jobs: list[JobRun] = Field(default_factory=list, max_length=20)
    """Retraining and validation Jobs, the latest last (at most 20)."""
    last_retrain_at: str | None = None
    """When the last retraining Job started (the cooldown and the schedule count from it)."""
    candidate: Candidate | None = None
    """The last model a retraining Job produced."""
    validation: ValidationResult | None = None
    """The offline validation of the newest revision."""
    history: list[HistoryEntry] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    """The last decisions (at most 200), oldest first."""
    conditions: list[Condition] = Field(default_factory=list)
