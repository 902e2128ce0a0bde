"""API discovery documents and OpenAPI v3 for kubectl, kopf and the Python client.

Discovery is the legacy (unaggregated) form: ``/api``, ``/apis``, ``/api/v1``
and ``/apis/GROUP/VERSION``. kubectl asks for aggregated discovery first and
falls back to this form when the response's ``Content-Type`` is plain
``application/json``.

OpenAPI v3 (``/openapi/v3`` and one document per group/version) carries the
full schema of every CRD version, which ``kubectl explain`` prints. Each PATCH
operation lists the ``fieldValidation`` query parameter so that kubectl
leaves field validation to the server instead of validating on the client.
Built-in kinds get a schema without properties: their PATCH operations do
not list ``application/strategic-merge-patch+json``, so that ``kubectl
apply`` computes strategic merge patches from its compiled-in Go types.
``/openapi/v2`` is served empty for the same reason.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .registry import Registry, ResourceType

SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-mangakd-devcluster",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = []
    for group in registry.groups():
        versions = [{"groupVersion": f"{group}/{version}", "version": version} for version in registry.versions_of(group)]
        groups.append({"name": group, "versions": versions, "preferredVersion": versions[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    for entry in api_group_list(registry)["groups"]:
        if entry["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **entry}
    return None


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.types_in(group, version)
    if not types:
        return None
    resources = []
    for resource_type in sorted(types, key=lambda rt: rt.plural):
        entry: dict[str, Any] = {
            "name": resource_type.plural,
            "singularName": resource_type.singular,
            "namespaced": resource_type.namespaced,
            "kind": resource_type.kind,
            "verbs": list(resource_type.verbs),
        }
        if resource_type.short_names:
            entry["shortNames"] = list(resource_type.short_names)
        if resource_type.categories:
            entry["categories"] = list(resource_type.categories)
        resources.append(entry)
        for subresource in sorted(resource_type.subresources):
            sub_kind = {"scale": "Scale"}.get(subresource, resource_type.kind)
            verbs = ["get"] if subresource == "log" else ["get", "patch", "update"]
            resources.append({"name": f"{resource_type.plural}/{subresource}", "singularName": "",
                              "namespaced": resource_type.namespaced, "kind": sub_kind, "verbs": verbs})
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _definition_name(resource_type: ResourceType) -> str:
    """Name of the schema in ``components.schemas``: reversed group, version, kind."""
    group = resource_type.group or "core"
    reversed_group = ".".join(reversed(group.split("."))) if "." in group else group
    return f"{reversed_group}.{resource_type.version}.{resource_type.kind}"


_OBJECT_META = {
    "type": "object",
    "description": "Standard object metadata: name, namespace, labels, annotations, owner references and finalizers.",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
        "generateName": {"type": "string", "description": "Prefix the server uses to generate a unique name when name is empty."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Map of string keys and values that can be used to organize and select objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Unstructured key value map stored with a resource."},
        "uid": {"type": "string", "description": "Unique identifier of the object, set by the server."},
        "resourceVersion": {"type": "string", "description": "Version of the object for optimistic concurrency."},
        "generation": {"type": "integer", "description": "Sequence number of spec changes, set by the server."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "Time the object was created."},
        "deletionTimestamp": {"type": "string", "format": "date-time", "description": "Time after which the object is deleted."},
        "finalizers": {"type": "array", "items": {"type": "string"},
                       "description": "Entries that must be removed before the object is deleted."},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "description": "Objects this object depends on; it is garbage collected when they are gone."},
    },
}


def _object_schema(resource_type: ResourceType) -> dict[str, Any]:
    gvk = [{"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}]
    if resource_type.schema is not None:
        schema = json.loads(json.dumps(resource_type.schema))
    else:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                  "description": f"{resource_type.kind} (built-in; its schema is not published by this server)."}
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."})
    properties.setdefault("kind", {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."})
    properties["metadata"] = _OBJECT_META
    schema["x-kubernetes-group-version-kind"] = gvk
    return schema


def _operations(resource_type: ResourceType, media_types: list[str]) -> dict[str, Any]:
    gvk = {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}
    reference = {"$ref": f"#/components/schemas/{_definition_name(resource_type)}"}
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                        "description": "Ignore, Warn or Strict handling of unknown fields in the request body."}
    json_body = {"content": {"application/json": {"schema": reference}}}
    response = {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}

    def operation(action: str, **extra: Any) -> dict[str, Any]:
        return {"operationId": f"{action}{resource_type.kind}", "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "responses": response, **extra}

    return {
        "get": operation("get"),
        "put": operation("put", parameters=[field_validation], requestBody=json_body),
        "patch": operation("patch", parameters=[field_validation], requestBody={
            "content": {media_type: {"schema": {"type": "object"}} for media_type in media_types}}),
        "delete": operation("delete"),
    }


def openapi_v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """Return the OpenAPI v3 document of one group/version, or ``None`` when it is not served."""
    types = registry.types_in(group, version)
    if not types:
        return None
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource_type in types:
        media_types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        scope = f"{prefix}/namespaces/{{namespace}}" if resource_type.namespaced else prefix
        paths[f"{scope}/{resource_type.plural}/{{name}}"] = _operations(resource_type, media_types)
        schemas[_definition_name(resource_type)] = _object_schema(resource_type)
    return {
        "openapi": "3.0.0",
        "info": {"title": "mangakd development cluster", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _path_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_root(registry: Registry) -> dict[str, Any]:
    """Return ``/openapi/v3``: one entry per group/version with a hash that changes with its content."""
    paths = {}
    group_versions = {(rt.group, rt.version) for rt in registry.all()}
    for group, version in sorted(group_versions):
        document = openapi_v3_document(registry, group, version)
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()
        key = _path_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
