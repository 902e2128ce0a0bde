"""Server-side printing: ``meta.k8s.io/v1`` Table objects for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints the columns the server returns. Custom resources get ``Name`` plus the
CRD version's ``additionalPrinterColumns`` (or ``Name`` and ``Age`` when the
CRD declares none, as kube-apiserver does); ``date`` columns are rendered as
ages. Built-in kinds get a reduced version of kube-apiserver's columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import jsonpath
from .meta import now, parse_time
from .registry import ResourceType
from .selectors import format_label_selector


def human_duration(seconds: float) -> str:
    """Format an age as kubectl does (``45s``, ``3m20s``, ``5h``, ``12d``, ``2y``)."""
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def age(timestamp: str | None) -> str:
    moment = parse_time(timestamp)
    if moment is None:
        return "<unknown>"
    return human_duration((now() - moment).total_seconds())


@dataclass(frozen=True)
class Column:
    """One table column and the function that computes its cell from an object."""

    name: str
    type: str
    extract: Callable[[dict[str, Any]], Any]
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


NAME = Column("Name", "string", lambda obj: obj["metadata"]["name"], format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", "string", lambda obj: age(obj["metadata"].get("creationTimestamp")),
             description="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _printer_cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    try:
        values = jsonpath.evaluate(column.get("jsonPath", ""), obj)
    except jsonpath.JsonPathError:
        return None
    if not values:
        return None
    if column.get("type") == "date":
        return age(values[0]) if isinstance(values[0], str) else None
    if len(values) == 1:
        value = values[0]
        return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else value
    return ",".join(json.dumps(value) if isinstance(value, (dict, list)) else str(value) for value in values)


def custom_columns(resource_type: ResourceType) -> list[Column]:
    if not resource_type.printer_columns:
        return [NAME, AGE]
    columns = [NAME]
    for printer in resource_type.printer_columns:
        columns.append(Column(
            printer["name"], "string" if printer.get("type") == "date" else printer.get("type", "string"),
            lambda obj, printer=printer: _printer_cell(printer, obj),
            priority=int(printer.get("priority", 0)), format=printer.get("format", ""),
            description=printer.get("description", ""),
        ))
    return columns


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for status in statuses if status.get('ready'))}/{total}"


def _pod_status(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            return state["waiting"]["reason"]
        if "terminated" in state and state["terminated"].get("reason"):
            return state["terminated"]["reason"]
    return status.get("reason") or status.get("phase") or "Pending"


def _job_status(job: dict[str, Any]) -> str:
    conditions = {c.get("type"): c.get("status") for c in (job.get("status") or {}).get("conditions") or []}
    for condition in ("Complete", "Failed", "Suspended"):
        if conditions.get(condition) == "True":
            return condition
    return "Running"


def _job_duration(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    start = parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTime")) or now()
    return human_duration((end - start).total_seconds())


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    return ((spec.get("template") or {}).get("spec") or {}).get("containers") or spec.get("containers") or []


_CONTAINERS = Column("Containers", "string", lambda obj: ",".join(c.get("name", "") for c in _containers(obj)), priority=1)
_IMAGES = Column("Images", "string", lambda obj: ",".join(c.get("image", "") for c in _containers(obj)), priority=1)
_SELECTOR = Column("Selector", "string", lambda obj: format_label_selector((obj.get("spec") or {}).get("selector")), priority=1)


def _status(obj: dict[str, Any], key: str, default: Any = 0) -> Any:
    return (obj.get("status") or {}).get(key, default)


def _event_object(event: dict[str, Any]) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _event_last_seen(event: dict[str, Any]) -> str:
    return age(event.get("lastTimestamp") or event.get("deprecatedLastTimestamp") or event.get("eventTime")
               or event["metadata"].get("creationTimestamp"))


BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "Pod": [NAME, Column("Ready", "string", _pod_ready), Column("Status", "string", _pod_status),
            Column("Restarts", "string", lambda pod: str(sum(c.get("restartCount", 0) for c in _status(pod, "containerStatuses", [])))),
            AGE, Column("IP", "string", lambda pod: _status(pod, "podIP", "<none>"), priority=1),
            Column("Node", "string", lambda pod: (pod.get("spec") or {}).get("nodeName", "<none>"), priority=1)],
    "Job": [NAME, Column("Status", "string", _job_status),
            Column("Completions", "string", lambda job: f"{_status(job, 'succeeded')}/{(job.get('spec') or {}).get('completions', 1)}"),
            Column("Duration", "string", _job_duration), AGE, _CONTAINERS, _IMAGES, _SELECTOR],
    "Deployment": [NAME, Column("Ready", "string", lambda d: f"{_status(d, 'readyReplicas')}/{(d.get('spec') or {}).get('replicas', 1)}"),
                   Column("Up-to-date", "integer", lambda d: _status(d, "updatedReplicas")),
                   Column("Available", "integer", lambda d: _status(d, "availableReplicas")), AGE,
                   _CONTAINERS, _IMAGES, _SELECTOR],
    "ReplicaSet": [NAME, Column("Desired", "integer", lambda rs: (rs.get("spec") or {}).get("replicas", 1)),
                   Column("Current", "integer", lambda rs: _status(rs, "replicas")),
                   Column("Ready", "integer", lambda rs: _status(rs, "readyReplicas")), AGE,
                   _CONTAINERS, _IMAGES, _SELECTOR],
    "Service": [NAME, Column("Type", "string", lambda s: (s.get("spec") or {}).get("type", "")),
                Column("Cluster-IP", "string", lambda s: (s.get("spec") or {}).get("clusterIP", "")),
                Column("External-IP", "string", lambda s: "<none>"),
                Column("Port(s)", "string", lambda s: ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in (s.get("spec") or {}).get("ports") or [])),
                AGE],
    "Namespace": [NAME, Column("Status", "string", lambda ns: _status(ns, "phase", "")), AGE],
    "PersistentVolumeClaim": [NAME, Column("Status", "string", lambda c: _status(c, "phase", "")),
                              Column("Capacity", "string", lambda c: (_status(c, "capacity", {}) or {}).get("storage", "")), AGE],
    "Event": [Column("Last Seen", "string", _event_last_seen), Column("Type", "string", lambda e: e.get("type", "")),
              Column("Reason", "string", lambda e: e.get("reason", "")), Column("Object", "string", _event_object),
              Column("Message", "string", lambda e: e.get("message") or e.get("note") or "")],
    "ConfigMap": [NAME, Column("Data", "integer", lambda cm: len(cm.get("data") or {}) + len(cm.get("binaryData") or {})), AGE],
    "Secret": [NAME, Column("Type", "string", lambda s: s.get("type", "")),
               Column("Data", "integer", lambda s: len(s.get("data") or {})), AGE],
    "CustomResourceDefinition": [NAME, Column("Created At", "date", lambda crd: crd["metadata"].get("creationTimestamp"))],
}


def columns_for(resource_type: ResourceType) -> list[Column]:
    if resource_type.custom:
        return custom_columns(resource_type)
    return BUILTIN_COLUMNS.get(resource_type.kind, [NAME, AGE])


def table_row(columns: list[Column], obj: dict[str, Any], include_object: str) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": [column.extract(obj) for column in columns]}
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return row


def to_table(resource_type: ResourceType, objects: list[dict[str, Any]], resource_version: str,
             include_object: str = "Metadata") -> dict[str, Any]:
    """Build a ``Table`` of ``objects``; ``include_object`` is ``None``, ``Metadata`` or ``Object``."""
    columns = columns_for(resource_type)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [column.definition() for column in columns],
        "rows": [table_row(columns, obj, include_object) for obj in objects],
    }
