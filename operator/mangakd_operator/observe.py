"""Summaries of the Jobs and Pods the operator reads back from the cluster.

The reconcile logic works on these small frozen records instead of raw API
objects, so its tests need no cluster: :func:`observe_job` turns a Job and
its Pods (plain dicts, as ``kubectl get -o json`` prints them) into an
:class:`ObservedJob`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .names import COMPONENT_LABEL, GENERATION_LABEL

JobState = Literal["Suspended", "Pending", "Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class ObservedJob:
    """State of one of the operator's Jobs, as the reconcile reads it.

    Attributes
    ----------
    name, uid : str
        The Job's name and uid.
    component : str
        ``training`` or ``evaluation`` (the ``app.kubernetes.io/component`` label).
    generation : int or None
        The run generation the Job was created for (the ``mangakd.io/generation`` label).
    state : str
        Suspended, Pending (no pod started yet), Running, Succeeded or Failed.
    failed_pods : int
        Pods that failed so far; the Job retries until ``backoffLimit`` is exceeded.
    started_at, finished_at : str or None
        The Job's ``status.startTime`` and the time it completed or failed, RFC 3339.
    message : str
        Termination message of the succeeded pod, or of the latest failed pod.
    failure : str
        ``reason: message`` of the Job's Failed condition, e.g. BackoffLimitExceeded.
    """

    name: str
    uid: str
    component: str
    generation: int | None
    state: JobState
    failed_pods: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    message: str = ""
    failure: str = ""


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _termination(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return {}


def _generation(labels: Mapping[str, str]) -> int | None:
    try:
        return int(labels.get(GENERATION_LABEL, ""))
    except ValueError:
        return None


def observe_job(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> ObservedJob:
    """Summarise a Job and the Pods it owns.

    Parameters
    ----------
    job : mapping
        The Job object.
    pods : iterable of mapping
        The Job's Pods (any order); pods of other Jobs are ignored by uid.
    """
    metadata = job["metadata"]
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    own_pods = [
        pod
        for pod in pods
        if any(ref.get("uid") == metadata.get("uid") for ref in pod["metadata"].get("ownerReferences") or [])
    ]
    own_pods.sort(key=lambda pod: pod["metadata"].get("creationTimestamp") or "")

    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    message = ""
    failure = ""
    finished_at = None
    state: JobState
    if complete is not None:
        state = "Succeeded"
        finished_at = status.get("completionTime") or complete.get("lastTransitionTime")
        succeeded = [pod for pod in own_pods if (pod.get("status") or {}).get("phase") == "Succeeded"]
        if succeeded:
            message = _termination(succeeded[-1]).get("message", "")
    elif failed is not None:
        state = "Failed"
        finished_at = failed.get("lastTransitionTime")
        failure = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": ")
        failed_pods = [pod for pod in own_pods if (pod.get("status") or {}).get("phase") == "Failed"]
        if failed_pods:
            message = _termination(failed_pods[-1]).get("message", "")
    elif spec.get("suspend"):
        state = "Suspended"
    elif status.get("startTime") or status.get("active"):
        state = "Running"
    else:
        state = "Pending"

    labels = metadata.get("labels") or {}
    return ObservedJob(
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        component=labels.get(COMPONENT_LABEL, ""),
        generation=_generation(labels),
        state=state,
        failed_pods=int(status.get("failed") or 0),
        started_at=status.get("startTime"),
        finished_at=finished_at,
        message=message,
        failure=failure,
    )


@dataclass(frozen=True)
class Observed:
    """Everything the operator read about one run's children.

    Attributes
    ----------
    jobs : dict of str to ObservedJob
        The run's Jobs of every generation, by name.
    config_maps : frozenset of str
        Names of the run's ConfigMaps, of every generation.
    student_model : bool
        Whether the run's StudentModel exists.
    """

    jobs: Mapping[str, ObservedJob]
    config_maps: frozenset[str] = frozenset()
    student_model: bool = False
