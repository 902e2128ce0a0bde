"""The release gate: compare the evaluated student against the thresholds of a GateSpec.

The gate stage calls :func:`evaluate_gate` with the metric block of
:func:`mangakd.evaluation.evaluate_predictions`, the measured P95 latency and the
ONNX parity. The verdict goes into the run's status, and the operator rolls
out only a student that passed. A missing input fails its check instead of
raising, so a broken upstream stage blocks the release with a readable reason.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mangakd.spec import GateCheckName, GateSpec

JudgeOn = Literal["value", "ciBound"]


@dataclass(frozen=True)
class GateCheck:
    """The outcome of one threshold.

    Attributes
    ----------
    name : str
        ``accuracy``, ``accuracyGap``, ``agreement``, ``ece``, ``p95LatencyMs``,
        ``businessError`` or ``onnxParity``.
    passed : bool
    value : float or None
        The number compared with the threshold: the point estimate, or the
        pessimistic confidence bound when ``judged_on`` is ``ciBound``. None
        when the input was missing.
    threshold : float
    reason : str
        One sentence with the numbers, for people reading the status.
    judged_on : str
        ``value`` or ``ciBound``. Latency and ONNX parity have no interval and
        are always judged on the value.
    """

    name: str
    passed: bool
    value: float | None
    threshold: float
    reason: str
    judged_on: JudgeOn

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-serialisable dict with the field names as keys."""
        return asdict(self)


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision: passed when every check passed (also when there are none)."""

    passed: bool
    checks: list[GateCheck]

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"passed": bool, "checks": [check dicts]}``."""
        return {"passed": self.passed, "checks": [check.to_dict() for check in self.checks]}


@dataclass(frozen=True)
class _Rule:
    """The input, direction and wording of one check."""

    name: GateCheckName
    subject: str
    bound: Literal["minimum", "maximum"]
    metric_path: tuple[str, ...] | None
    unit: str = ""


_METRIC_RULES = (
    _Rule("accuracy", "Student accuracy", "minimum", ("student", "accuracy")),
    _Rule("accuracyGap", "Teacher minus student accuracy", "maximum", ("accuracy_gap",)),
    _Rule("agreement", "Teacher-student agreement", "minimum", ("agreement",)),
    _Rule("ece", "Student ECE after calibration", "maximum", ("student", "ece")),
    _Rule("p95LatencyMs", "Student P95 latency", "maximum", None, unit=" ms"),
    _Rule("businessError", "Student business-weighted error", "maximum", ("student", "business_error")),
)
_PARITY_RULE = _Rule("onnxParity", "ONNX-torch argmax agreement", "minimum", None)


def _thresholds(policy: GateSpec) -> dict[str, float | None]:
    return {
        "accuracy": policy.min_accuracy,
        "accuracyGap": policy.max_accuracy_gap,
        "agreement": policy.min_agreement,
        "ece": policy.max_ece,
        "p95LatencyMs": policy.max_p95_latency_ms,
        "businessError": policy.max_business_error,
    }


