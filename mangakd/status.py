"""Status models of the custom resources, written only by the operator.

The CRD schemas are generated from these models too, so the API server keeps
(and does not prune) every field the operator writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

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
    # StudentModel reasons.
    REVISION_DEPLOYING = "RevisionDeploying"
    STABLE_AVAILABLE = "StableAvailable"
    STABLE_UNAVAILABLE = "StableUnavailable"
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_PROMOTED = "CanaryPromoted"
    CANARY_REVERTED = "CanaryReverted"
    CANARY_ABORTED = "CanaryAborted"
    GUARD_FAILING = "GuardFailing"
    GUARD_REVERTED = "GuardReverted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"


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
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: Reason | str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with one condition of ``type_`` set.

    ``lastTransitionTime`` changes only when ``status`` changes, as the
    Kubernetes API conventions require, so that it records when the state flipped.
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


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
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
    """Location of the exported student."""

    pvc: str = Field(description="PersistentVolumeClaim that contains the artifact.")
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


class AnalysisResultStatus(StatusModel):
    """One analysis of a revision's live metrics against the spec's thresholds."""

    revision: int = Field(description="The revision analysed.")
    target: Literal["canary", "stable"] = Field(description="canary during a rollout, stable for guard checks.")
    time: str = Field(description="When the analysis ran, RFC 3339.")
    verdict: Literal["Passed", "Failed", "Inconclusive"] = Field(
        description="Inconclusive: fewer samples than analysis.minSamples, or the metrics could not be read."
    )
    window_seconds: float | None = Field(default=None, description="Length of the analysed interval in seconds.")
    samples: int = Field(default=0, description="Shadowed requests in the interval (predict requests without a teacher).")
    requests: int = Field(default=0, description="Predict requests in the interval.")
    agreement: float | None = Field(default=None, description="Share of shadowed texts where student and teacher agreed.")
    ece: float | None = Field(default=None, description="ECE of the student's confidence against agreement, 15 bins.")
    error_rate: float | None = Field(default=None, description="Share of predict requests that returned 5xx.")
    p95_latency_ms: float | None = Field(default=None, description="P95 latency of successful predict requests, ms.")
    message: str = Field(default="", description="The thresholds that failed, or why there is no verdict.")


class RevisionRecord(StatusModel):
    """One revision of a StudentModel: what it served and how it ended."""

    revision: int = Field(description="Revision number, 1, 2, 3, ...")
    artifact: ArtifactStatus | None = Field(default=None, description="The exported student the revision serves.")
    serving: dict[str, Any] | None = Field(
        default=None, description="The serving settings of the revision, without replicas."
    )
    shadowing: bool | None = Field(default=None, description="Whether the revision's pods shadow a teacher.")
    spec_hash: str = Field(description="Hash of the spec fields that shape the pods (artifact and serving settings).")
    state: Literal["Deploying", "Canary", "Stable", "Superseded", "Reverted", "RolledBack", "Aborted"] = Field(
        description="Where the revision is in its life."
    )
    created_at: str = Field(description="When the revision was created, RFC 3339.")
    promoted_at: str | None = Field(default=None, description="When it became stable, RFC 3339.")
    ended_at: str | None = Field(default=None, description="When it stopped serving, RFC 3339.")
    reason: str | None = Field(default=None, description="Reason of the last change, e.g. CanaryPromoted, CanaryReverted.")
    message: str | None = Field(default=None, description="Why it was promoted, reverted or rolled back.")
    metrics: AnalysisResultStatus | None = Field(default=None, description="The analysis behind the last decision.")


class SwitchStatus(StatusModel):
    """A change of the stable revision that waits for the new revision's pods to be ready."""

    to_revision: int = Field(description="The revision that becomes stable.")
    reason: Literal["Promotion", "GuardRevert", "Rollback"] = Field(description="Why the stable revision changes.")
    started_at: str = Field(description="When the switch began, RFC 3339.")


class GuardStatus(StatusModel):
    """Progress of the checks on the stable revision."""

    consecutive_failures: int = Field(default=0, description="Failed checks in a row.")
    window_started_at: str | None = Field(default=None, description="Start of the interval the next check judges.")
    next_check_at: str | None = Field(default=None, description="When the next check is due, RFC 3339.")


class RollbackStatus(StatusModel):
    """The last rollback request the operator handled (annotation mangakd.io/rollback-request)."""

    id: str = Field(description="The request's id.")
    to_revision: int | None = Field(default=None, description="The revision rolled back to.")
    handled_at: str = Field(description="When the operator accepted or rejected it, RFC 3339.")
    result: Literal["InProgress", "Succeeded", "Rejected"] = Field(description="Outcome of the request.")
    message: str = Field(default="", description="What happened, or why the request was rejected.")


class StudentModelStatus(StatusModel):
    """Observed state of a StudentModel."""

    phase: Literal["Pending", "Progressing", "Stable", "Reverted", "Degraded", "Failed"] | None = Field(
        default=None, description="Lifecycle phase."
    )
    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions keyed by type: Ready, Progressing.")
    stable_revision: int | None = Field(default=None, description="The revision the stable Deployment serves.")
    canary_revision: int | None = Field(default=None, description="The revision under canary analysis.")
    last_good_revision: int | None = Field(
        default=None,
        description="Where a guard revert or a rollback without --to-revision goes: the newest promoted, "
        "never reverted revision other than the stable one.",
    )
    latest_revision: int | None = Field(default=None, description="The highest revision number used so far.")
    canary_weight: int | None = Field(default=None, description="Percentage of the student pods on the canary.")
    current_step: int | None = Field(default=None, description="Index of the rollout step in progress, from 0.")
    step_started_at: str | None = Field(default=None, description="When the current step's pods were ready, RFC 3339.")
    analysis_failures: int | None = Field(default=None, description="Failed canary analyses in this rollout.")
    window_started_at: str | None = Field(default=None, description="Start of the interval the next canary analysis judges.")
    next_analysis_at: str | None = Field(default=None, description="When the next canary analysis is due, RFC 3339.")
    last_analysis: AnalysisResultStatus | None = Field(default=None, description="The latest analysis, canary or guard.")
    guard: GuardStatus | None = Field(default=None, description="Checks on the stable revision.")
    switch: SwitchStatus | None = Field(default=None, description="A change of the stable revision in progress.")
    held_spec_hash: str | None = Field(
        default=None,
        description="Spec hash that is not rolled out again after a revert or rollback, until the spec changes.",
    )
    rollback: RollbackStatus | None = Field(default=None, description="The last rollback request handled.")
    ready_replicas: int | None = Field(default=None, description="Ready pods of the stable revision.")
    service: str | None = Field(default=None, description="The Service in front of the student pods.")
    history: list[RevisionRecord] = Field(default_factory=list, description="Revisions, newest last, at most spec.historyLimit.")
