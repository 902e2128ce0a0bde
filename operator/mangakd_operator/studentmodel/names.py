"""Deterministic names and labels of a StudentModel's children.

Each revision gets its own Deployment, ``NAME-rN``, so that promoting a
canary only relabels it and scales it up: its pods keep running. The role
(``stable`` or ``canary``) is a label on the Deployment, not on the pods,
for the same reason.
"""

from __future__ import annotations

from mangakd.spec import API_GROUP

from ..names import COMPONENT_LABEL, STANDARD_LABELS, child_name, shorten

STUDENT_MODEL_LABEL = f"{API_GROUP}/student-model"
REVISION_LABEL = f"{API_GROUP}/revision"
ROLE_LABEL = f"{API_GROUP}/role"
MANIFEST_HASH_ANNOTATION = f"{API_GROUP}/manifest-hash"
SPEC_HASH_ANNOTATION = f"{API_GROUP}/spec-hash"

SERVER = "server"
TEACHER = "teacher"
STABLE = "stable"
CANARY = "canary"


def revision_deployment_name(model: str, revision: int) -> str:
    """Name of the Deployment that serves one revision, e.g. ``intents-r3``."""
    return child_name(model, f"r{revision}")


def teacher_name(model: str) -> str:
    """Name of the teacher Deployment and its Service, e.g. ``intents-teacher``."""
    return child_name(model, TEACHER)


def service_name(model: str) -> str:
    """Name of the Service in front of the student pods: the StudentModel's own name."""
    return shorten(model)


def model_labels(model: str, component: str) -> dict[str, str]:
    """Labels of every child of a StudentModel; ``component`` is ``server`` or ``teacher``."""
    return {**STANDARD_LABELS, STUDENT_MODEL_LABEL: shorten(model), COMPONENT_LABEL: component}


def model_selector(model: str) -> str:
    """Label selector of every child of a StudentModel."""
    return f"{STUDENT_MODEL_LABEL}={shorten(model)}"
