"""The Job controller of the development cluster.

It writes Job status the way kube-controller-manager does: ``startTime``,
``active``, ``ready``, ``succeeded``, ``failed``, ``completionTime`` and the
conditions ``SuccessCriteriaMet`` + ``Complete`` or ``FailureTarget`` +
``Failed`` (reasons ``BackoffLimitExceeded`` and ``DeadlineExceeded``), plus
``Suspended`` for ``spec.suspend`` (a suspended Job starts no pod, which is
what Kueue relies on). A failed pod is replaced by a new pod until more pods
have failed than ``backoffLimit``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from .api import ClusterApi
from .builtins import CONTROLLER_UID_LABELS, JOB_NAME_LABELS
from .errors import ApiError
from .meta import format_time, now, owner_reference, parse_time

logger = logging.getLogger(__name__)

# NOTE: restartPolicy OnFailure is handled like Never: a failed container is
# replaced by a new pod, not restarted in place. Indexed completion mode,
# podFailurePolicy and successPolicy are not implemented.


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    timestamp = format_time()
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": timestamp, "lastTransitionTime": timestamp}


def is_finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


class JobController:
    """Creates pods for Jobs and writes their status from the pods' phases."""

    def __init__(self, api: ClusterApi, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop
        self.job_type = api.registry.lookup("batch", "v1", "jobs")
        self.pod_type = api.registry.lookup("", "v1", "pods")
        self._deadline_timers: dict[str, asyncio.TimerHandle] = {}

    def _pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        assert self.pod_type is not None
        return [pod for pod in self.api.list(self.pod_type, job["metadata"]["namespace"])
                if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])]

    def _delete_pods(self, pods: list[dict[str, Any]]) -> None:
        assert self.pod_type is not None
        for pod in pods:
            try:
                self.api.delete(self.pod_type, pod["metadata"]["namespace"], pod["metadata"]["name"])
            except ApiError as error:
                logger.debug("Pod %s already gone: %s", pod["metadata"]["name"], error)

    def _create_pod(self, job: dict[str, Any]) -> None:
        assert self.pod_type is not None
        template = copy.deepcopy(job["spec"]["template"])
        template_meta = template.get("metadata") or {}
        labels = dict(template_meta.get("labels") or {})
        for label in JOB_NAME_LABELS:
            labels[label] = job["metadata"]["name"]
        for label in CONTROLLER_UID_LABELS:
            labels[label] = job["metadata"]["uid"]
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": job["metadata"]["name"] + "-", "namespace": job["metadata"]["namespace"],
                         "labels": labels, "annotations": dict(template_meta.get("annotations") or {}),
                         "ownerReferences": [owner_reference(job)]},
            "spec": template["spec"],
        }
        self.api.create(self.pod_type, job["metadata"]["namespace"], pod)

    def reconcile(self, namespace: str, name: str) -> None:
        assert self.job_type is not None
        try:
            job = self.api.get(self.job_type, namespace, name)
        except ApiError:
            return
        if job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended" or spec.get("suspend")]
        pods = self._pods(job)
        active = [p for p in pods if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")

        if is_finished(job):
            self._delete_pods(active)
            return

        if spec.get("suspend"):
            self._delete_pods(active)
            active = []
            if not any(c.get("type") == "Suspended" for c in conditions):
                conditions.append(_condition("Suspended", "JobSuspended", "Job suspended"))
        else:
            status.setdefault("startTime", format_time())
            finish = self._finish_reason(spec, status, failed, succeeded)
            if finish is not None:
                kind, reason, message = finish
                self._delete_pods(active)
                active = []
                if kind == "Complete":
                    conditions += [_condition("SuccessCriteriaMet", reason, message), _condition("Complete", reason, message)]
                else:
                    conditions += [_condition("FailureTarget", reason, message), _condition("Failed", reason, message)]
                if kind == "Complete":
                    status["completionTime"] = format_time()
            else:
                missing = min(spec.get("parallelism", 1), spec.get("completions", 1) - succeeded) - len(active)
                for _ in range(max(missing, 0)):
                    self._create_pod(job)
                active = [p for p in self._pods(job) if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")]
                self._arm_deadline(job, status)

        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if _pod_ready(p)), "terminating": 0,
                       "uncountedTerminatedPods": {}, "conditions": conditions})
        for key in ("active", "succeeded", "failed"):
            if status[key] == 0:
                del status[key]
        if not conditions:
            del status["conditions"]
        if status != job.get("status"):
            job["status"] = status
            self.api.update(self.job_type, namespace, name, job, subresource="status")

    @staticmethod
    def _finish_reason(spec: dict[str, Any], status: dict[str, Any], failed: int,
                       succeeded: int) -> tuple[str, str, str] | None:
        if succeeded >= spec.get("completions", 1):
            return ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        if failed > spec.get("backoffLimit", 6):
            return ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        if deadline is not None and started is not None and (now() - started).total_seconds() >= deadline:
            return ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        return None

    def _arm_deadline(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        uid = job["metadata"]["uid"]
        if deadline is None or started is None or uid in self._deadline_timers:
            return
        delay = max(deadline - (now() - started).total_seconds(), 0) + 0.05
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]

        def expire() -> None:
            self._deadline_timers.pop(uid, None)
            self.reconcile(namespace, name)

        self._deadline_timers[uid] = self.loop.call_later(delay, expire)


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
