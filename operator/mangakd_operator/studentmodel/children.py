"""The Deployments and Services a StudentModel should have, compared with what exists (pure code).

:func:`plan_children` turns the desired replicas per revision into actions:
an ``apply`` for each child that is missing or differs from its manifest
(hash, replicas or role), and a ``delete`` for each server Deployment of a
revision that no longer serves. Unchanged children get no action, so a
steady StudentModel causes no writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mangakd.resources import StudentModelSpec

from ..config import OperatorConfig
from .manifests import (
    RevisionTemplate,
    server_deployment,
    server_service,
    teacher_deployment,
    teacher_service,
)
from .names import MANIFEST_HASH_ANNOTATION, ROLE_LABEL, TEACHER, teacher_name
from .observe import ModelObserved


@dataclass(frozen=True)
class ChildAction:
    """One change to a child.

    ``apply`` creates or updates it from ``manifest``, ``scale`` patches only
    the Deployment's replicas and role label (its pods stay), and ``delete``
    removes it (a missing object counts as done).
    """

    verb: Literal["apply", "scale", "delete"]
    kind: Literal["Deployment", "Service"]
    name: str
    message: str
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class DesiredRevision:
    """A revision that should have a Deployment, with its pod count and role."""

    revision: int
    template: RevisionTemplate
    replicas: int
    role: str


def plan_children(
    body: Mapping[str, Any],
    spec: StudentModelSpec,
    desired: list[DesiredRevision],
    observed: ModelObserved,
    config: OperatorConfig,
) -> list[ChildAction]:
    """Return the actions that bring the children to ``desired``, Services and teacher first."""
    actions: list[ChildAction] = []
    service = server_service(body, spec)
    actions += _apply_if_changed(service, "Service", observed.services.get(service["metadata"]["name"], ""), observed)

    teacher = teacher_name(body["metadata"]["name"])
    if spec.teacher is not None:
        actions += _apply_if_changed(
            teacher_service(body, spec), "Service", observed.services.get(teacher, ""), observed
        )
        actions += _apply_deployment(teacher_deployment(body, spec, config), observed)
    else:
        if teacher in observed.deployments:
            actions.append(ChildAction("delete", "Deployment", teacher, f"Deleted teacher Deployment {teacher}."))
        if teacher in observed.services:
            actions.append(ChildAction("delete", "Service", teacher, f"Deleted teacher Service {teacher}."))

    wanted = set()
    for item in desired:
        manifest = server_deployment(body, spec, item.revision, item.template, item.replicas, item.role, config)
        wanted.add(manifest["metadata"]["name"])
        actions += _apply_deployment(manifest, observed)
    for name, deployment in sorted(observed.deployments.items()):
        if deployment.component == TEACHER or name in wanted or deployment.component != "server":
            continue
        actions.append(
            ChildAction("delete", "Deployment", name, f"Deleted Deployment {name} of revision {deployment.revision}.")
        )
    return actions


def _apply_if_changed(
    manifest: dict[str, Any], kind: Literal["Deployment", "Service"], observed_hash: str | None, observed: ModelObserved
) -> list[ChildAction]:
    name = manifest["metadata"]["name"]
    exists = name in (observed.services if kind == "Service" else observed.deployments)
    if exists and observed_hash == manifest["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]:
        return []
    verb_text = "Updated" if exists else "Created"
    return [ChildAction("apply", kind, name, f"{verb_text} {kind} {name}.", manifest)]


def _apply_deployment(manifest: dict[str, Any], observed: ModelObserved) -> list[ChildAction]:
    name = manifest["metadata"]["name"]
    current = observed.deployments.get(name)
    replicas = manifest["spec"]["replicas"]
    role = manifest["metadata"]["labels"].get(ROLE_LABEL)
    if current is None:
        return [ChildAction("apply", "Deployment", name, f"Created Deployment {name} with {replicas} pods.", manifest)]
    if current.manifest_hash != manifest["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]:
        return [ChildAction("apply", "Deployment", name, f"Updated Deployment {name}.", manifest)]
    if current.replicas != replicas or current.role != role:
        role_text = f" as {role}" if role else ""
        message = f"Scaled Deployment {name} to {replicas} pods{role_text}."
        return [ChildAction("scale", "Deployment", name, message, manifest)]
    return []
