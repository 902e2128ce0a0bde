"""Pure functions that build a StudentModel's children as API objects (plain dicts).

Children: one Deployment of the inference server per live revision
(``NAME-rN``), the Service ``NAME`` in front of all of them, and, when
``spec.teacher`` is set, the teacher Deployment and Service ``NAME-teacher``
that the student servers shadow requests to. Traffic splits between the
stable and the canary revision by their ratio of ready pods, because the
Service selects the pods of every revision.

A revision is the part of the spec that shapes the student pods: the
artifact, the serving settings except ``replicas``, and whether a teacher
is shadowed. :func:`revision_template` takes it from the spec,
:func:`template_from_record` from a revision record in ``status.history``,
so an older revision is rebuilt with its own settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mangakd.resources import ArtifactRef, ServingSpec, StudentModelSpec
from mangakd.spec import GROUP_VERSION, SpecError

from ..config import OperatorConfig
from ..manifests import ARTIFACTS_MOUNT
from .names import (
    MANIFEST_HASH_ANNOTATION,
    REVISION_LABEL,
    ROLE_LABEL,
    SERVER,
    SPEC_HASH_ANNOTATION,
    TEACHER,
    model_labels,
    revision_deployment_name,
    service_name,
    teacher_name,
)

CONTAINER_NAME = "server"
TEACHER_MOUNT = "/var/lib/mangakd/teacher"
# Seconds the server gets to finish in-flight requests after SIGTERM (its --drain-seconds).
DRAIN_SECONDS = 30


@dataclass(frozen=True)
class RevisionTemplate:
    """Content of one revision's pods: the artifact, the serving settings and whether they shadow a teacher."""

    artifact: ArtifactRef
    serving: ServingSpec
    shadowing: bool

    def spec_hash(self) -> str:
        """Hash of the revision's content; equal content gives the same revision."""
        document = {
            "artifact": self.artifact.model_dump(by_alias=True),
            "serving": self.serving.model_dump(by_alias=True, exclude={"replicas"}),
            "shadowing": self.shadowing,
        }
        return _digest(document)

    def serving_snapshot(self) -> dict[str, Any]:
        """Return the serving settings as a revision record stores them (camelCase, without replicas)."""
        return self.serving.model_dump(by_alias=True, exclude={"replicas"})


def revision_template(spec: StudentModelSpec) -> RevisionTemplate:
    """Return the revision that the spec requests."""
    return RevisionTemplate(artifact=spec.artifact, serving=spec.serving, shadowing=spec.teacher is not None)


def template_from_record(record: Mapping[str, Any], spec: StudentModelSpec) -> RevisionTemplate | None:
    """Rebuild a revision from its record; None when the record has no artifact.

    Serving settings missing from the record are taken from ``spec``.
    """
    artifact = record.get("artifact")
    if not artifact:
        return None
    serving = {**spec.serving.model_dump(by_alias=True), **(record.get("serving") or {})}
    return RevisionTemplate(
        artifact=ArtifactRef.model_validate(artifact),
        serving=ServingSpec.model_validate(serving),
        shadowing=bool(record.get("shadowing", spec.teacher is not None)),
    )


