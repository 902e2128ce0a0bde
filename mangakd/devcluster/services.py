"""Services of the development cluster: endpoints and a small HTTP load balancer per Service port.

For each Service with a selector, the ready pods behind it (``Ready``
condition True, no ``deletionTimestamp``, and a local port for the target
port, see :mod:`.serving`) are its endpoints. They are written to the
Endpoints object of the same name, so ``kubectl get endpoints`` shows them.

Each Service port gets a listener on 127.0.0.1 at a free port, recorded in
the Service's annotation ``devcluster.mangakd.io/ports`` as JSON
(``{"8080": 40123}``, Service port to local port). The listener forwards
every HTTP request, not every connection, to the next ready endpoint in
round-robin order. So the traffic split between two Deployments behind one
Service follows their ratio of ready pods even with keep-alive clients.

A request that cannot connect to its endpoint (nothing was sent) is tried on
the next endpoint, as a proxy with connect-failure retries does. Any other
failure is returned to the client as is. Without a ready endpoint the
listener returns 503. Pods leave the endpoints as soon as they are deleted,
before their preStop hook and SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .api import ClusterApi
from .errors import ApiError
from .serving import PORTS_ANNOTATION
from .store import Change

logger = logging.getLogger(__name__)

# Hop-by-hop headers are not forwarded (RFC 9110, section 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass
class Listener:
    """The local load balancer of one Service port."""

    namespace: str
    service: str
    port: int
    target_port: int | str
    local_port: int
    sock: socket.socket
    runner: web.AppRunner | None = None
    turn: itertools.count[int] = field(default_factory=itertools.count)


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in (pod.get("status") or {}).get("conditions") or [])


def _local_port(pod: dict[str, Any], target_port: int | str) -> int | None:
    try:
        ports = json.loads((pod["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION, "{}"))
    except ValueError:
        return None
    if isinstance(target_port, str) and not target_port.isdigit():
        named = {port.get("name"): port.get("containerPort")
                 for container in (pod.get("spec") or {}).get("containers") or []
                 for port in container.get("ports") or []}
        target_port = named.get(target_port, -1)
    local = ports.get(str(target_port))
    return int(local) if local is not None else None


class ServiceProxies:
    """Keeps the endpoints and local listeners of every Service up to date."""

    def __init__(self, api: ClusterApi, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop
        self.listeners: dict[tuple[str, str, int], Listener] = {}
        self.session: aiohttp.ClientSession | None = None
        self._pending: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.service_type = api.registry.lookup("", "v1", "services")
        self.pod_type = api.registry.lookup("", "v1", "pods")
        self.endpoints_type = api.registry.lookup("", "v1", "endpoints")
        api.store.subscribe(self._on_change)

    # ---- lookups ---------------------------------------------------------------

    def resolve(self, namespace: str, name: str, port: int) -> int | None:
        """Return the local port of Service ``namespace/name`` port ``port``, or None when there is none."""
        listener = self.listeners.get((namespace, name, port))
        return listener.local_port if listener is not None else None

    def endpoints(self, namespace: str, name: str, target_port: int | str) -> list[tuple[str, int]]:
        """Return ``(pod name, local port)`` of the ready pods behind the Service, sorted by pod name."""
        assert self.service_type is not None and self.pod_type is not None
        try:
            service = self.api.get(self.service_type, namespace, name)
        except ApiError:
            return []
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return []
        result = []
        for pod in self.api.list(self.pod_type, namespace):
            labels = pod["metadata"].get("labels") or {}
            if any(labels.get(key) != value for key, value in selector.items()) or not _ready(pod):
                continue
            local = _local_port(pod, target_port)
            if local is not None:
                result.append((pod["metadata"]["name"], local))
        return result

    # ---- reacting to changes -----------------------------------------------------

    def _on_change(self, change: Change) -> None:
        # Store listeners run inside a write; the work is queued so that it writes afterwards.
        if change.storage_key == ("", "services"):
            key = (change.obj["metadata"].get("namespace", ""), change.obj["metadata"]["name"])
            if change.type == "DELETED":
                self.loop.call_soon(self._close_service, *key)
            else:
                self._queue(key)
        elif change.storage_key == ("", "pods"):
            namespace = change.obj["metadata"].get("namespace", "")
            assert self.service_type is not None
            for service in self.api.store.items(self.service_type.storage_key, namespace):
                self._queue((namespace, service["metadata"]["name"]))

    def _queue(self, key: tuple[str, str]) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self.loop.call_soon(self._sync_service, *key)

    def _sync_service(self, namespace: str, name: str) -> None:
        self._pending.discard((namespace, name))
        assert self.service_type is not None
        try:
            service = self.api.get(self.service_type, namespace, name)
        except ApiError:
            return
        spec = service.get("spec") or {}
        if not spec.get("selector"):
            return
        ports = {int(port["port"]): port.get("targetPort", port["port"]) for port in spec.get("ports") or []}
        for port, target in ports.items():
            key = (namespace, name, port)
            if key not in self.listeners:
                self._open(namespace, name, port, target)
            else:
                self.listeners[key].target_port = target
        for key in [key for key in self.listeners if key[:2] == (namespace, name) and key[2] not in ports]:
            self._close(key)
        self._annotate(service)
        self._write_endpoints(service, ports)

    def _open(self, namespace: str, name: str, port: int, target: int | str) -> None:
        # Bound now, so the local port is known before the first pod that names the Service starts.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        listener = Listener(namespace, name, port, target, int(sock.getsockname()[1]), sock)
        self.listeners[(namespace, name, port)] = listener
        task = self.loop.create_task(self._serve(listener))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("Service %s/%s port %d listens on 127.0.0.1:%d", namespace, name, port, listener.local_port)

    async def _serve(self, listener: Listener) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)

        async def forward(request: web.Request) -> web.StreamResponse:
            return await self._forward(listener, request)

        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        listener.runner = runner
        await web.SockSite(runner, listener.sock).start()

    async def _forward(self, listener: Listener, request: web.Request) -> web.StreamResponse:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        body = await request.read()
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_BY_HOP}
        endpoints = self.endpoints(listener.namespace, listener.service, listener.target_port)
        if not endpoints:
            return web.json_response({"error": {"code": "no_endpoints", "message":
                                                f"Service {listener.namespace}/{listener.service} has no ready endpoint"}},
                                     status=503)
        first = next(listener.turn)
        last_error: Exception | None = None
        for attempt in range(len(endpoints)):
            _, port = endpoints[(first + attempt) % len(endpoints)]
            url = f"http://127.0.0.1:{port}{request.rel_url}"
            try:
                async with self.session.request(request.method, url, headers=headers, data=body,
                                                allow_redirects=False) as upstream:
                    payload = await upstream.read()
                    reply_headers = {key: value for key, value in upstream.headers.items()
                                     if key.lower() not in _HOP_BY_HOP}
                    return web.Response(status=upstream.status, body=payload, headers=reply_headers)
            except aiohttp.ClientConnectorError as error:
                last_error = error  # nothing was sent: try the next endpoint
        return web.json_response({"error": {"code": "endpoints_unreachable", "message":
                                            f"no endpoint of Service {listener.namespace}/{listener.service} "
                                            f"accepted a connection: {last_error}"}}, status=503)

    def _annotate(self, service: dict[str, Any]) -> None:
        namespace, name = service["metadata"].get("namespace", ""), service["metadata"]["name"]
        ports = {str(key[2]): listener.local_port for key, listener in sorted(self.listeners.items())
                 if key[:2] == (namespace, name)}
        text = json.dumps(ports)
        annotations = service["metadata"].setdefault("annotations", {})
        if annotations.get(PORTS_ANNOTATION) == text:
            return
        annotations[PORTS_ANNOTATION] = text
        assert self.service_type is not None
        try:
            self.api.update(self.service_type, namespace, name, service)
        except ApiError as error:
            logger.debug("Annotating Service %s/%s deferred: %s", namespace, name, error)
            self._queue((namespace, name))

    def _write_endpoints(self, service: dict[str, Any], ports: dict[int, int | str]) -> None:
        if self.endpoints_type is None:
            return
        namespace, name = service["metadata"].get("namespace", ""), service["metadata"]["name"]
        subsets = []
        for port, target in ports.items():
            addresses = [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace}}
                         for pod, _ in self.endpoints(namespace, name, target)]
            if addresses:
                subsets.append({"addresses": addresses, "ports": [{"port": port, "protocol": "TCP"}]})
        body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
                "subsets": subsets}
        try:
            current = self.api.get(self.endpoints_type, namespace, name)
        except ApiError:
            self.api.create(self.endpoints_type, namespace, body)
            return
        if current.get("subsets", []) != subsets:
            current["subsets"] = subsets
            self.api.update(self.endpoints_type, namespace, name, current)

    # ---- closing -----------------------------------------------------------------

    def _close_service(self, namespace: str, name: str) -> None:
        for key in [key for key in self.listeners if key[:2] == (namespace, name)]:
            self._close(key)
        if self.endpoints_type is not None:
            try:
                self.api.delete(self.endpoints_type, namespace, name)
            except ApiError:
                pass

    def _close(self, key: tuple[str, str, int]) -> None:
        listener = self.listeners.pop(key)
        if listener.runner is not None:
            self.loop.create_task(listener.runner.cleanup())
        else:
            listener.sock.close()

    async def shutdown(self) -> None:
        """Close every listener and the client session."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for listener in list(self.listeners.values()):
            if listener.runner is not None:
                await listener.runner.cleanup()
            else:
                listener.sock.close()
        self.listeners.clear()
        if self.session is not None:
            await self.session.close()
