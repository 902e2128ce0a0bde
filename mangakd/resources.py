"""The ``StudentModel`` and ``TeacherRotation`` custom resources as pydantic models.

A StudentModel is a gated student artifact plus how to serve and roll it
out; the operator creates one when a DistillationRun passes its gate, and
users may write their own. A TeacherRotation proposes a new teacher and
says when to re-distill. Like ``mangakd.spec``, these models are the source
of the CRD schemas.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from mangakd.spec import API_GROUP, CamelModel, ObjectMeta, SpecError, TeacherSpec, format_validation_error

# Annotation through which `kubectl mangakd rollback` requests a rollback from the operator.
ROLLBACK_ANNOTATION = f"{API_GROUP}/rollback-request"


class ArtifactRef(CamelModel):
    """An exported model folder (model.onnx, tokenizer, manifest.json) on a PVC."""

    pvc: str = Field(min_length=1, description="PersistentVolumeClaim that contains the folder.")
    path: str = Field(min_length=1, description="Folder inside the claim, e.g. `runs/x/export/student`.")


class ServingSpec(CamelModel):
    """Settings of the inference server pods."""

    image: str | None = Field(default=None, description="Inference server image; the operator's default when absent.")
    replicas: int = Field(default=2, ge=1, le=100, description="Pods serving the stable revision.")
    port: int = Field(default=8080, ge=1, le=65535, description="Container port of the server.")
    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Largest micro-batch the server forms.")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000, description="Maximum time a request waits for its batch to fill, in ms.")
    shadow_sample_rate: float = Field(
        default=0.1, ge=0, le=1, description="Share of requests also sent to the teacher to measure agreement."
    )
    threads: int | None = Field(
        default=None, ge=1, le=64, description="onnxruntime intra-op threads per pod; every core of the pod when absent."
    )
    resources: dict[str, Any] = Field(default_factory=dict, description="Container resources, as in a Pod spec.")


class RolloutStep(CamelModel):
    """One canary step: a traffic share and how long to hold it."""

    weight: int = Field(ge=1, le=100, description="Percentage of pods (and so of traffic) on the canary.")
    pause_seconds: int = Field(default=60, ge=0, le=86400, description="Time at this weight before analysis.")


class AnalysisSpec(CamelModel):
    """Thresholds the canary (and, after promotion, the stable revision) must meet."""

    min_samples: int = Field(default=200, ge=1, description="Shadowed requests needed before a decision.")
    min_agreement: float | None = Field(default=0.9, ge=0, le=1, description="Minimum live agreement with the teacher.")
    max_ece: float | None = Field(default=0.1, ge=0, le=1, description="Maximum live ECE against the teacher's labels.")
    max_error_rate: float | None = Field(default=0.01, ge=0, le=1, description="Maximum share of failed requests.")
    max_p95_latency_ms: float | None = Field(default=None, gt=0, description="Maximum server P95 latency in ms.")
    failure_limit: int = Field(default=1, ge=1, le=100, description="Failed analyses that trigger a revert.")
    interval_seconds: int = Field(default=30, ge=1, le=3600, description="Time between analyses.")
    sample_timeout_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="Maximum wait for minSamples after a step's pause, in seconds; an analysis still short of them then fails.",
    )
    prometheus_url: str | None = Field(
        default=None, description="Read metrics from this Prometheus instead of the pods' /metrics."
    )


class RolloutSpec(CamelModel):
    """Canary steps and the analysis that gates each one."""

    steps: list[RolloutStep] = Field(
        default_factory=lambda: [RolloutStep(weight=25), RolloutStep(weight=50)],
        description="Canary steps in order; promotion follows the last.",
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Canary analysis.")


class GuardSpec(CamelModel):
    """Checks on the stable revision after promotion."""

    enabled: bool = Field(default=True, description="Keep analysing the stable revision after promotion.")
    interval_seconds: int = Field(default=60, ge=1, le=86400, description="Time between checks.")
    failing_intervals: int = Field(default=3, ge=1, le=100, description="Consecutive failures that trigger a revert.")


class TeacherServingSpec(CamelModel):
    """The teacher deployment that shadowed requests go to."""

    artifact: ArtifactRef = Field(description="The exported teacher.")
    replicas: int = Field(default=1, ge=1, le=100, description="Teacher pods.")


class StudentModelSpec(CamelModel):
    """Desired state of a StudentModel."""

    artifact: ArtifactRef = Field(description="The exported, gated student.")
    distillation_run: str | None = Field(default=None, description="The DistillationRun that produced the student.")
    teacher: TeacherServingSpec | None = Field(default=None, description="A teacher to shadow requests to.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Inference server settings.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Canary rollout.")
    guard: GuardSpec = Field(default_factory=GuardSpec, description="Checks after promotion.")
    history_limit: int = Field(default=10, ge=1, le=100, description="Revisions kept in status.history.")


class RedistillTriggers(CamelModel):
    """Triggers of a new distillation with the rotated teacher."""

    on_accept: bool = Field(default=True, description="Re-distill as soon as the candidate is accepted.")
    min_accuracy_gap: float | None = Field(
        default=None, ge=0, le=1, description="Re-distill when teacher minus student accuracy exceeds this."
    )
    max_agreement_drop: float | None = Field(
        default=None, ge=0, le=1, description="Re-distill when live agreement falls by more than this."
    )


class TeacherRotationSpec(CamelModel):
    """Desired state of a TeacherRotation."""

    distillation_run: str = Field(min_length=1, description="The DistillationRun whose teacher is replaced.")
    candidate: TeacherSpec = Field(description="The candidate teacher.")
    min_accuracy_gain: float = Field(
        default=0.0, ge=-1, le=1, description="Candidate minus current teacher accuracy needed to accept it."
    )
    triggers: RedistillTriggers = Field(default_factory=RedistillTriggers, description="Re-distillation triggers.")
    cooldown_seconds: int = Field(default=86400, ge=0, description="Minimum time between two re-distillations, in seconds.")
    rollback_on_gate_failure: bool = Field(
        default=True, description="Keep the current teacher when the re-distilled student fails its gate."
    )


class StudentModel(CamelModel):
    """A StudentModel resource."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: Literal["mangakd.io/v1alpha1"]
    kind: Literal["StudentModel"]
    metadata: ObjectMeta
    spec: StudentModelSpec


