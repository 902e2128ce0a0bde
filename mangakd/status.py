"""Status models of the custom resources, written only by the operator.

The CRD schemas are generated from these models too, so the API server keeps
(and does not prune) every field the operator writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class StatusModel(BaseModel):
    """Base for status models: camelCase aliases, unknown fields ignored on read."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Reason(str, Enum):
    """Machine-readable reasons of conditions, in UpperCamelCase as Kubernetes expects."""

    PENDING = "Pending"
    INVALID_SPEC = "InvalidSpec"
    JOB_CREATED = "JobCreated"
    JOB_RUNNING = "JobRunning"
    JOB_RETRYING = "JobRetrying"
    JOB_FAILED = "JobFailed"
    STAGE_SUCCEEDED = "StageSucceeded"
    GATE_PASSED = "GatePassed"
    GATE_FAILED = "GateFailed"
    SUCCEEDED = "Succeeded"
    SPEC_CHANGED = "SpecChangedAfterCompletion"
    RESULT_UNREADABLE = "ResultUnreadable"


class Condition(StatusModel):
    """One observation of the resource's state, keyed by `type`."""

    type: str = Field(description="Condition type, e.g. Ready, Trained, Evaluated, Gated.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One-word reason in UpperCamelCase.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(description="When `status` last changed, RFC 3339.")
    observed_generation: int | None = Field(
        default=None, description="The `metadata.generation` this condition was computed for."
    )


def now_rfc3339() -> str:
    """Return the current UTC time in the RFC 3339 form Kubernetes uses."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict],
    type_: str,
    status: str,
    reason: Reason | str,
    message: str,
    generation: int | None,
) -> list[dict]:
    """Return ``conditions`` with one condition of ``type_`` set.

    ``lastTransitionTime`` changes only when ``status`` changes, as the
    Kubernetes API conventions ask, so that it tells when the state flipped.
    """
    reason = reason.value if isinstance(reason, Reason) else reason
    result = [dict(condition) for condition in conditions]
    for condition in result:
        if condition.get("type") == type_:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now_rfc3339()
            condition.update(status=status, reason=reason, message=message, observedGeneration=generation)
            return result
    result.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
            "observedGeneration": generation,
        }
    )
    return result


def get_condition(conditions: list[dict] | None, type_: str) -> dict | None:
    """Return the condition of ``type_``, or None."""
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None


class Rate(StatusModel):
    """An estimated rate with its bootstrap confidence interval."""

    value: float = Field(description="Point estimate.")
    ci_low: float = Field(description="Lower end of the 95% confidence interval.")
    ci_high: float = Field(description="Upper end of the 95% confidence interval.")


class RunMetrics(StatusModel):
    """Headline metrics of the student and teacher on the test split."""

    teacher_accuracy: Rate | None = Field(default=None, description="Teacher test accuracy.")
    student_accuracy: Rate | None = Field(default=None, description="Student test accuracy.")
    agreement: Rate | None = Field(default=None, description="Teacher-student top-1 agreement.")
    accuracy_gap: Rate | None = Field(default=None, description="Teacher minus student accuracy.")
    ece: Rate | None = Field(default=None, description="Student ECE after calibration.")


class GateCheckStatus(StatusModel):
    """The outcome of one gate check."""

    name: str = Field(description="Check name, e.g. accuracy or agreement.")
    passed: bool = Field(description="Whether the check passed.")
    reason: str = Field(default="", description="The numbers behind the outcome.")


class GateStatus(StatusModel):
    """The gate verdict."""

    passed: bool = Field(description="True when every check passed.")
    checks: list[GateCheckStatus] = Field(default_factory=list, description="One entry per check.")


class StageStatus(StatusModel):
    """Progress of one pipeline stage."""

    name: str = Field(description="Stage name: prepare, finetune, distill, calibrate, export, evaluate or gate.")
    state: Literal["Pending", "Running", "Succeeded", "Failed", "Skipped"] = Field(description="Stage state.")
    started_at: str | None = Field(default=None, description="Start time, RFC 3339.")
    finished_at: str | None = Field(default=None, description="End time, RFC 3339.")
    duration_seconds: float | None = Field(default=None, description="Wall-clock duration in seconds.")


class ArtifactStatus(StatusModel):
    """Where the exported student is stored."""

    pvc: str = Field(description="PersistentVolumeClaim that holds the artifact.")
    path: str = Field(description="Folder of the exported student inside the claim.")


class DistillationRunStatus(StatusModel):
    """Observed state of a DistillationRun."""

    phase: Literal["Pending", "Training", "Evaluating", "Succeeded", "Failed"] | None = Field(
        default=None, description="Lifecycle phase."
    )
    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions keyed by type.")
    stages: list[StageStatus] = Field(default_factory=list, description="Per-stage progress.")
    metrics: RunMetrics | None = Field(default=None, description="Headline metrics with confidence intervals.")
    gate: GateStatus | None = Field(default=None, description="The gate verdict.")
    artifact: ArtifactStatus | None = Field(default=None, description="The exported student.")
    student_model: str | None = Field(default=None, description="The StudentModel created for the student.")
    training_job: str | None = Field(default=None, description="Name of the training Job.")
    evaluation_job: str | None = Field(default=None, description="Name of the evaluation Job.")
    job_failures: int | None = Field(default=None, description="Failed Job attempts so far.")
    completion_time: str | None = Field(default=None, description="When the run finished, RFC 3339.")
