"""Pure functions that build the children of a DistillationRun as API objects (plain dicts).

Children: the ConfigMap with the run's YAML, the training Job (prepare,
finetune, distill on the trainer image, with the GPU), the evaluation Job
(calibrate, export, evaluate, gate on the evaluator image, CPU only) and, on
a passing gate, the StudentModel. Every child carries an owner reference to
the run, so Kubernetes garbage-collects it with the run.

Both Jobs mount the run's PersistentVolumeClaim at :data:`ARTIFACTS_MOUNT`
and run in the run's folder on it, ``ARTIFACTS_MOUNT/<subPath or run name>``.
Relative data paths in the spec therefore resolve inside that folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from mangakd.spec import GROUP_VERSION, DistillationRun

from .config import OperatorConfig
from .names import (
    COMPONENT_LABEL,
    EVALUATION,
    EVALUATION_STAGES,
    GENERATION_LABEL,
    QUEUE_LABEL,
    TRAINING,
    TRAINING_STAGES,
    config_map_name,
    evaluation_job_name,
    run_labels,
    student_model_name,
    training_job_name,
)

ARTIFACTS_MOUNT = "/var/lib/mangakd/artifacts"
SPEC_MOUNT = "/etc/mangakd"
SPEC_KEY = "run.yaml"
TERMINATION_LOG = "/dev/termination-log"
CONTAINER_NAME = "mangakd"


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the controller owner reference that points a child at the run ``body``."""
    metadata = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", GROUP_VERSION),
        "kind": body.get("kind", "DistillationRun"),
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def run_folder(run: DistillationRun) -> str:
    """Return the run's folder inside the claim: ``storage.subPath`` or the run's name."""
    if run.spec.storage is None:
        raise ValueError(f"DistillationRun {run.metadata.name} has no spec.storage; set spec.storage.pvc")
    return (run.spec.storage.sub_path or run.metadata.name).strip("/")


def workdir(run: DistillationRun) -> str:
    """Return the run directory as the Jobs' containers see it."""
    return f"{ARTIFACTS_MOUNT}/{run_folder(run)}"


def config_map(body: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """Build the ConfigMap that contains the run's YAML, read by ``mangakd run`` in both Jobs.

    The YAML is the applied object's ``apiVersion``, ``kind``, name and
    ``spec`` (with the API server's defaults), so the Jobs see exactly what
    the operator validated.
    """
    metadata = body["metadata"]
    document = {
        "apiVersion": body.get("apiVersion", GROUP_VERSION),
        "kind": "DistillationRun",
        "metadata": {"name": metadata["name"], "namespace": metadata.get("namespace")},
        "spec": body["spec"],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(metadata["name"], generation),
            "namespace": metadata.get("namespace"),
            "labels": run_labels(metadata["name"], generation),
            "ownerReferences": [owner_reference(body)],
        },
        "data": {SPEC_KEY: yaml.safe_dump(document, sort_keys=False)},
    }


def training_job(
    body: Mapping[str, Any], run: DistillationRun, generation: int, config: OperatorConfig
) -> dict[str, Any]:
    """Build the training Job: prepare, finetune and distill, with the GPU and scheduling settings."""
    return _job(
        body,
        run,
        generation,
        config,
        name=training_job_name(run.metadata.name, generation),
        component=TRAINING,
        stages=TRAINING_STAGES,
        image=config.trainer_image,
        scheduled=True,
    )


def evaluation_job(
    body: Mapping[str, Any], run: DistillationRun, generation: int, config: OperatorConfig
) -> dict[str, Any]:
    """Build the evaluation Job: calibrate, export, evaluate and gate, on CPU."""
    return _job(
        body,
        run,
        generation,
        config,
        name=evaluation_job_name(run.metadata.name, generation),
        component=EVALUATION,
        stages=EVALUATION_STAGES,
        image=config.evaluator_image,
        scheduled=False,
    )


def _job(
    body: Mapping[str, Any],
    run: DistillationRun,
    generation: int,
    config: OperatorConfig,
    *,
    name: str,
    component: str,
    stages: tuple[str, ...],
    image: str,
    scheduled: bool,
) -> dict[str, Any]:
    # `scheduled` marks the training Job: only it gets the GPU, node
    # selector, tolerations and priority class, as the spec documents them.
    resources = run.spec.resources
    storage = run.spec.storage
    if storage is None:
        raise ValueError(f"DistillationRun {run.metadata.name} has no spec.storage; set spec.storage.pvc")
    namespace = body["metadata"].get("namespace")

    labels = {**resources.labels, **run_labels(run.metadata.name, generation), COMPONENT_LABEL: component}
    if resources.queue_name:
        labels[QUEUE_LABEL] = resources.queue_name

    requests: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = resources.memory
    container_resources: dict[str, Any] = {}
    if requests:
        container_resources["requests"] = requests
    if scheduled and resources.gpu > 0:
        # Extended resources are set as limits; Kubernetes copies them to requests.
        container_resources["limits"] = {"nvidia.com/gpu": str(resources.gpu)}

    run_dir = workdir(run)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": [
            "mangakd",
            "run",
            f"{SPEC_MOUNT}/{SPEC_KEY}",
            "--workdir",
            run_dir,
            "--stages",
            ",".join(stages),
            "--termination-log",
            TERMINATION_LOG,
        ],
        "workingDir": run_dir,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": container_resources,
        "volumeMounts": [
            {"name": "artifacts", "mountPath": ARTIFACTS_MOUNT},
            {"name": "run-spec", "mountPath": SPEC_MOUNT, "readOnly": True},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        # A failed stage writes no result, so the log tail becomes the message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": storage.pvc}},
            {"name": "run-spec", "configMap": {"name": config_map_name(run.metadata.name, generation)}},
        ],
    }
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    if scheduled:
        if resources.node_selector:
            pod_spec["nodeSelector"] = dict(resources.node_selector)
        if resources.tolerations:
            pod_spec["tolerations"] = [dict(toleration) for toleration in resources.tolerations]
        if resources.priority_class_name:
            pod_spec["priorityClassName"] = resources.priority_class_name

    job_spec: dict[str, Any] = {
        "backoffLimit": resources.backoff_limit,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if resources.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = resources.active_deadline_seconds
    if resources.queue_name:
        # Kueue admits a Job by unsuspending it. Creating it suspended keeps
        # it from starting pods before Kueue's webhook has seen it.
        job_spec["suspend"] = True

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(body)],
        },
        "spec": job_spec,
    }


def student_model(body: Mapping[str, Any], run: DistillationRun, generation: int) -> dict[str, Any]:
    """Build the StudentModel of a run that passed its gate.

    ``spec.artifact`` points at the exported student and ``spec.teacher``
    at the exported teacher, both inside the run's folder on the claim.
    """
    storage = run.spec.storage
    if storage is None:
        raise ValueError(f"DistillationRun {run.metadata.name} has no spec.storage; set spec.storage.pvc")
    folder = run_folder(run)
    labels = run_labels(run.metadata.name, generation)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "StudentModel",
        "metadata": {
            "name": student_model_name(run.metadata.name),
            "namespace": body["metadata"].get("namespace"),
            "labels": labels,
            "annotations": {GENERATION_LABEL: str(generation)},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "artifact": {"pvc": storage.pvc, "path": f"{folder}/export/student"},
            "distillationRun": run.metadata.name,
            "teacher": {"artifact": {"pvc": storage.pvc, "path": f"{folder}/export/teacher"}},
        },
    }
