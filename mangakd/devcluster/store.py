"""In-memory object storage with one global resourceVersion counter and watch history.

The store is independent of the HTTP API: it keeps objects under a storage key
(``(group, plural)``) and ``(namespace, name)``, stamps each write with the next
resourceVersion, records the change in a bounded history and hands it to
watchers and listeners. All calls run on the server's event loop thread, so
a write and the notification of every watcher happen without interleaving.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

StorageKey = tuple[str, str]
ObjectKey = tuple[str, str]

DEFAULT_HISTORY_SIZE = 10_000


@dataclass(frozen=True)
class Change:
    """One write, as watchers see it.

    ``old`` is the object before the write (``None`` for ``ADDED``); watchers
    with selectors need it to turn a ``MODIFIED`` into ``ADDED`` or ``DELETED``
    when an object enters or leaves their selection.
    """

    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    storage_key: StorageKey
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    """A subscription to the changes of one storage key, optionally limited to a namespace."""

    storage_key: StorageKey
    namespace: str | None
    queue: asyncio.Queue[Change] = field(default_factory=asyncio.Queue)

    def wants(self, change: Change) -> bool:
        if change.storage_key != self.storage_key:
            return False
        if self.namespace is None:
            return True
        return (change.obj.get("metadata") or {}).get("namespace") == self.namespace


class ResourceVersionTooOld(Exception):
    """A watch asked to resume from a resourceVersion older than the kept history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Store:
    """Objects by storage key and ``(namespace, name)``, with watch history.

    Parameters
    ----------
    history_size : int
        Number of changes kept for watches that resume from a resourceVersion.
        A watch from an older resourceVersion gets ``410 Gone``.
    """

    def __init__(self, history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        self._objects: dict[StorageKey, dict[ObjectKey, dict[str, Any]]] = collections.defaultdict(dict)
        self._resource_version = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=history_size)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the latest write."""
        return self._resource_version

    def next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def get(self, storage_key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        """Return a copy of the object, or ``None``."""
        obj = self._objects[storage_key].get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, storage_key: StorageKey, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield copies of the objects in a namespace (or in all namespaces for ``None``), by name."""
        for (object_namespace, _), obj in sorted(self._objects[storage_key].items()):
            if namespace is None or object_namespace == namespace:
                yield copy.deepcopy(obj)

    def storage_keys(self) -> list[StorageKey]:
        return [key for key, objects in self._objects.items() if objects]

    def put(self, storage_key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` under a new resourceVersion and notify watchers; return a copy.

        The caller has already set every other metadata field; ``put`` only
        stamps ``metadata.resourceVersion``.
        """
        metadata = obj["metadata"]
        key = (metadata.get("namespace", ""), metadata["name"])
        old = self._objects[storage_key].get(key)
        resource_version = self.next_resource_version()
        metadata["resourceVersion"] = str(resource_version)
        stored = copy.deepcopy(obj)
        self._objects[storage_key][key] = stored
        self._publish(Change(resource_version, "MODIFIED" if old else "ADDED", storage_key, stored, old))
        return copy.deepcopy(stored)

    def remove(self, storage_key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete an object, publish ``DELETED`` with a new resourceVersion, return the last state."""
        old = self._objects[storage_key].pop((namespace, name), None)
        if old is None:
            return None
        resource_version = self.next_resource_version()
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = str(resource_version)
        self._publish(Change(resource_version, "DELETED", storage_key, final, old))
        return copy.deepcopy(final)

    def _publish(self, change: Change) -> None:
        self._history.append(change)
        for watcher in list(self._watchers):
            if watcher.wants(change):
                watcher.queue.put_nowait(change)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a listener bug must not fail the API write that triggered it
                logger.exception("Store listener %r failed on %s %s", listener, change.type, change.storage_key)

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener`` synchronously after every write (used by controllers and GC)."""
        self._listeners.append(listener)

    def watch(self, storage_key: StorageKey, namespace: str | None, since: int | None) -> Watcher:
        """Register a watcher; with ``since``, first queue the kept changes newer than it.

        Raises
        ------
        ResourceVersionTooOld
            When changes after ``since`` have already left the history.
        """
        watcher = Watcher(storage_key, namespace)
        if since is not None:
            oldest_kept = self._history[0].resource_version if self._history else self._resource_version + 1
            # Every change after `since` must still be in the history; the first kept
            # change may be `since + 1`, but not later while older changes were dropped.
            if since + 1 < oldest_kept and len(self._history) == self._history.maxlen:
                raise ResourceVersionTooOld(since, oldest_kept)
            for change in self._history:
                if change.resource_version > since and watcher.wants(change):
                    watcher.queue.put_nowait(change)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
