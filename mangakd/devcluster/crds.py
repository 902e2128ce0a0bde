"""CustomResourceDefinitions: validation, status and the resource types they add."""

from __future__ import annotations

import re
from typing import Any

from .meta import format_time
from .registry import ResourceType
from .schema import check_structural

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key that puts versions in Kubernetes order: v2 > v1 > v1beta2 > v1beta1 > v1alpha1."""
    match = _VERSION.match(version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -int(major), -int(minor or 0))


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"reason": reason, "field": field, "message": f"{field}: {message}"}


def validate_crd(crd: dict[str, Any]) -> list[dict[str, str]]:
    """Return ``Status`` causes for a CRD that cannot be served (empty when valid)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(_cause(f"spec.names.{key}", "Required value", "FieldValueRequired"))
    if not spec.get("group"):
        causes.append(_cause("spec.group", "Required value", "FieldValueRequired"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(_cause("spec.scope", f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
                             "FieldValueNotSupported"))
    expected_name = f"{names.get('plural')}.{spec.get('group')}"
    if crd["metadata"]["name"] != expected_name:
        causes.append(_cause("metadata.name", f'Invalid value: "{crd["metadata"]["name"]}": must be spec.names.plural+"."+spec.group'))

    versions = spec.get("versions") or []
    if not versions:
        causes.append(_cause("spec.versions", "Invalid value: null: must have exactly one version marked as storage version"))
    elif sum(1 for version in versions if version.get("storage")) != 1:
        causes.append(_cause("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        for problem in check_structural(schema):
            causes.append(_cause(f"spec.versions[{index}].schema.{problem.split(':', 1)[0]}", problem.split(": ", 1)[1]))
    return causes


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    """Build the status that the apiextensions controllers would write once the CRD is served."""
    spec = crd["spec"]
    timestamp = format_time()
    conditions = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
         "message": "no conflicts found", "lastTransitionTime": timestamp},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
         "message": "the initial names have been accepted", "lastTransitionTime": timestamp},
    ]
    old_conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
    for condition in conditions:
        if condition["type"] in old_conditions:
            condition["lastTransitionTime"] = old_conditions[condition["type"]].get("lastTransitionTime", timestamp)
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    stored = [v["name"] for v in spec["versions"] if v.get("storage")]
    return {"conditions": conditions, "acceptedNames": names, "storedVersions": stored}


def resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """Return one resource type per served version, the preferred version first."""
    spec = crd["spec"]
    names = spec["names"]
    served = [version for version in spec["versions"] if version.get("served", True)]
    served.sort(key=lambda version: version_priority(version["name"]))
    types = []
    for version in served:
        subresources = set()
        if "status" in (version.get("subresources") or {}):
            subresources.add("status")
        if "scale" in (version.get("subresources") or {}):
            subresources.add("scale")
        types.append(ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            kind=names["kind"],
            namespaced=spec["scope"] == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=frozenset(subresources),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            custom=True,
        ))
    return types
