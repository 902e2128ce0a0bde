"""Defaulting and validation of built-in kinds, and the two representations of Events.

kube-apiserver fills many fields of built-in objects on create (a Job's
selector and pod labels, a container's terminationMessagePath, a Service's
clusterIP, ...). Controllers and kubectl rely on some of them, so the ones
they read are filled here; the rest of the Go defaulting is not reproduced.
"""

from __future__ import annotations

import base64
import copy
import itertools
from typing import Any

from .registry import ResourceType

_cluster_ips = itertools.count(1)

JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def _required(path: str, detail: str = "") -> dict[str, str]:
    message = f"{path}: Required value" + (f": {detail}" if detail else "")
    return {"reason": "FieldValueRequired", "field": path, "message": message}


def default_pod_spec(spec: dict[str, Any], *, restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("securityContext", {})
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        container.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def validate_pod_spec(spec: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(spec, dict):
        return [_required(path)]
    containers = spec.get("containers")
    if not containers:
        return [_required(f"{path}.containers")]
    causes = []
    for index, container in enumerate(containers):
        if not container.get("name"):
            causes.append(_required(f"{path}.containers[{index}].name"))
        if not container.get("image"):
            causes.append(_required(f"{path}.containers[{index}].image"))
    return causes


def prepare_create(resource_type: ResourceType, obj: dict[str, Any]) -> list[dict[str, str]]:
    """Fill defaults of a new built-in object in place; return validation causes."""
    kind = resource_type.kind
    metadata = obj["metadata"]
    if kind == "Namespace":
        metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata["name"]
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    elif kind == "Pod":
        spec = obj.setdefault("spec", {})
        causes = validate_pod_spec(spec, "spec")
        if causes:
            return causes
        default_pod_spec(spec)
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == "Job":
        return _prepare_job(obj)
    elif kind in ("Deployment", "ReplicaSet"):
        return _prepare_replicated(obj)
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            number = next(_cluster_ips)
            spec.setdefault("clusterIP", f"10.96.{number // 250}.{number % 250 + 1}")
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif kind == "PersistentVolumeClaim":
        obj["status"] = {"phase": "Pending"}
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    elif kind == "Secret":
        _merge_string_data(obj)
    return []


def prepare_update(resource_type: ResourceType, obj: dict[str, Any], old: dict[str, Any]) -> list[dict[str, str]]:
    """Keep fields that kube-apiserver makes immutable or fills on update."""
    if resource_type.kind == "Namespace":
        obj["spec"] = old.get("spec", {}) if "spec" not in obj else obj["spec"]
    elif resource_type.kind == "Secret":
        _merge_string_data(obj)
    elif resource_type.kind == "Job":
        # The selector and the controller labels are immutable after creation.
        obj.setdefault("spec", {})["selector"] = copy.deepcopy(old.get("spec", {}).get("selector"))
    elif resource_type.kind in ("Deployment", "ReplicaSet"):
        # kube-apiserver defaults the pod template on every write, so an update that
        # leaves defaulted fields out does not change the template (and roll the pods).
        template_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
        if isinstance(template_spec, dict) and template_spec.get("containers"):
            default_pod_spec(template_spec)
    return []


def _merge_string_data(secret: dict[str, Any]) -> None:
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret.setdefault("type", "Opaque")


def _prepare_job(job: dict[str, Any]) -> list[dict[str, str]]:
    spec = job.setdefault("spec", {})
    template = spec.get("template")
    if not isinstance(template, dict):
        return [_required("spec.template")]
    pod_spec = template.setdefault("spec", {})
    causes = validate_pod_spec(pod_spec, "spec.template.spec")
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append({
            "reason": "FieldValueNotSupported" if pod_spec.get("restartPolicy") else "FieldValueRequired",
            "field": "spec.template.spec.restartPolicy",
            "message": (f'spec.template.spec.restartPolicy: Unsupported value: "{pod_spec.get("restartPolicy")}": supported values: "OnFailure", "Never"'
                        if pod_spec.get("restartPolicy") else
                        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'),
        })
    if causes:
        return causes

    default_pod_spec(pod_spec, restart_policy="Never")
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")

    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for label in CONTROLLER_UID_LABELS:
            labels[label] = uid
        for label in JOB_NAME_LABELS:
            labels[label] = name
    job["status"] = {}
    return []


def _prepare_replicated(obj: dict[str, Any]) -> list[dict[str, str]]:
    spec = obj.setdefault("spec", {})
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [_required("spec.selector")]
    template = spec.get("template")
    if not isinstance(template, dict):
        return [_required("spec.template")]
    causes = validate_pod_spec(template.get("spec"), "spec.template.spec")
    labels = (template.get("metadata") or {}).get("labels") or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            causes.append({
                "reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
                "message": f"spec.template.metadata.labels: Invalid value: {labels!r}: `selector` does not match template `labels`",
            })
            break
    if causes:
        return causes
    default_pod_spec(template["spec"])
    spec.setdefault("replicas", 1)
    if obj["kind"] == "Deployment":
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    obj["status"] = {}
    return []


# Core Event fields and their names in events.k8s.io/v1. Storage uses the core form.
_EVENT_FIELDS = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}


def event_from_storage(resource_type: ResourceType, event: dict[str, Any]) -> dict[str, Any]:
    """Convert a stored core Event to the representation of ``resource_type``."""
    if resource_type.group != "events.k8s.io":
        return event
    converted = {_EVENT_FIELDS.get(key, key): value for key, value in event.items()}
    converted["apiVersion"] = resource_type.api_version
    return converted


def event_to_storage(resource_type: ResourceType, event: dict[str, Any]) -> dict[str, Any]:
    """Convert an Event written through ``resource_type`` to the stored core form."""
    if resource_type.group != "events.k8s.io":
        return event
    reverse = {value: key for key, value in _EVENT_FIELDS.items()}
    converted = {reverse.get(key, key): value for key, value in event.items()}
    converted["apiVersion"] = "v1"
    return converted