class TeacherRotation(CamelModel):
    """A TeacherRotation resource."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: Literal["mangakd.io/v1alpha1"]
    kind: Literal["TeacherRotation"]
    metadata: ObjectMeta
    spec: TeacherRotationSpec


def parse_student_model(document: dict[str, Any], source: str = "<object>") -> StudentModel:
    """Validate a StudentModel document.

    Raises
    ------
    SpecError
        With one line per invalid field, naming the field's YAML path.
    """
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping with apiVersion, kind, metadata and spec")
    try:
        return StudentModel.model_validate(document)
    except ValidationError as error:
        raise SpecError(f"{source} is invalid:\n{format_validation_error(error)}") from None


class RollbackRequest(CamelModel):
    """A rollback request, stored as JSON in the annotation ``mangakd.io/rollback-request``.

    The operator handles each ``id`` once and reports the outcome in ``status.rollback``.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str = Field(min_length=1, max_length=128, description="Unique id of the request.")
    to_revision: int | None = Field(
        default=None, ge=1, description="Revision to make stable; the last good revision when absent."
    )
    requested_at: str = Field(description="When the request was made, RFC 3339.")
    observed_resource_version: str | None = Field(
        default=None, description="The StudentModel's resourceVersion that the requester read."
    )

    def to_annotation(self) -> str:
        """Return the annotation value: compact JSON with camelCase keys."""
        return json.dumps(self.model_dump(by_alias=True), separators=(",", ":"))


def parse_rollback_request(value: str) -> RollbackRequest:
    """Parse the annotation value written by ``kubectl mangakd rollback``.

    Raises
    ------
    SpecError
        When the value is not JSON or lacks ``id`` or ``requestedAt``.
    """
    try:
        document = json.loads(value)
    except ValueError as error:
        raise SpecError(f"annotation {ROLLBACK_ANNOTATION} is not JSON ({error}): {value[:200]!r}") from None
    try:
        return RollbackRequest.model_validate(document)
    except ValidationError as error:
        raise SpecError(
            f"annotation {ROLLBACK_ANNOTATION} is invalid:\n{format_validation_error(error)}"
        ) from None
