"""Generate the ModelDeployment CustomResourceDefinition from the pydantic models.

pydantic's JSON Schema is close to what Kubernetes wants, but a CRD needs a *structural*
schema: no ``$ref``, no ``anyOf`` with null for optional fields, no titles, and
``x-kubernetes-preserve-unknown-fields`` where free-form objects are allowed. This module does
that translation and nothing else; ``python -m kanaria.api.crd`` prints the YAML.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from kanaria.api.models import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

__all__ = ["crd_manifest", "crd_yaml", "structural"]

MAX_NAME = 52
"""Longest ModelDeployment name: NAME-<10 hex> must fit a 63-character DNS label."""

_DROP = {"title", "$defs", "additionalProperties_false"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].split("/")[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def structural(node: Any) -> Any:
    """Turn one resolved pydantic JSON Schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    # Optional[X] arrives as anyOf [X, null]: Kubernetes expresses optional by omission.
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
        description = node.get("description")
        default = node.get("default")
        node = {**options[0], **{k: v for k, v in node.items() if k not in ("anyOf",)}}
        if description:
            node["description"] = description
        if default is None:
            node.pop("default", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value)
        elif key == "additionalProperties":
            if value is False:
                continue  # pruning already forbids unknown fields
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = structural(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 puts the bound here; OpenAPI 3.0 wants bound + boolean flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split())
        elif key == "default" and isinstance(value, (dict, list)) and value:
            continue  # object defaults come from the operator, not the API server
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out and "enum" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(raw, raw.get("$defs", {}))
    result: dict[str, Any] = structural(resolved)
    return result


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    spec = _schema(ModelDeploymentSpec)
    status = _schema(ModelDeploymentStatus)
    # Status is written by the operator only, and may carry fields of newer versions.
    status["x-kubernetes-preserve-unknown-fields"] = True
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canaryVersion"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "kanaria"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["mdep"],
                "categories": ["kanaria"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A machine-learning model served on Kubernetes, "
                            "and how Kanaria rolls out each new version of it.",
                            "required": ["spec"],
                            # Per-revision Services are named NAME-<10 hex> and must stay
                            # DNS labels (63); NAME is also a label value (63).
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"size(self.metadata.name) <= {MAX_NAME}",
                                    "message": f"a ModelDeployment name may be at most {MAX_NAME} characters "
                                    "(its revisions' Services are named NAME-<10 hex characters>)",
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `make crds` from operator/kanaria/api/models.py. Do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(crd_yaml())


if __name__ == "__main__":
    main()
