"""Resource types the development cluster serves: built-in ones and those added by CRDs.

A :class:`ResourceType` is one group/version/resource as discovery lists it.
Several resource types can share one storage (a CRD served in two versions,
or ``events`` in ``v1`` and ``events.k8s.io/v1``); :attr:`ResourceType.storage_key`
names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource.

    Attributes
    ----------
    group, version, plural, singular, kind
        Names as in discovery; ``group`` is ``""`` for the core group.
    namespaced
        Whether objects live in a namespace.
    subresources
        Served subresources: ``status``, ``log`` (pods), ``scale``.
    printer_columns
        ``additionalPrinterColumns`` of a CRD version (name, type, jsonPath, ...).
    schema
        The ``openAPIV3Schema`` of a CRD version, or ``None`` for built-in types.
    custom
        True for types registered by a CRD (merge patch only, strict updates).
    storage_group
        Group whose storage contains the objects (differs from ``group`` for
        ``events.k8s.io`` events, which share the core ``events`` storage).
    """

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset({"status"})
    printer_columns: tuple[dict[str, Any], ...] = ()
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    custom: bool = False
    storage_group: str | None = None
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group if self.storage_group is None else self.storage_group, self.plural)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _core(plural: str, kind: str, namespaced: bool = True, **extra: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind.lower(), kind, namespaced, **extra)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    _core("pods", "Pod", short_names=("po",), categories=("all",),
          subresources=frozenset({"status", "log"})),
    _core("services", "Service", short_names=("svc",), categories=("all",)),
    _core("configmaps", "ConfigMap", short_names=("cm",), subresources=frozenset()),
    _core("secrets", "Secret", subresources=frozenset()),
    _core("events", "Event", short_names=("ev",), subresources=frozenset()),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",)),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",), subresources=frozenset()),
    _core("endpoints", "Endpoints", short_names=("ep",), subresources=frozenset()),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True,
                 short_names=("deploy",), categories=("all",),
                 subresources=frozenset({"status", "scale"})),
    ResourceType("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True,
                 short_names=("rs",), categories=("all",),
                 subresources=frozenset({"status", "scale"})),
    ResourceType("batch", "v1", "jobs", "job", "Job", True, categories=("all",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True,
                 subresources=frozenset()),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True,
                 short_names=("ev",), subresources=frozenset(), storage_group=""),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "customresourcedefinition", "CustomResourceDefinition", False,
                 short_names=("crd", "crds")),
)


class Registry:
    """The set of served resource types, changed at run time by CRDs."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._group_order: list[str] = []
        for resource_type in types:
            self.add(resource_type)

    def add(self, resource_type: ResourceType) -> None:
        key = (resource_type.group, resource_type.version, resource_type.plural)
        self._types[key] = resource_type
        if resource_type.group not in self._group_order:
            self._group_order.append(resource_type.group)

    def remove_storage(self, storage_key: tuple[str, str]) -> None:
        """Remove every version of the resource stored under ``storage_key``."""
        for key, resource_type in list(self._types.items()):
            if resource_type.storage_key == storage_key:
                del self._types[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for resource_type in self._types.values():
            if resource_type.group_version == (group, version) and resource_type.kind == kind:
                return resource_type
        return None

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group_version == (group, version)]

    def versions_of(self, group: str) -> list[str]:
        """Served versions of a group, preferred (first registered) first."""
        versions: list[str] = []
        for resource_type in self._types.values():
            if resource_type.group == group and resource_type.version not in versions:
                versions.append(resource_type.version)
        return versions

    def groups(self) -> list[str]:
        """Named groups (not the core group) that serve at least one resource."""
        served = {rt.group for rt in self._types.values()}
        return [group for group in self._group_order if group and group in served]

    def all(self) -> list[ResourceType]:
        return list(self._types.values())
