"""Tests of mangakd.gate: verdicts, confidence-bound judgment, overrides and missing inputs."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from mangakd.gate import GateCheck, GateVerdict, evaluate_gate
from mangakd.evaluation import evaluate_predictions
from mangakd.spec import GateSpec


def estimate(value: float, ci_low: float, ci_high: float) -> dict[str, float]:
    return {"value": value, "ci_low": ci_low, "ci_high": ci_high}


def sample_metrics() -> dict[str, Any]:
    """A metric block shaped like evaluate_predictions output, with chosen numbers."""
    return {
        "teacher": {"accuracy": estimate(0.886, 0.873, 0.899)},
        "student": {
            "accuracy": estimate(0.874, 0.861, 0.887),
            "ece": estimate(0.040, 0.031, 0.052),
            "business_error": estimate(0.150, 0.135, 0.166),
        },
        "agreement": estimate(0.930, 0.919, 0.941),
        "accuracy_gap": estimate(0.012, 0.004, 0.021),
        "n_examples": 2250,
        "confidence_level": 0.95,
    }


def gate(policy: dict[str, Any], metrics: dict[str, Any] | None = None, **inputs: Any) -> GateVerdict:
    inputs.setdefault("p95_latency_ms", 4.2)
    inputs.setdefault("onnx_argmax_agreement", None)
    return evaluate_gate(
        GateSpec.model_validate(policy),
        sample_metrics() if metrics is None else metrics,
        **inputs,
    )


def only_check(verdict: GateVerdict) -> GateCheck:
    assert len(verdict.checks) == 1, [check.name for check in verdict.checks]
    return verdict.checks[0]


# Each row: check name, policy field, a threshold the sample meets on its
# value, and one it misses.
THRESHOLD_CASES = [
    ("accuracy", "minAccuracy", 0.87, 0.88),
    ("accuracyGap", "maxAccuracyGap", 0.02, 0.01),
    ("agreement", "minAgreement", 0.92, 0.95),
    ("ece", "maxEce", 0.05, 0.03),
    ("p95LatencyMs", "maxP95LatencyMs", 10.0, 4.0),
    ("businessError", "maxBusinessError", 0.2, 0.1),
]


@pytest.mark.parametrize(("name", "field", "met", "missed"), THRESHOLD_CASES)
def test_check_passes_and_fails(name: str, field: str, met: float, missed: float) -> None:
    passing = only_check(gate({field: met}))
    failing = only_check(gate({field: missed}))

    assert passing.name == name
    assert passing.passed
    assert failing.name == name
    assert not failing.passed
    assert failing.threshold == missed
    assert failing.judged_on == "value"


@pytest.mark.parametrize(("name", "field", "met", "missed"), THRESHOLD_CASES)
def test_verdict_follows_checks(name: str, field: str, met: float, missed: float) -> None:
    assert gate({field: met}).passed
    assert not gate({field: missed}).passed


def test_reason_for_minimum_names_numbers() -> None:
    check = only_check(gate({"minAccuracy": 0.85}))

    assert check.reason == "Student accuracy 0.874 meets the minimum 0.85."


def test_reason_for_maximum_names_numbers() -> None:
    check = only_check(gate({"maxP95LatencyMs": 4.0}))

    assert check.reason == "Student P95 latency 4.2 ms exceeds the maximum 4 ms."


def test_ci_bound_fails_minimum_that_value_meets() -> None:
    by_value = only_check(gate({"minAccuracy": 0.87}))
    by_bound = only_check(gate({"minAccuracy": 0.87, "judgeOn": "ciBound"}))

    assert by_value.passed
    assert not by_bound.passed
    assert by_bound.value == 0.861
    assert by_bound.judged_on == "ciBound"
    assert by_bound.reason == "Student accuracy 0.874 (95% CI lower bound 0.861) is below the minimum 0.87."


def test_ci_bound_fails_maximum_that_value_meets() -> None:
    by_value = only_check(gate({"maxEce": 0.05}))
    by_bound = only_check(gate({"maxEce": 0.05, "judgeOn": "ciBound"}))

    assert by_value.passed
    assert not by_bound.passed
    assert by_bound.value == 0.052
    assert "95% CI upper bound 0.052" in by_bound.reason


def test_ci_bound_passes_when_bound_meets() -> None:
    check = only_check(gate({"minAgreement": 0.9, "judgeOn": "ciBound"}))

    assert check.passed
    assert check.reason == "Teacher-student agreement 0.93 (95% CI lower bound 0.919) meets the minimum 0.9."


def test_override_judges_one_check_on_value() -> None:
    verdict = gate(
        {
            "minAccuracy": 0.87,
            "maxEce": 0.05,
            "judgeOn": "ciBound",
            "judgeOnOverrides": {"accuracy": "value"},
        }
    )
    checks = {check.name: check for check in verdict.checks}

    assert checks["accuracy"].passed
    assert checks["accuracy"].judged_on == "value"
    assert not checks["ece"].passed
    assert checks["ece"].judged_on == "ciBound"


def test_override_judges_one_check_on_bound() -> None:
    verdict = gate({"minAccuracy": 0.87, "maxEce": 0.05, "judgeOnOverrides": {"ece": "ciBound"}})
    checks = {check.name: check for check in verdict.checks}

    assert checks["accuracy"].passed
    assert not checks["ece"].passed
    assert not verdict.passed


def test_latency_judged_on_value_under_ci_bound() -> None:
    check = only_check(gate({"maxP95LatencyMs": 10.0, "judgeOn": "ciBound"}))

    assert check.passed
    assert check.judged_on == "value"
    assert "no confidence interval" in check.reason


def test_parity_check_always_runs_when_given() -> None:
    verdict = gate({}, onnx_argmax_agreement=0.995)

    check = only_check(verdict)
    assert check.name == "onnxParity"
    assert check.threshold == 0.99
    assert verdict.passed


def test_parity_failure_fails_gate() -> None:
    verdict = gate({"minOnnxArgmaxAgreement": 0.999, "minAccuracy": 0.85}, onnx_argmax_agreement=0.995)

    checks = {check.name: check for check in verdict.checks}
    assert checks["accuracy"].passed
    assert not checks["onnxParity"].passed
    assert not verdict.passed
    assert checks["onnxParity"].reason == "ONNX-torch argmax agreement 0.995 is below the minimum 0.999."


def test_no_thresholds_no_parity_passes_empty() -> None:
    verdict = gate({})

    assert verdict.passed
    assert verdict.checks == []


def test_missing_metrics_fail_with_reason() -> None:
    verdict = evaluate_gate(
        GateSpec(min_accuracy=0.8, max_accuracy_gap=0.05), None, p95_latency_ms=None, onnx_argmax_agreement=None
    )

    assert not verdict.passed
    for check in verdict.checks:
        assert not check.passed
        assert check.value is None
        assert "is missing from the metrics" in check.reason


def test_missing_latency_fails_with_reason() -> None:
    check = only_check(gate({"maxP95LatencyMs": 10.0}, p95_latency_ms=None))

    assert not check.passed
    assert check.reason == "Student P95 latency was not measured, so the maximum 10 ms cannot be checked."


def test_nan_metric_counts_as_missing() -> None:
    metrics = sample_metrics()
    metrics["student"]["accuracy"]["value"] = math.nan

    check = only_check(gate({"minAccuracy": 0.8}, metrics))

    assert not check.passed
    assert "student.accuracy.value" in check.reason


def test_missing_interval_fails_ci_bound() -> None:
    metrics = sample_metrics()
    metrics["agreement"] = 0.93

    by_value = only_check(gate({"minAgreement": 0.9}, metrics))
    by_bound = only_check(gate({"minAgreement": 0.9, "judgeOn": "ciBound"}, metrics))

    assert by_value.passed
    assert not by_bound.passed
    assert "agreement.ci_low" in by_bound.reason


def test_close_numbers_print_apart() -> None:
    metrics = sample_metrics()
    metrics["student"]["accuracy"]["value"] = 0.87996

    check = only_check(gate({"minAccuracy": 0.88}, metrics))

    assert not check.passed
    assert "0.87996 is below the minimum 0.88" in check.reason


def test_equal_to_threshold_passes() -> None:
    assert only_check(gate({"maxAccuracyGap": 0.012})).passed


def test_verdict_to_dict_is_json() -> None:
    verdict = gate({"minAccuracy": 0.88, "judgeOn": "ciBound"}, onnx_argmax_agreement=1.0)

    document = json.loads(json.dumps(verdict.to_dict()))

    assert document["passed"] is False
    assert [check["name"] for check in document["checks"]] == ["accuracy", "onnxParity"]
    assert set(document["checks"][0]) == {"name", "passed", "value", "threshold", "reason", "judged_on"}


def test_gate_reads_evaluate_predictions_output() -> None:
    rng = np.random.default_rng(0)
    teacher_logits = rng.normal(scale=3.0, size=(300, 5))
    y_true = teacher_logits.argmax(axis=1)
    student_logits = teacher_logits + rng.normal(size=teacher_logits.shape)
    metrics = evaluate_predictions(
        student_logits,
        teacher_logits,
        y_true,
        student_temperature=1.0,
        label_names=list("abcde"),
        n_resamples=200,
    )
    policy = GateSpec(
        min_accuracy=0.5, max_accuracy_gap=0.5, min_agreement=0.5, max_ece=0.5, max_business_error=0.5,
        judge_on="ciBound",
    )

    verdict = evaluate_gate(policy, metrics, p95_latency_ms=None, onnx_argmax_agreement=None)

    names = [check.name for check in verdict.checks]
    assert names == ["accuracy", "accuracyGap", "agreement", "ece", "businessError"]
    for check in verdict.checks:
        assert check.passed, check.reason
        assert "95% CI" in check.reason