def check_artifact_path(field: str, artifact: ArtifactRef, source: str) -> None:
    """Reject an artifact path that leaves its claim.

    Raises
    ------
    SpecError
        When the path is absolute or contains ``..``.
    """
    path = PurePosixPath(artifact.path)
    if path.is_absolute() or ".." in path.parts or not artifact.path.strip("/"):
        raise SpecError(
            f"{source} is invalid:\n{field}.path: {artifact.path!r} must be a relative folder inside the "
            "claim, without '..', e.g. runs/clinc150/export/student"
        )


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the controller owner reference that points a child at the StudentModel ``body``."""
    metadata = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", GROUP_VERSION),
        "kind": body.get("kind", "StudentModel"),
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def teacher_url(model: str, namespace: str, port: int) -> str:
    """Base URL of the teacher Service as the student pods reach it."""
    return f"http://{teacher_name(model)}.{namespace}.svc:{port}"


def server_deployment(
    body: Mapping[str, Any],
    spec: StudentModelSpec,
    revision: int,
    template: RevisionTemplate,
    replicas: int,
    role: str,
    config: OperatorConfig,
) -> dict[str, Any]:
    """Build the Deployment that serves one revision with ``replicas`` pods.

    The role label (``stable`` or ``canary``) sits on the Deployment only,
    so changing it does not replace the pods.
    """
    name = body["metadata"]["name"]
    namespace = body["metadata"].get("namespace") or "default"
    serving = template.serving
    pod_labels = {**model_labels(name, SERVER), REVISION_LABEL: str(revision)}
    args = [
        f"{ARTIFACTS_MOUNT}/{template.artifact.path.strip('/')}",
        "--host",
        "0.0.0.0",
        "--port",
        str(serving.port),
        "--revision",
        str(revision),
        "--model-name",
        name,
        "--max-batch-size",
        str(serving.max_batch_size),
        "--max-wait-ms",
        f"{serving.max_wait_ms:g}",
        "--drain-seconds",
        str(DRAIN_SECONDS),
    ]
    if serving.threads is not None:
        args += ["--threads", str(serving.threads)]
    if template.shadowing and spec.teacher is not None:
        args += [
            "--teacher-url",
            teacher_url(name, namespace, serving.port),
            "--shadow-sample-rate",
            f"{serving.shadow_sample_rate:g}",
        ]
    container = _server_container(serving.image or config.server_image, args, serving, config)
    container["volumeMounts"] = [{"name": "artifacts", "mountPath": ARTIFACTS_MOUNT, "readOnly": True}]
    volumes = [
        {"name": "artifacts", "persistentVolumeClaim": {"claimName": template.artifact.pvc, "readOnly": True}}
    ]
    manifest = _deployment(
        body,
        revision_deployment_name(name, revision),
        pod_labels,
        container,
        volumes,
        replicas,
        config,
    )
    manifest["metadata"]["labels"][REVISION_LABEL] = str(revision)
    manifest["metadata"]["labels"][ROLE_LABEL] = role
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = template.spec_hash()
    return _stamp(manifest)


def teacher_deployment(body: Mapping[str, Any], spec: StudentModelSpec, config: OperatorConfig) -> dict[str, Any]:
    """Build the teacher Deployment, which serves the exported teacher without shadowing."""
    if spec.teacher is None:
        raise ValueError("teacher_deployment needs spec.teacher")
    name = body["metadata"]["name"]
    serving = spec.serving
    artifact = spec.teacher.artifact
    args = [
        f"{TEACHER_MOUNT}/{artifact.path.strip('/')}",
        "--host",
        "0.0.0.0",
        "--port",
        str(serving.port),
        "--revision",
        TEACHER,
        "--model-name",
        teacher_name(name),
        "--max-batch-size",
        str(serving.max_batch_size),
        "--max-wait-ms",
        f"{serving.max_wait_ms:g}",
        "--drain-seconds",
        str(DRAIN_SECONDS),
    ]
    if serving.threads is not None:
        args += ["--threads", str(serving.threads)]
    container = _server_container(serving.image or config.server_image, args, serving, config)
    container["volumeMounts"] = [{"name": "teacher-artifacts", "mountPath": TEACHER_MOUNT, "readOnly": True}]
    volumes = [
        {"name": "teacher-artifacts", "persistentVolumeClaim": {"claimName": artifact.pvc, "readOnly": True}}
    ]
    manifest = _deployment(
        body, teacher_name(name), model_labels(name, TEACHER), container, volumes, spec.teacher.replicas, config
    )
    return _stamp(manifest)


def server_service(body: Mapping[str, Any], spec: StudentModelSpec) -> dict[str, Any]:
    """Build the Service ``NAME`` that selects the student pods of every revision."""
    name = body["metadata"]["name"]
    return _service(body, service_name(name), model_labels(name, SERVER), spec.serving.port)


def teacher_service(body: Mapping[str, Any], spec: StudentModelSpec) -> dict[str, Any]:
    """Build the Service ``NAME-teacher`` in front of the teacher pods."""
    name = body["metadata"]["name"]
    return _service(body, teacher_name(name), model_labels(name, TEACHER), spec.serving.port)


def _server_container(
    image: str, args: list[str], serving: ServingSpec, config: OperatorConfig
) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "mangakd.server"],
        "args": args,
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"}],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": dict(serving.resources),
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": serving.port},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": serving.port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # The pod leaves the Service's endpoints when it is deleted; the sleep
        # lets clients and proxies stop sending to it before SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": config.server_pre_stop_seconds}}},
    }


def _deployment(
    body: Mapping[str, Any],
    name: str,
    pod_labels: dict[str, str],
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    replicas: int,
    config: OperatorConfig,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": config.server_pre_stop_seconds + DRAIN_SECONDS + 5,
    }
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": body["metadata"].get("namespace"),
            "labels": dict(pod_labels),
            "annotations": {},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            # A template change replaces pods one at a time, never below the desired count.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(pod_labels)}, "spec": pod_spec},
        },
    }


def _service(body: Mapping[str, Any], name: str, selector: dict[str, str], port: int) -> dict[str, Any]:
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": body["metadata"].get("namespace"),
            "labels": dict(selector),
            "annotations": {},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }
    return _stamp(manifest)


def _stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    # The hash leaves out replicas and the role, which change without a new manifest.
    essence = json.loads(json.dumps(manifest))
    essence["spec"].pop("replicas", None)
    essence["metadata"]["labels"].pop(ROLE_LABEL, None)
    manifest["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION] = _digest(essence)
    return manifest


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
