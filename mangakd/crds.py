"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

``mangakd crds --output crds`` rewrites them; a test fails when the files in
the repository differ from what this module generates. Pydantic writes JSON
Schema 2020-12, and Kubernetes wants a structural OpenAPI v3.0 schema, so
the conversion inlines references, turns ``anyOf [X, null]`` into
``nullable``, boolean exclusive bounds, and open maps into
``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from mangakd.resources import StudentModelSpec, TeacherRotationSpec
from mangakd.spec import API_GROUP, API_VERSION, DistillationRunSpec
from mangakd.status import Condition, DistillationRunStatus, StatusModel, StudentModelStatus

CATEGORY = "mangakd"
READY = '.status.conditions[?(@.type=="Ready")].status'

# Keywords of JSON Schema that structural OpenAPI v3.0 schemas do not allow.
_DROPPED = {"title", "propertyNames", "$defs", "const", "discriminator"}


class ResourceStatus(StatusModel):
    """Observed state of a TeacherRotation (more fields are kept)."""

    phase: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = []


@dataclass
class Resource:
    """Names, printer columns and models of one custom resource kind."""

    kind: str
    plural: str
    short_names: list[str]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: list[dict] = field(default_factory=list)
    open_status: bool = False


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict:
    column = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


AGE = _column("Age", ".metadata.creationTimestamp", "date")

RESOURCES = [
    Resource(
        kind="DistillationRun",
        plural="distillationruns",
        short_names=["dr", "drun"],
        spec=DistillationRunSpec,
        status=DistillationRunStatus,
        description="Distills a student classifier from a teacher, calibrates, gates and exports it.",
        columns=[
            _column("Phase", ".status.phase", description="Lifecycle phase"),
            _column("Ready", READY),
            _column("Accuracy", ".status.metrics.studentAccuracy.value", "number", description="Student test accuracy"),
            _column("Agreement", ".status.metrics.agreement.value", "number", description="Teacher-student agreement"),
            _column("Gate", ".status.gate.passed", "boolean", description="Gate verdict"),
            AGE,
            _column("Teacher-Acc", ".status.metrics.teacherAccuracy.value", "number", 1),
            _column("ECE", ".status.metrics.ece.value", "number", 1),
            _column("Student", ".status.studentModel", "string", 1),
            _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', "string", 1),
        ],
    ),
    Resource(
        kind="StudentModel",
        plural="studentmodels",
        short_names=["sm", "student"],
        spec=StudentModelSpec,
        status=StudentModelStatus,
        description="Serves a gated student with a canary rollout, analysis, guard and revert.",
        columns=[
            _column("Phase", ".status.phase"),
            _column("Ready", READY),
            _column("Stable", ".status.stableRevision", "integer", description="Revision of the stable pods"),
            _column("Canary", ".status.canaryRevision", "integer", description="Revision under canary analysis"),
            _column("Weight", ".status.canaryWeight", "integer", description="Percent of student pods on the canary"),
            AGE,
            _column("Last-Good", ".status.lastGoodRevision", "integer", 1),
            _column("Step", ".status.currentStep", "integer", 1),
            _column("Agreement", ".status.lastAnalysis.agreement", "number", 1),
            _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', "string", 1),
        ],
    ),
    Resource(
        kind="TeacherRotation",
        plural="teacherrotations",
        short_names=["tr", "rotation"],
        spec=TeacherRotationSpec,
        status=ResourceStatus,
        description="Evaluates a candidate teacher and triggers re-distillation.",
        columns=[
            _column("Phase", ".status.phase"),
            _column("Ready", READY),
            _column("Run", ".spec.distillationRun"),
            AGE,
            _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', "string", 1),
        ],
        open_status=True,
    ),
]


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Convert a pydantic model's JSON Schema into a structural OpenAPI v3.0 schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _convert(raw, definitions)


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node

    if "$ref" in node:
        target = definitions[node["$ref"].split("/")[-1]]
        merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return _convert(merged, definitions)

    # Optional[X] arrives as anyOf [X, null]: Kubernetes spells that `nullable`.
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        if len(options) == 1:
            converted = _convert({**options[0], **rest}, definitions)
            converted["nullable"] = True
            if converted.get("default", 0) is None:
                del converted["default"]
            return converted
        return {**_convert(rest, definitions), "x-kubernetes-preserve-unknown-fields": True}

    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            result[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items":
            result[key] = _convert(value, definitions)
        elif key == "additionalProperties":
            if value is True or value == {}:
                result["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                result[key] = _convert(value, definitions)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            result[bound] = value
            result[key] = True
        else:
            result[key] = value
    if "const" in node:
        result["enum"] = [node["const"]]
    if result.get("type") == "object" and "properties" not in result and "additionalProperties" not in result:
        result["x-kubernetes-preserve-unknown-fields"] = True
    if "allOf" in result and len(result["allOf"]) == 1:
        inner = _convert(result.pop("allOf")[0], definitions)
        result = {**inner, **result}
    _default_nested_objects(result)
    return result


def _default_nested_objects(schema: dict[str, Any]) -> None:
    # A nested section with its own defaults gets `default: {}`, so the API
    # server fills in its fields even when the user omits the whole section.
    # Required sections get no default: a missing one must fail validation.
    required_here = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        if name in required_here or child.get("type") != "object" or child.get("nullable"):
            continue
        if "default" not in child and child.get("properties") and not child.get("required"):
            child["default"] = {}


def build_crd(resource: Resource) -> dict[str, Any]:
    """Build one CustomResourceDefinition document."""
    spec_schema = openapi_schema(resource.spec)
    status_schema = openapi_schema(resource.status)
    if resource.open_status:
        status_schema["x-kubernetes-preserve-unknown-fields"] = True
    singular = resource.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "mangakd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": singular,
                "shortNames": resource.short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": resource.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": resource.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version: mangakd.io/v1alpha1."},
                                "kind": {"type": "string", "description": f"Kind: {resource.kind}."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `mangakd crds --output crds` from the pydantic models; do not edit.\n"


def render_crds() -> dict[str, str]:
    """Return the YAML text of every CRD, keyed by file name."""
    files = {}
    for resource in RESOURCES:
        text = yaml.safe_dump(build_crd(resource), sort_keys=False, width=100, allow_unicode=True)
        files[f"{resource.plural}.yaml"] = HEADER + text
    return files


def write_crds(directory: Path) -> list[Path]:
    """Write every CRD into ``directory`` and return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
