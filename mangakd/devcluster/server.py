"""HTTP routes of the development cluster (aiohttp).

URL layout as in kube-apiserver::

    /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]
    /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]

plus discovery, ``/version``, ``/openapi/v2``, ``/openapi/v3`` and health
endpoints. Responses are JSON only (no protobuf); errors are ``Status``
objects. Watches are served by :mod:`.watch`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from aiohttp import web

from . import discovery, errors, tables
from .api import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, ClusterApi
from .registry import ResourceType
from .selectors import build_matcher, format_label_selector
from .watch import serve_watch

logger = logging.getLogger(__name__)

PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


class LogSource(Protocol):
    """Source of ``pods/NAME/log`` responses: the executor, which runs the containers."""

    async def read_log(self, request: web.Request, namespace: str, pod: dict[str, Any],
                       container: str, params: Mapping[str, str]) -> web.StreamResponse: ...


@dataclass
class Target:
    """The resource a request addresses."""

    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 - {json.dumps(warning)}' for warning in warnings)
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


class ApiHttpServer:
    """aiohttp application that exposes a :class:`ClusterApi`."""

    def __init__(self, api: ClusterApi, log_source: LogSource | None = None) -> None:
        self.api = api
        self.log_source = log_source
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except errors.ApiError as error:
            return json_response(error.to_status(), status=error.code)
        except web.HTTPException:
            raise
        except Exception as error:  # reported to the client as kube-apiserver's 500 InternalError
            logger.exception("Request %s %s failed", request.method, request.path)
            status = errors.ApiError(500, "InternalError", f"an error on the server ({error!r}) has prevented the request from succeeding")
            return json_response(status.to_status(), status=500)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segments = [segment for segment in request.path.split("/") if segment]
        registry = self.api.registry
        if not segments:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version", "/healthz"]})
        if segments[0] in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if segments == ["version"]:
            return json_response(discovery.SERVER_VERSION)
        if segments[0] == "openapi":
            return self._openapi(request, segments[1:])
        if segments == ["api"]:
            return json_response(discovery.api_versions(request.host))
        if segments == ["apis"]:
            return json_response(discovery.api_group_list(registry))
        if segments[0] == "apis" and len(segments) == 2:
            group = discovery.api_group(registry, segments[1])
            if group is None:
                raise errors.path_not_found(request.path)
            return json_response(group)

        if segments[0] == "api" and len(segments) >= 2:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[0] == "apis" and len(segments) >= 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise errors.path_not_found(request.path)
        if not rest:
            resources = discovery.api_resource_list(registry, group, version)
            if resources is None:
                raise errors.path_not_found(request.path)
            return json_response(resources)
        return await self._resource_request(request, self._target(group, version, rest, request.path))

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        if rest == ["v2"]:
            if "protobuf" in request.headers.get("Accept", ""):
                # An empty protobuf message is a valid, empty OpenAPI v2 document.
                return web.Response(body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            return json_response({"swagger": "2.0", "info": {"title": "mangakd development cluster", "version": "v2"},
                                  "paths": {}, "definitions": {}})
        if rest == ["v3"]:
            return json_response(discovery.openapi_v3_root(self.api.registry))
        if len(rest) >= 3 and rest[0] == "v3":
            group, version = ("", rest[2]) if rest[1] == "api" else (rest[2], rest[3] if len(rest) > 3 else "")
            document = discovery.openapi_v3_document(self.api.registry, group, version)
            if document is not None:
                return json_response(document)
        raise errors.path_not_found(request.path)

    def _target(self, group: str, version: str, rest: list[str], path: str) -> Target:
        registry = self.api.registry
        if rest[0] == "namespaces" and len(rest) >= 3:
            resource_type = registry.lookup(group, version, rest[2])
            if resource_type is not None and resource_type.namespaced:
                if len(rest) > 5:
                    raise errors.path_not_found(path)
                return Target(resource_type, rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None)
        resource_type = registry.lookup(group, version, rest[0])
        if resource_type is None or len(rest) > 3:
            raise errors.path_not_found(path)
        name = rest[1] if len(rest) > 1 else None
        if resource_type.namespaced and name is not None:
            raise errors.path_not_found(path)
        return Target(resource_type, None, name, rest[2] if len(rest) > 2 else None)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if "protobuf" in request.content_type:
            # client-go switches typed clients to JSON after a 415 (kubectl create configmap, ...).
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  f"the body of the request was in an unknown format - accepted media types include: "
                                  f"application/json, application/yaml; the request used {request.content_type}")
        if not raw:
            return None
        try:
            if request.content_type == APPLY_PATCH:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise errors.bad_request(f"the request body is not valid {'YAML' if request.content_type == APPLY_PATCH else 'JSON'}: {error}") from error

    async def _resource_request(self, request: web.Request, target: Target) -> web.StreamResponse:
        resource_type = target.resource_type
        params = request.query
        method = request.method
        if target.subresource is not None and target.subresource not in resource_type.subresources:
            raise errors.path_not_found(request.path)

        if target.name is None:
            if method == "GET":
                if params.get("watch") in ("1", "true", "True"):
                    return await serve_watch(request, self.api, resource_type, target.namespace, params, wants_table(request))
                return self._list(request, target)
            if method == "POST":
                if resource_type.namespaced and target.namespace is None:
                    raise errors.method_not_allowed(f"create of {resource_type.plural} needs a namespace in the URL")
                obj, warnings = self.api.create(resource_type, target.namespace or "", await self._body(request),
                                                dry_run=params.get("dryRun") == "All",
                                                field_validation=params.get("fieldValidation", "Warn"))
                return json_response(obj, status=201, warnings=warnings)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise errors.method_not_allowed(f"{method} is not supported on a collection")

        namespace = target.namespace or ""
        if target.subresource == "log":
            return await self._log(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target)
        if method == "GET":
            obj = self.api.get(resource_type, namespace, target.name)
            if wants_table(request):
                return json_response(tables.to_table(resource_type, [obj], obj["metadata"]["resourceVersion"],
                                                     request.query.get("includeObject", "Metadata")))
            return json_response(obj)
        options = {"dry_run": params.get("dryRun") == "All", "field_validation": params.get("fieldValidation", "Warn")}
        if method == "PUT":
            obj, warnings = self.api.update(resource_type, namespace, target.name, await self._body(request),
                                            subresource=target.subresource, **options)
            return json_response(obj, warnings=warnings)
        if method == "PATCH":
            content_type = request.content_type
            if content_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(content_type)
            obj, warnings = self.api.patch(resource_type, namespace, target.name, content_type, await self._body(request),
                                           subresource=target.subresource, **options)
            return json_response(obj, warnings=warnings)
        if method == "DELETE":
            body = await self._body(request) or {}
            propagation = params.get("propagationPolicy") or body.get("propagationPolicy")
            if propagation is None and body.get("orphanDependents") is True:
                propagation = "Orphan"
            obj, removed = self.api.delete(resource_type, namespace, target.name, propagation=propagation,
                                           preconditions=body.get("preconditions"), dry_run=params.get("dryRun") == "All")
            if removed:
                return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "details": {"name": target.name, "group": resource_type.group,
                                                  "kind": resource_type.plural, "uid": obj["metadata"].get("uid")}})
            return json_response(obj)
        raise errors.method_not_allowed(f"{method} is not supported on {resource_type.plural}")

    def _list(self, request: web.Request, target: Target) -> web.Response:
        matcher = build_matcher(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        resource_type = target.resource_type
        resource_version = str(self.api.store.resource_version)
        items = [obj for obj in self.api.list(resource_type, target.namespace) if matcher(obj)]
        if wants_table(request):
            return json_response(tables.to_table(resource_type, items, resource_version,
                                                 request.query.get("includeObject", "Metadata")))
        return json_response({"kind": resource_type.list_kind, "apiVersion": resource_type.api_version,
                              "metadata": {"resourceVersion": resource_version}, "items": items})

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        matcher = build_matcher(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        resource_type = target.resource_type
        deleted = []
        for obj in self.api.list(resource_type, target.namespace):
            if matcher(obj):
                last, _ = self.api.delete(resource_type, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                                          propagation=request.query.get("propagationPolicy"))
                deleted.append(last)
        return json_response({"kind": resource_type.list_kind, "apiVersion": resource_type.api_version,
                              "metadata": {"resourceVersion": str(self.api.store.resource_version)}, "items": deleted})

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        pod = self.api.get(target.resource_type, target.namespace or "", target.name or "")
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container") or (containers[0] if len(containers) == 1 else "")
        if container not in containers:
            raise errors.bad_request(f'a container name must be specified for pod {target.name}, choose one of: {containers}'
                                     if not container else f'container {container} is not valid for pod {target.name}')
        if self.log_source is None:
            raise errors.bad_request(f'container "{container}" in pod "{target.name}" is waiting to start: no executor runs pods in this cluster')
        return await self.log_source.read_log(request, target.namespace or "", pod, container, request.query)

    async def _scale(self, request: web.Request, target: Target) -> web.Response:
        resource_type = target.resource_type
        namespace = target.namespace or ""
        if request.method in ("PUT", "PATCH"):
            body = await self._body(request) or {}
            if request.method == "PATCH":
                current = self._scale_object(self.api.get(resource_type, namespace, target.name or ""))
                body = self.api_patch_scale(current, request.content_type, body)
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.bad_request(f"spec.replicas must be a non-negative integer, got {replicas!r}")
            self.api.patch(resource_type, namespace, target.name or "", MERGE_PATCH, {"spec": {"replicas": replicas}})
        return json_response(self._scale_object(self.api.get(resource_type, namespace, target.name or "")))

    @staticmethod
    def api_patch_scale(current: dict[str, Any], content_type: str, body: Any) -> dict[str, Any]:
        from . import patch as patches

        if content_type == JSON_PATCH:
            return patches.json_patch(current, body)
        return patches.merge_patch(current, body)

    @staticmethod
    def _scale_object(obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {key: obj["metadata"][key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if key in obj["metadata"]},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": format_label_selector(spec.get("selector"))},
        }
