"""Watch streams: newline-delimited JSON ``{"type": ..., "object": ...}`` events.

Semantics follow kube-apiserver:

- Without ``resourceVersion`` (or with ``"0"``), or with
  ``sendInitialEvents=true``, the stream starts with one ``ADDED`` event per
  existing object. With ``sendInitialEvents=true``, a ``BOOKMARK`` annotated
  ``k8s.io/initial-events-end: "true"`` follows them.
- With ``resourceVersion=N`` the stream replays the kept changes after ``N``;
  when they are no longer kept it sends one ``ERROR`` event with a ``410``
  ``Expired`` Status and closes.
- With selectors, an object that starts matching arrives as ``ADDED`` and one
  that stops matching as ``DELETED``.
- ``allowWatchBookmarks=true`` adds a ``BOOKMARK`` every
  :data:`BOOKMARK_INTERVAL` seconds of silence and before a timeout closes
  the stream; ``timeoutSeconds`` closes it after that many seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import tables
from .api import ClusterApi
from .errors import bad_request, gone
from .registry import ResourceType
from .selectors import build_matcher
from .store import ResourceVersionTooOld

BOOKMARK_INTERVAL = 10.0


def _transition(change_type: str, matched_before: bool, matches_now: bool) -> str | None:
    """Return the event type a selecting watcher receives for a change, or ``None`` to skip it."""
    if change_type == "MODIFIED":
        if matched_before and matches_now:
            return "MODIFIED"
        if matches_now:
            return "ADDED"
        if matched_before:
            return "DELETED"
        return None
    if change_type == "ADDED":
        return "ADDED" if matches_now else None
    return "DELETED" if matched_before else None


async def serve_watch(request: web.Request, api: ClusterApi, resource_type: ResourceType, namespace: str | None,
                      params: Mapping[str, str], as_table: bool) -> web.StreamResponse:
    matcher = build_matcher(params.get("labelSelector"), params.get("fieldSelector"))
    bookmarks = params.get("allowWatchBookmarks") in ("1", "true", "True")
    send_initial = params.get("sendInitialEvents") in ("1", "true", "True")
    timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
    requested = params.get("resourceVersion", "")
    scope = namespace if resource_type.namespaced else None

    # Everything up to registering the watcher is synchronous, so no change can
    # slip between the initial listing and the first queued change.
    initial: list[dict[str, Any]] = []
    error_event: dict[str, Any] | None = None
    if requested in ("", "0") or send_initial:
        initial = [obj for obj in api.list(resource_type, scope) if matcher(obj)]
        watcher = api.store.watch(resource_type.storage_key, scope, since=None)
    else:
        try:
            since = int(requested)
        except ValueError:
            raise bad_request(f"invalid resourceVersion {requested!r}: expected an integer from a previous list or watch") from None
        try:
            watcher = api.store.watch(resource_type.storage_key, scope, since=since)
        except ResourceVersionTooOld as error:
            watcher = None
            error_event = {"type": "ERROR", "object": gone(str(error)).to_status()}
    start_version = api.store.resource_version

    response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    headers_sent = False

    def render(obj: dict[str, Any]) -> dict[str, Any]:
        # Table events carry the column definitions only in the first event, as in kube-apiserver.
        nonlocal headers_sent
        if not as_table:
            return obj
        table = tables.to_table(resource_type, [obj], obj["metadata"]["resourceVersion"],
                                request.query.get("includeObject", "Metadata"))
        if headers_sent:
            table["columnDefinitions"] = []
        headers_sent = True
        return table

    async def send(event_type: str, obj: dict[str, Any]) -> None:
        await response.write((json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n").encode())

    def bookmark(resource_version: int, initial_end: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": resource_type.kind, "apiVersion": resource_type.api_version, "metadata": metadata}

    if error_event is not None:
        await response.write((json.dumps(error_event) + "\n").encode())
        await response.write_eof()
        return response

    assert watcher is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None else None
    try:
        for obj in initial:
            await send("ADDED", render(obj))
        if send_initial:
            await send("BOOKMARK", bookmark(start_version, initial_end=True))
        while True:
            wait = BOOKMARK_INTERVAL if bookmarks else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = remaining if wait is None else min(wait, remaining)
            try:
                change = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
            except TimeoutError:
                if bookmarks and watcher.queue.empty():
                    await send("BOOKMARK", bookmark(api.store.resource_version))
                continue
            obj = api.to_client(resource_type, change.obj)
            old = api.to_client(resource_type, change.old) if change.old is not None else None
            event_type = _transition(change.type, old is not None and matcher(old), matcher(obj))
            if event_type is not None:
                await send(event_type, render(obj))
        if bookmarks:
            await send("BOOKMARK", bookmark(api.store.resource_version))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client closed the stream
    finally:
        api.store.unwatch(watcher)
    return response
