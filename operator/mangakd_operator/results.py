"""Results of a Job, read from its pod's termination message, and their form in ``status``.

``mangakd run --termination-log PATH`` writes compact JSON of at most 4096
bytes::

    {"stages": {NAME: {"duration_s": float, "skipped": bool}},
     "metrics": {"teacherAccuracy" | "studentAccuracy" | "agreement" | "accuracyGap" | "ece":
                 {"value": float, "ci_low": float, "ci_high": float}},
     "gate": {"passed": bool, "checks": [{"name": str, "passed": bool, "reason": str}]}}

``metrics`` and ``gate`` are present when the evaluate and gate stages were
part of that invocation. A stage entry may also carry ``started_at`` and
``finished_at`` (RFC 3339); they are copied into ``status.stages`` when present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METRIC_NAMES = ("teacherAccuracy", "studentAccuracy", "agreement", "accuracyGap", "ece")

# Maximum length of the failure excerpt in a condition message (and in the Event that repeats it).
MAX_MESSAGE_CHARS = 1500


class ResultError(ValueError):
    """A termination message that is missing, not JSON, or not in the documented form."""


@dataclass(frozen=True)
class StageResult:
    """The outcome of one stage in one Job invocation."""

    duration_s: float
    skipped: bool
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class JobResult:
    """A parsed termination message."""

    stages: dict[str, StageResult] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] | None = None
    gate: dict[str, Any] | None = None


def parse_result(message: str, job_name: str = "the Job") -> JobResult:
    """Parse a termination message written by ``mangakd run --termination-log``.

    Raises
    ------
    ResultError
        When the message is empty, not JSON, or lacks ``stages``; the
        message names ``job_name`` and what is wrong.
    """
    if not message.strip():
        raise ResultError(f"{job_name} succeeded but its pod left no termination message")
    try:
        document = json.loads(message)
    except ValueError as error:
        raise ResultError(
            f"{job_name} left a termination message that is not JSON ({error}): {message[:200]!r}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("stages"), dict):
        raise ResultError(
            f"{job_name} left a termination message without a 'stages' mapping: {message[:200]!r}"
        )

    stages: dict[str, StageResult] = {}
    for name, entry in document["stages"].items():
        if not isinstance(entry, dict) or "duration_s" not in entry:
            raise ResultError(f"{job_name}: stage {name!r} in the termination message has no duration_s")
        stages[name] = StageResult(
            duration_s=float(entry["duration_s"]),
            skipped=bool(entry.get("skipped", False)),
            started_at=entry.get("started_at"),
            finished_at=entry.get("finished_at"),
        )

    metrics = document.get("metrics")
    if metrics is not None:
        metrics = {
            name: _rate(job_name, name, value) for name, value in metrics.items() if name in METRIC_NAMES
        }
    gate = document.get("gate")
    if gate is not None and (not isinstance(gate, dict) or "passed" not in gate):
        raise ResultError(f"{job_name}: 'gate' in the termination message has no 'passed' field")
    return JobResult(stages=stages, metrics=metrics, gate=gate)


def _rate(job_name: str, name: str, value: Any) -> dict[str, float]:
    try:
        return {
            "value": float(value["value"]),
            "ciLow": float(value["ci_low"]),
            "ciHigh": float(value["ci_high"]),
        }
    except (KeyError, TypeError, ValueError):
        raise ResultError(
            f"{job_name}: metric {name!r} needs value, ci_low and ci_high, got {value!r}"
        ) from None


def metrics_status(result: JobResult) -> dict[str, Any] | None:
    """Return ``status.metrics``: each metric with its confidence interval, camelCase keys."""
    return dict(result.metrics) if result.metrics else None


def gate_status(result: JobResult) -> dict[str, Any] | None:
    """Return ``status.gate``: the verdict and one entry per check."""
    if result.gate is None:
        return None
    checks = [
        {
            "name": str(check.get("name", "")),
            "passed": bool(check.get("passed")),
            "reason": str(check.get("reason", "")),
        }
        for check in result.gate.get("checks") or []
        if isinstance(check, Mapping)
    ]
    return {"passed": bool(result.gate["passed"]), "checks": checks}


def failed_checks(gate: Mapping[str, Any]) -> str:
    """Join the reasons of the failed gate checks into one sentence list."""
    reasons = [
        check.get("reason") or f"check {check.get('name')} failed"
        for check in gate.get("checks") or []
        if not check.get("passed")
    ]
    return " ".join(reasons) if reasons else "The gate reported failure without a failed check."


def failure_excerpt(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Return the useful end of a failed pod's termination message (its log tail).

    Lines starting with ``error:`` (what ``mangakd`` prints before exiting)
    are preferred; otherwise the last lines are kept, up to ``limit`` characters.
    """
    lines = [line.rstrip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if line.lstrip().startswith("error:")]
    chosen = errors[-3:] if errors else lines[-8:]
    text = "\n".join(chosen)
    return text if len(text) <= limit else "..." + text[-limit:]
