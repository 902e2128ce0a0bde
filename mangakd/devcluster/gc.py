"""Garbage collection by owner reference, foreground deletion and namespace cleanup.

The collector listens to every store write and schedules its work on the
event loop (``loop.call_soon``) so that it never writes from inside another
write. It reproduces these kube-controller-manager behaviours:

- When an owner is deleted, each dependent loses the owner reference, and a
  dependent whose owners are all gone is deleted in the background (its own
  dependents follow, so deletion cascades).
- An owner deleted with ``propagationPolicy=Foreground`` carries the
  ``foregroundDeletion`` finalizer until its dependents are gone.
- A namespace being deleted has its objects deleted; it is removed once it
  is empty (objects with finalizers keep it in ``Terminating``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

from .api import ClusterApi
from .errors import ApiError
from .store import Change

logger = logging.getLogger(__name__)

NAMESPACES = ("", "namespaces")


class GarbageCollector:
    """Owner-reference and namespace garbage collector, driven by store changes."""

    def __init__(self, api: ClusterApi, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop
        api.store.subscribe(self._on_change)

    def _schedule(self, function: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                function(*args)
            except ApiError as error:
                # A concurrent delete or update won the race; the next change retries.
                logger.debug("Garbage collection step %s%r skipped: %s", function.__name__, args, error)

        self.loop.call_soon(run)

    def _on_change(self, change: Change) -> None:
        meta = change.obj.get("metadata") or {}
        if change.type == "DELETED":
            self._schedule(self._collect_dependents, meta.get("uid"))
            for reference in meta.get("ownerReferences") or []:
                self._schedule(self._finish_foreground, reference.get("uid"))
            if meta.get("namespace"):
                self._schedule(self._finish_namespace, meta["namespace"])
            return
        if not meta.get("deletionTimestamp"):
            return
        if change.storage_key == NAMESPACES:
            self._schedule(self._empty_namespace, meta["name"])
        elif "foregroundDeletion" in (meta.get("finalizers") or []):
            self._schedule(self._delete_dependents, meta.get("uid"))
            self._schedule(self._finish_foreground, meta.get("uid"))

    def _find_by_uid(self, uid: str) -> tuple[Any, dict[str, Any]] | None:
        for storage_key in self.api.store.storage_keys():
            resource_type = self.api.resource_type_for_storage(storage_key)
            for obj in self.api.store.items(storage_key):
                if obj["metadata"].get("uid") == uid and resource_type is not None:
                    return resource_type, self.api.to_client(resource_type, obj)
        return None

    def _collect_dependents(self, owner_uid: str) -> None:
        for resource_type, dependent in self.api.find_dependents(owner_uid):
            remaining = [ref for ref in dependent["metadata"]["ownerReferences"] if ref.get("uid") != owner_uid]
            if any(self._find_by_uid(ref.get("uid", "")) for ref in remaining):
                updated = copy.deepcopy(dependent)
                updated["metadata"]["ownerReferences"] = remaining
                self.api.update(resource_type, dependent["metadata"].get("namespace", ""),
                                dependent["metadata"]["name"], updated, require_resource_version=False)
                continue
            logger.debug("Deleting %s %s/%s: its owner %s is gone", resource_type.kind,
                         dependent["metadata"].get("namespace", ""), dependent["metadata"]["name"], owner_uid)
            self.api.delete(resource_type, dependent["metadata"].get("namespace", ""),
                            dependent["metadata"]["name"], propagation="Background")

    def _delete_dependents(self, owner_uid: str) -> None:
        for resource_type, dependent in self.api.find_dependents(owner_uid):
            if not dependent["metadata"].get("deletionTimestamp"):
                self.api.delete(resource_type, dependent["metadata"].get("namespace", ""),
                                dependent["metadata"]["name"], propagation="Foreground")

    def _finish_foreground(self, owner_uid: str) -> None:
        found = self._find_by_uid(owner_uid)
        if found is None:
            return
        resource_type, owner = found
        finalizers = owner["metadata"].get("finalizers") or []
        if "foregroundDeletion" not in finalizers or self.api.find_dependents(owner_uid):
            return
        updated = copy.deepcopy(owner)
        updated["metadata"]["finalizers"] = [f for f in finalizers if f != "foregroundDeletion"]
        self.api.update(resource_type, owner["metadata"].get("namespace", ""), owner["metadata"]["name"],
                        updated, require_resource_version=False)

    def _namespaced_contents(self, namespace: str) -> list[tuple[Any, dict[str, Any]]]:
        contents = []
        for storage_key in self.api.store.storage_keys():
            resource_type = self.api.resource_type_for_storage(storage_key)
            if resource_type is None or not resource_type.namespaced:
                continue
            for obj in self.api.store.items(storage_key, namespace):
                contents.append((resource_type, obj))
        return contents

    def _empty_namespace(self, namespace: str) -> None:
        for resource_type, obj in self._namespaced_contents(namespace):
            if not obj["metadata"].get("deletionTimestamp"):
                self.api.delete(resource_type, namespace, obj["metadata"]["name"], propagation="Background")
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        stored = self.api.store.get(NAMESPACES, "", namespace)
        if stored is None or not stored["metadata"].get("deletionTimestamp"):
            return
        if self._namespaced_contents(namespace):
            return
        namespace_type = self.api.registry.lookup("", "v1", "namespaces")
        assert namespace_type is not None
        updated = self.api.to_client(namespace_type, stored)
        updated["spec"] = {"finalizers": []}
        self.api.update(namespace_type, "", namespace, updated, require_resource_version=False)
