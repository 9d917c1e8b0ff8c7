"""The ModelDeployment API: pydantic models of spec and status, and CRD generation."""

from kanaria.api.durations import format_duration, parse_duration
from kanaria.api.models import *  # noqa: F403
from kanaria.api.models import __all__ as _models_all
from kanaria.api.revision import revision_hash, revision_name

__all__ = [*_models_all, "parse_duration", "format_duration", "revision_hash", "revision_name"]
