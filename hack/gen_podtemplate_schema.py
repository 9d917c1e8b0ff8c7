"""Write operator/kanaria/api/podtemplate.schema.json: the real PodTemplateSpec schema of the
pinned Kubernetes version, as a structural CRD schema.

The source is the OpenAPI v3 document that ships in the pinned ``k8s.io/kubernetes`` Go module
(``api/openapi-spec/v3/api__v1_openapi.json``, the same version the test bed's control plane is
built from; see hack/localcluster/kube/go.mod). References are inlined, descriptions, defaults,
enums and list-merge markers dropped (a CRD cannot default or merge like a built-in type, and
enums grow between versions), IntOrString and Quantity become ``x-kubernetes-int-or-string``.
A template's metadata keeps labels and annotations only.

Why: a pod template typed this way is pruned and validated by the API server, so no object can
carry a template nested thousands of levels deep (the operator's watch would choke on it) or a
field the Deployment would reject. ``--check`` compares with the committed file instead.

    python hack/gen_podtemplate_schema.py [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "operator" / "kanaria" / "api" / "podtemplate.schema.json"
GO_MOD = ROOT / "hack" / "localcluster" / "kube" / "go.mod"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
KEEP = ("type", "required", "maxLength", "minLength", "maximum", "minimum", "pattern", "maxItems", "minItems")


def pinned_version() -> str:
    match = re.search(r"^require k8s\.io/kubernetes (v\S+)", GO_MOD.read_text(), re.M)
    if match is None:
        raise SystemExit(f"no k8s.io/kubernetes version in {GO_MOD}")
    return match.group(1)


def openapi_document(version: str) -> dict[str, Any]:
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                                     check=True, capture_output=True, text=True, env=env, cwd=GO_MOD.parent).stdout)
    path = Path(info["Dir"]) / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def convert(schemas: dict[str, Any]) -> dict[str, Any]:
    int_or_string: dict[str, Any] = {"x-kubernetes-int-or-string": True}
    seen: list[str] = []

    def node(n: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in n:
            name = n["$ref"].rsplit("/", 1)[-1]
            if name.endswith("intstr.IntOrString"):
                return dict(int_or_string)
            if name.endswith("resource.Quantity"):
                return {**int_or_string, "pattern": QUANTITY}
            if name.endswith(("meta.v1.Time", "meta.v1.MicroTime")):
                return {"type": "string", "format": "date-time"}
            if name in seen:
                raise ValueError(f"recursive schema {name}: cannot be structural")
            seen.append(name)
            try:
                return node(schemas[name])
            finally:
                seen.pop()
        if len(n.get("allOf", ())) == 1:
            return node(n["allOf"][0])
        out = {k: n[k] for k in KEEP if k in n}
        if "properties" in n:
            out["type"] = "object"
            out["properties"] = {k: node(v) for k, v in sorted(n["properties"].items())}
        if "additionalProperties" in n:
            out["type"] = "object"
            out["additionalProperties"] = node(n["additionalProperties"])
        if "items" in n:
            out["type"] = "array"
            out["items"] = node(n["items"])
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["properties"] = {}  # free-form in Kubernetes (FieldsV1): nothing survives pruning
        return out

    template = node({"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"})
    meta = template["properties"]["metadata"]["properties"]
    template["properties"]["metadata"]["properties"] = {k: meta[k] for k in ("annotations", "labels")}
    return template


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed file differs")
    args = parser.parse_args()
    version = pinned_version()
    document = {"kubernetesVersion": version, "podTemplateSpec": convert(openapi_document(version)["components"]["schemas"])}
    text = json.dumps(document, indent=None, separators=(",", ":"), sort_keys=False) + "\n"
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is not the schema of Kubernetes {version}: run "
                  "python hack/gen_podtemplate_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text)} bytes) from Kubernetes {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