def _number(value: Any) -> float | None:
    """Return value as a float, or None when it is absent, not a number or NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if math.isnan(float(value)):
        return None
    return float(value)


def _format_numbers(compared: float, threshold: float, *others: float) -> list[str]:
    """Format numbers with enough significant digits that compared and threshold differ in print.

    Three digits are enough most of the time, but 0.87996 against 0.88 would
    otherwise read "0.88 is below the minimum 0.88".
    """
    for digits in range(3, 13):
        texts = [f"{number:.{digits}g}" for number in (compared, threshold, *others)]
        if compared == threshold or texts[0] != texts[1]:
            return texts
    return texts


def _interval_name(metrics: Mapping[str, Any]) -> str:
    level = _number(metrics.get("confidence_level"))
    return f"{level * 100:g}% CI" if level is not None else "CI"


def _sentence(rule: _Rule, passed: bool, value_text: str, threshold_text: str, note: str = "") -> str:
    if rule.bound == "minimum":
        verb = "meets" if passed else "is below"
    else:
        verb = "is within" if passed else "exceeds"
    return f"{rule.subject} {value_text}{rule.unit}{note} {verb} the {rule.bound} {threshold_text}{rule.unit}."


def _compare(rule: _Rule, compared: float, threshold: float) -> bool:
    # Equality passes: a threshold states the worst acceptable value.
    return compared >= threshold if rule.bound == "minimum" else compared <= threshold


def _missing(rule: _Rule, threshold: float, problem: str, judged_on: JudgeOn) -> GateCheck:
    threshold_text = _format_numbers(threshold, threshold)[0]
    reason = f"{rule.subject} {problem}, so the {rule.bound} {threshold_text}{rule.unit} cannot be checked."
    return GateCheck(rule.name, False, None, threshold, reason, judged_on)


def _check_measurement(rule: _Rule, measured: float | None, threshold: float, requested: JudgeOn) -> GateCheck:
    """Judge a plain measurement, which has no confidence interval, on its value."""
    value = _number(measured)
    if value is None:
        return _missing(rule, threshold, "was not measured", "value")
    passed = _compare(rule, value, threshold)
    value_text, threshold_text = _format_numbers(value, threshold)
    note = ""
    if requested == "ciBound":
        note = " (judged on the value because the measurement has no confidence interval)"
    reason = _sentence(rule, passed, value_text, threshold_text, note)
    return GateCheck(rule.name, passed, value, threshold, reason, "value")


def _check_estimate(
    rule: _Rule, metrics: Mapping[str, Any], threshold: float, judged_on: JudgeOn
) -> GateCheck:
    """Judge a bootstrap estimate on its value or on its pessimistic confidence bound."""
    assert rule.metric_path is not None
    dotted = ".".join(rule.metric_path)
    estimate: Any = metrics
    for key in rule.metric_path:
        estimate = estimate.get(key) if isinstance(estimate, Mapping) else None
    if isinstance(estimate, Mapping):
        value = _number(estimate.get("value"))
    else:
        # A bare number is a point estimate without an interval.
        value, estimate = _number(estimate), {}
    if value is None:
        return _missing(rule, threshold, f"is missing from the metrics (no {dotted}.value)", judged_on)

    if judged_on == "value":
        passed = _compare(rule, value, threshold)
        value_text, threshold_text = _format_numbers(value, threshold)
        reason = _sentence(rule, passed, value_text, threshold_text)
        return GateCheck(rule.name, passed, value, threshold, reason, judged_on)

    # The pessimistic end: a minimum must hold for the lower bound, a maximum
    # for the upper bound.
    bound_key, bound_word = ("ci_low", "lower") if rule.bound == "minimum" else ("ci_high", "upper")
    bound = _number(estimate.get(bound_key))
    if bound is None:
        problem = f"has no confidence interval in the metrics (no {dotted}.{bound_key})"
        return _missing(rule, threshold, problem, judged_on)
    passed = _compare(rule, bound, threshold)
    bound_text, threshold_text, value_text = _format_numbers(bound, threshold, value)
    note = f" ({_interval_name(metrics)} {bound_word} bound {bound_text}{rule.unit})"
    reason = _sentence(rule, passed, value_text, threshold_text, note)
    return GateCheck(rule.name, passed, bound, threshold, reason, judged_on)


def evaluate_gate(
    policy: GateSpec,
    metrics: Mapping[str, Any] | None,
    *,
    p95_latency_ms: float | None,
    onnx_argmax_agreement: float | None,
) -> GateVerdict:
    """Check the student against every threshold that the policy sets.

    Parameters
    ----------
    policy : GateSpec
        Thresholds; one check runs per threshold that is set.
    metrics : mapping or None
        The dict returned by :func:`mangakd.evaluation.evaluate_predictions`.
    p95_latency_ms : float or None
        Measured P95 latency of the exported student, in milliseconds.
    onnx_argmax_agreement : float or None
        Share of examples where the ONNX and torch students agree on the
        argmax. When given, the ``onnxParity`` check always runs, against
        ``policy.min_onnx_argmax_agreement``.

    Returns
    -------
    GateVerdict
        A check whose input is missing or NaN fails, and its reason names the
        missing input. A policy without thresholds and without parity input
        passes with no checks.
    """
    metrics = metrics if isinstance(metrics, Mapping) else {}
    checks: list[GateCheck] = []

    thresholds = _thresholds(policy)
    for rule in _METRIC_RULES:
        threshold = thresholds[rule.name]
        if threshold is None:
            continue
        judged_on: JudgeOn = policy.judge_on_overrides.get(rule.name, policy.judge_on)
        if rule.metric_path is None:
            checks.append(_check_measurement(rule, p95_latency_ms, threshold, judged_on))
        else:
            checks.append(_check_estimate(rule, metrics, threshold, judged_on))

    if onnx_argmax_agreement is not None:
        judged_on = policy.judge_on_overrides.get(_PARITY_RULE.name, policy.judge_on)
        checks.append(
            _check_measurement(_PARITY_RULE, onnx_argmax_agreement, policy.min_onnx_argmax_agreement, judged_on)
        )

    return GateVerdict(passed=all(check.passed for check in checks), checks=checks)
