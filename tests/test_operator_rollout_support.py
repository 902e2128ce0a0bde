"""Builders for the rollout state machine tests (no tests here): a StudentModel body, observed pods, measurements."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from mangakd_operator.config import OperatorConfig
from mangakd_operator.studentmodel.analysis import Measurement
from mangakd_operator.studentmodel.handlers import prune
from mangakd_operator.studentmodel.names import MANIFEST_HASH_ANNOTATION, ROLE_LABEL
from mangakd_operator.studentmodel.observe import ModelObserved, ObservedDeployment, ObservedPod
from mangakd_operator.studentmodel.rollout import RolloutDecision, RolloutInput, decide

from mangakd.resources import RollbackRequest, StudentModelSpec

START = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
GOOD = {"samples": 50, "agreement": 0.98, "ece": 0.03, "error_rate": 0.0, "p95_latency_ms": 12.0, "requests": 50}
BAD = {"samples": 50, "agreement": 0.10, "ece": 0.40, "error_rate": 0.0, "p95_latency_ms": 12.0, "requests": 50}
FEW = {"samples": 3, "agreement": 1.0, "ece": 0.0, "error_rate": 0.0, "p95_latency_ms": 12.0, "requests": 3}


def make_spec(path: str = "models/a", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "artifact": {"pvc": "claim", "path": path},
        "teacher": {"artifact": {"pvc": "claim", "path": "models/teacher"}},
        "serving": {"replicas": 2, "shadowSampleRate": 1.0},
        "rollout": {
            "steps": [{"weight": 50, "pauseSeconds": 10}, {"weight": 100, "pauseSeconds": 10}],
            "analysis": {"minSamples": 20, "minAgreement": 0.9, "maxEce": 0.2, "failureLimit": 1,
                         "intervalSeconds": 5, "sampleTimeoutSeconds": 60},
        },
        "guard": {"enabled": True, "intervalSeconds": 30, "failingIntervals": 2},
        "historyLimit": 10,
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


class Model:
    """A StudentModel whose status carries over from one decision to the next, as the API server keeps it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "mangakd.io/v1alpha1", "kind": "StudentModel",
            "metadata": {"name": "intents", "namespace": "ml", "uid": "uid-1", "generation": 1},
            "spec": spec, "status": {},
        }
        self.now = START
        self.ready: dict[int, int] = {}
        self.deployments: dict[int, dict[str, Any]] = {}
        self.last: RolloutDecision | None = None

    @property
    def status(self) -> dict[str, Any]:
        return self.body["status"]

    def set_spec(self, **changes: Any) -> None:
        spec = copy.deepcopy(self.body["spec"])
        spec.update(changes)
        self.body["spec"] = spec
        self.body["metadata"]["generation"] += 1

    def tick(self, seconds: float = 0.0, figures: dict[str, Any] | None = None, error: str | None = None,
             rollback: RollbackRequest | None = None) -> RolloutDecision:
        """Advance time, decide, measure when asked, and keep the status (and the desired Deployments)."""
        self.now += timedelta(seconds=seconds)
        inputs = RolloutInput(body=copy.deepcopy(self.body), spec=StudentModelSpec.model_validate(self.body["spec"]),
                              observed=self.observed(), now=self.now, config=OperatorConfig(), rollback=rollback)
        decision = decide(inputs)
        if decision.measure is not None and (figures is not None or error is not None):
            measurement = Measurement(decision.measure, figures, 10.0, error)
            decision = decide(RolloutInput(**{**inputs.__dict__, "measurement": measurement}))
        self.body["status"] = prune(decision.status)
        for action in decision.actions:
            revision = _revision(action.name)
            if action.kind != "Deployment" or revision is None:
                continue
            if action.verb == "delete":
                self.deployments.pop(revision, None)
                self.ready.pop(revision, None)
            else:
                assert action.manifest is not None
                self.deployments[revision] = action.manifest
        self.last = decision
        return decision

    def make_ready(self) -> None:
        """Mark every desired pod ready."""
        self.ready = {revision: manifest["spec"]["replicas"] for revision, manifest in self.deployments.items()}

    def observed(self) -> ModelObserved:
        deployments = {
            manifest["metadata"]["name"]: ObservedDeployment(
                manifest["metadata"]["name"], "server", revision, manifest["metadata"]["labels"].get(ROLE_LABEL),
                manifest["spec"]["replicas"], manifest["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION])
            for revision, manifest in self.deployments.items()
        }
        pods = tuple(ObservedPod(f"intents-r{revision}-{index}", "server", revision, True, "127.0.0.1")
                     for revision, count in self.ready.items() for index in range(count))
        return ModelObserved(deployments=deployments, pods=pods)

    def replicas(self) -> dict[int, int]:
        """Desired pods per revision, as the last decision left the Deployments."""
        return {revision: manifest["spec"]["replicas"] for revision, manifest in sorted(self.deployments.items())}

    def deploy_ready(self, seconds: float = 1.0) -> RolloutDecision:
        """Let every desired pod become ready and decide again."""
        self.make_ready()
        return self.tick(seconds)


def _revision(name: str) -> int | None:
    suffix = name.rsplit("-", 1)[-1]
    return int(suffix[1:]) if suffix.startswith("r") and suffix[1:].isdigit() else None


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in status.get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    raise AssertionError(f"no {kind} condition in {status.get('conditions')}")


def record(status: dict[str, Any], revision: int) -> dict[str, Any]:
    for item in status.get("history") or []:
        if item["revision"] == revision:
            return dict(item)
    raise AssertionError(f"no record of revision {revision} in {status.get('history')}")


def request(to_revision: int | None = None, id_: str = "r-1") -> RollbackRequest:
    return RollbackRequest(id=id_, to_revision=to_revision, requested_at="2025-01-01T12:00:00Z")


def promote_first(model: Model) -> None:
    """Make revision 1 stable."""
    model.tick()
    model.deploy_ready()


def start_canary(model: Model, path: str) -> RolloutDecision:
    """Change the artifact and let the canary's first step become ready."""
    model.set_spec(artifact={"pvc": "claim", "path": path})
    model.tick(1)
    return model.deploy_ready()
