"""Summaries of a StudentModel's Deployments, Services and Pods, as the rollout logic reads them.

Pods are reached at ``status.podIP`` and the server's container port. The
development cluster runs every pod on 127.0.0.1 with its own local port and
writes the mapping into the pod's annotation ``devcluster.mangakd.io/ports``
(JSON, container port to local port). When that annotation is present, its
port is used instead of the container port. A real cluster never writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..names import COMPONENT_LABEL
from .names import MANIFEST_HASH_ANNOTATION, REVISION_LABEL, ROLE_LABEL

LOCAL_PORTS_ANNOTATION = "devcluster.mangakd.io/ports"


@dataclass(frozen=True)
class ObservedDeployment:
    """One Deployment of the StudentModel."""

    name: str
    component: str
    revision: int | None
    role: str | None
    replicas: int
    manifest_hash: str | None


@dataclass(frozen=True)
class ObservedPod:
    """One pod of the StudentModel; ``ready`` is False for a pod being deleted."""

    name: str
    component: str
    revision: int | None
    ready: bool
    ip: str | None
    ports: Mapping[int, int] = field(default_factory=dict)

    def endpoint(self, container_port: int) -> tuple[str, int] | None:
        """Return ``(ip, port)`` where the pod's ``container_port`` is reached, or None without an IP."""
        if not self.ip:
            return None
        return self.ip, self.ports.get(container_port, container_port)


@dataclass(frozen=True)
class ModelObserved:
    """Everything the operator read about one StudentModel's children."""

    deployments: Mapping[str, ObservedDeployment] = field(default_factory=dict)
    services: Mapping[str, str | None] = field(default_factory=dict)
    pods: tuple[ObservedPod, ...] = ()

    def revision_deployment(self, revision: int) -> ObservedDeployment | None:
        """Return the server Deployment of ``revision``, or None."""
        for deployment in self.deployments.values():
            if deployment.component == "server" and deployment.revision == revision:
                return deployment
        return None

    def ready_pods(self, revision: int) -> int:
        """Count the ready server pods of ``revision``."""
        return sum(1 for pod in self.revision_pods(revision) if pod.ready)

    def revision_pods(self, revision: int) -> list[ObservedPod]:
        """Return the server pods of ``revision``, sorted by name."""
        return sorted(
            (pod for pod in self.pods if pod.component == "server" and pod.revision == revision),
            key=lambda pod: pod.name,
        )


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels.get(key, ""))
    except ValueError:
        return None


def observe_deployment(deployment: Mapping[str, Any]) -> ObservedDeployment:
    """Summarise one Deployment."""
    metadata = deployment["metadata"]
    labels = metadata.get("labels") or {}
    return ObservedDeployment(
        name=metadata["name"],
        component=labels.get(COMPONENT_LABEL, ""),
        revision=_int_label(labels, REVISION_LABEL),
        role=labels.get(ROLE_LABEL),
        replicas=int((deployment.get("spec") or {}).get("replicas", 1)),
        manifest_hash=(metadata.get("annotations") or {}).get(MANIFEST_HASH_ANNOTATION),
    )


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    """Summarise one Pod: readiness, address and the dev cluster's port mapping."""
    metadata = pod["metadata"]
    labels = metadata.get("labels") or {}
    status = pod.get("status") or {}
    ready = not metadata.get("deletionTimestamp") and any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )
    ports: dict[int, int] = {}
    raw = (metadata.get("annotations") or {}).get(LOCAL_PORTS_ANNOTATION)
    if raw:
        try:
            ports = {int(key): int(value) for key, value in json.loads(raw).items()}
        except (ValueError, TypeError, AttributeError):
            ports = {}
    return ObservedPod(
        name=metadata["name"],
        component=labels.get(COMPONENT_LABEL, ""),
        revision=_int_label(labels, REVISION_LABEL),
        ready=bool(ready),
        ip=status.get("podIP"),
        ports=ports,
    )


def observe_model(
    deployments: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> ModelObserved:
    """Summarise the listed children of one StudentModel."""
    return ModelObserved(
        deployments={item["metadata"]["name"]: observe_deployment(item) for item in deployments},
        services={
            item["metadata"]["name"]: (item["metadata"].get("annotations") or {}).get(MANIFEST_HASH_ANNOTATION)
            for item in services
        },
        pods=tuple(observe_pod(item) for item in pods),
    )
