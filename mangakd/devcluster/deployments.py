"""Deployment and ReplicaSet controllers of the development cluster.

A Deployment owns one ReplicaSet per pod template, named
``DEPLOYMENT-HASH`` and labelled ``pod-template-hash``. The ReplicaSet of
the current template is scaled to ``spec.replicas`` and older ones to zero.
Each ReplicaSet creates or deletes pods to match its replicas. Which runtime
runs those pods is the executor's choice (see :class:`.executor.PodRuntime`);
by default they are marked Running and Ready without a process.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any

from .api import MERGE_PATCH, ClusterApi
from .errors import ApiError
from .meta import format_time, owner_reference

logger = logging.getLogger(__name__)

# NOTE: rollouts replace all old pods at once (no maxSurge/maxUnavailable
# pacing), and there is no rollback history beyond the revision annotation.


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # Same alphabet as kube-controller-manager's hashes: no vowels, so no words.
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    number = int(digest[:16], 16)
    return "".join(alphabet[(number >> (5 * i)) % len(alphabet)] for i in range(10))


class ReplicaSetController:
    """Keeps the number of live pods of each ReplicaSet at ``spec.replicas``."""

    def __init__(self, api: ClusterApi) -> None:
        self.api = api
        self.rs_type = api.registry.lookup("apps", "v1", "replicasets")
        self.pod_type = api.registry.lookup("", "v1", "pods")

    def reconcile(self, namespace: str, name: str) -> None:
        assert self.rs_type is not None and self.pod_type is not None
        try:
            replica_set = self.api.get(self.rs_type, namespace, name)
        except ApiError:
            return
        if replica_set["metadata"].get("deletionTimestamp"):
            return
        uid = replica_set["metadata"]["uid"]
        pods = [pod for pod in self.api.list(self.pod_type, namespace)
                if _owned_by(pod, uid) and not pod["metadata"].get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        desired = replica_set["spec"].get("replicas", 1)
        template = replica_set["spec"]["template"]

        for _ in range(desired - len(pods)):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"generateName": name + "-", "namespace": namespace,
                                "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                                "ownerReferences": [owner_reference(replica_set)]},
                   "spec": copy.deepcopy(template["spec"])}
            pods.append(self.api.create(self.pod_type, namespace, pod)[0])
        surplus = sorted(pods, key=lambda pod: pod["metadata"]["creationTimestamp"], reverse=True)[:max(len(pods) - desired, 0)]
        for pod in surplus:
            self.api.delete(self.pod_type, namespace, pod["metadata"]["name"])
            pods.remove(pod)

        ready = sum(1 for pod in pods if _ready(pod))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": replica_set["metadata"].get("generation", 1)}
        if status != replica_set.get("status"):
            replica_set["status"] = status
            self.api.update(self.rs_type, namespace, name, replica_set, subresource="status")


class DeploymentController:
    """Rolls a Deployment's template out through ReplicaSets and writes its status."""

    def __init__(self, api: ClusterApi) -> None:
        self.api = api
        self.deployment_type = api.registry.lookup("apps", "v1", "deployments")
        self.rs_type = api.registry.lookup("apps", "v1", "replicasets")

    def reconcile(self, namespace: str, name: str) -> None:
        assert self.deployment_type is not None and self.rs_type is not None
        try:
            deployment = self.api.get(self.deployment_type, namespace, name)
        except ApiError:
            return
        if deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment["spec"]
        uid = deployment["metadata"]["uid"]
        replicas = spec.get("replicas", 1)
        pod_hash = template_hash(spec["template"])
        current_name = f"{name}-{pod_hash}"
        owned = [rs for rs in self.api.list(self.rs_type, namespace) if _owned_by(rs, uid)]
        current = next((rs for rs in owned if rs["metadata"]["name"] == current_name), None)
        revision = 1 + max((int(rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "0"))
                            for rs in owned), default=0)

        if current is None:
            template = copy.deepcopy(spec["template"])
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            current, _ = self.api.create(self.rs_type, namespace, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": current_name, "namespace": namespace,
                             "labels": dict(template["metadata"]["labels"]),
                             "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                             "ownerReferences": [owner_reference(deployment)]},
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            })
        elif current["spec"].get("replicas") != replicas:
            current, _ = self.api.patch(self.rs_type, namespace, current_name, MERGE_PATCH, {"spec": {"replicas": replicas}})
        for old in owned:
            if old["metadata"]["name"] != current_name and old["spec"].get("replicas", 1) != 0:
                self.api.patch(self.rs_type, namespace, old["metadata"]["name"], MERGE_PATCH, {"spec": {"replicas": 0}})

        owned = [rs for rs in self.api.list(self.rs_type, namespace) if _owned_by(rs, uid)]
        total = sum((rs.get("status") or {}).get("replicas", 0) for rs in owned)
        ready = sum((rs.get("status") or {}).get("readyReplicas", 0) for rs in owned)
        updated = (current.get("status") or {}).get("replicas", 0)
        available = ready >= replicas
        old_conditions = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}

        def condition(kind: str, value: bool, reason: str, message: str) -> dict[str, Any]:
            previous = old_conditions.get(kind)
            status = "True" if value else "False"
            changed = previous is None or previous.get("status") != status or previous.get("reason") != reason
            transition = format_time() if changed else previous["lastTransitionTime"]
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": transition, "lastTransitionTime": transition}

        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": max(replicas - ready, 0),
            "conditions": [
                condition("Available", available, "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                          "Deployment has minimum availability." if available else "Deployment does not have minimum availability."),
                condition("Progressing", True, "NewReplicaSetAvailable" if available and updated == replicas == total else "ReplicaSetUpdated",
                          f'ReplicaSet "{current_name}" has successfully progressed.' if available else f'ReplicaSet "{current_name}" is progressing.'),
            ],
        }
        for key in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if status[key] == 0:
                del status[key]
        if status != deployment.get("status"):
            deployment["status"] = status
            self.api.update(self.deployment_type, namespace, name, deployment, subresource="status")
