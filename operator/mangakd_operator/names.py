"""Deterministic names and labels of the objects the operator creates for a DistillationRun.

Names depend only on the run's name and ``metadata.generation``, so a
restarted operator finds the Jobs it created before instead of creating
new ones. A Job's name ends up in its pods' ``job-name`` label, which is
limited to 63 characters; longer run names are shortened with a hash.
"""

from __future__ import annotations

import hashlib

from mangakd.spec import API_GROUP

# Labels every child carries; the operator selects its children by RUN_LABEL.
RUN_LABEL = f"{API_GROUP}/distillation-run"
GENERATION_LABEL = f"{API_GROUP}/generation"
COMPONENT_LABEL = "app.kubernetes.io/component"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
STANDARD_LABELS = {
    "app.kubernetes.io/name": "mangakd",
    "app.kubernetes.io/managed-by": "mangakd-operator",
}

TRAINING = "training"
EVALUATION = "evaluation"

# The stages each Job runs, in pipeline order.
TRAINING_STAGES = ("prepare", "finetune", "distill")
EVALUATION_STAGES = ("calibrate", "export", "evaluate", "gate")
ALL_STAGES = TRAINING_STAGES + EVALUATION_STAGES

MAX_LABEL_LENGTH = 63


def shorten(name: str, limit: int = MAX_LABEL_LENGTH) -> str:
    """Return ``name``, or its start plus an 8-character hash when it is longer than ``limit``."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def child_name(run_name: str, suffix: str) -> str:
    """Return ``RUN-SUFFIX``, shortening the run part so the whole fits in 63 characters."""
    room = MAX_LABEL_LENGTH - len(suffix) - 1
    return f"{shorten(run_name, room)}-{suffix}"


def training_job_name(run_name: str, generation: int) -> str:
    """Name of the training Job of one generation, e.g. ``clinc-mini-train-g1``."""
    return child_name(run_name, f"train-g{generation}")


def evaluation_job_name(run_name: str, generation: int) -> str:
    """Name of the evaluation Job of one generation, e.g. ``clinc-mini-eval-g1``."""
    return child_name(run_name, f"eval-g{generation}")


def config_map_name(run_name: str, generation: int) -> str:
    """Name of the ConfigMap holding the run's YAML for one generation, e.g. ``clinc-mini-spec-g1``."""
    return child_name(run_name, f"spec-g{generation}")


def student_model_name(run_name: str) -> str:
    """Name of the StudentModel a passing run creates: the run's own name."""
    return run_name


def run_labels(run_name: str, generation: int) -> dict[str, str]:
    """Labels shared by every child of one generation of a run."""
    return {
        **STANDARD_LABELS,
        RUN_LABEL: shorten(run_name),
        GENERATION_LABEL: str(generation),
    }


def run_selector(run_name: str) -> str:
    """Label selector matching every child of a run, of any generation."""
    return f"{RUN_LABEL}={shorten(run_name)}"
