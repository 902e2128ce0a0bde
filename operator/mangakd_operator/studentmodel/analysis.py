"""Judge a revision's live metrics against the spec's analysis thresholds (pure code).

A :class:`Measurement` is what :mod:`.measure` read from the pods (or from
Prometheus) for one interval: the figures of
:func:`mangakd.server.analysis.summarize`, or an error. :func:`judge` turns
it into an analysis result as ``status.lastAnalysis`` stores it:

- Inconclusive: the metrics could not be read, or the interval has fewer
  samples than ``analysis.minSamples``. Samples are shadowed requests when a
  teacher is shadowed, and predict requests otherwise;
- Failed: at least one threshold is not met (agreement below
  ``minAgreement``, ECE above ``maxEce``, error rate above ``maxErrorRate``,
  P95 latency above ``maxP95LatencyMs``). A threshold set to null is not
  checked, and agreement and ECE are not checked without a teacher;
- Passed: otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mangakd.resources import AnalysisSpec

Target = Literal["canary", "stable"]


@dataclass(frozen=True)
class MeasureRequest:
    """A request for the live metrics of one revision since ``window_started_at`` (RFC 3339)."""

    target: Target
    revision: int
    window_started_at: str


@dataclass(frozen=True)
class Measurement:
    """Live metrics of one revision over one interval, or why they could not be read."""

    request: MeasureRequest
    figures: Mapping[str, float | int | None] | None
    window_seconds: float
    error: str | None = None


def judge(measurement: Measurement, analysis: AnalysisSpec, shadowing: bool, time: str) -> dict[str, Any]:
    """Return the analysis result (``status.lastAnalysis`` form, camelCase) of one measurement."""
    request = measurement.request
    result: dict[str, Any] = {
        "revision": request.revision,
        "target": request.target,
        "time": time,
        "windowSeconds": round(measurement.window_seconds, 1),
        "samples": 0,
        "requests": 0,
        "agreement": None,
        "ece": None,
        "errorRate": None,
        "p95LatencyMs": None,
    }
    figures = measurement.figures
    if measurement.error is not None or figures is None:
        result.update(verdict="Inconclusive", message=f"Metrics could not be read: {measurement.error}")
        return result

    requests = int(figures.get("requests") or 0)
    samples = int(figures.get("samples") or 0) if shadowing else requests
    result.update(
        samples=samples,
        requests=requests,
        agreement=_rounded(figures.get("agreement")),
        ece=_rounded(figures.get("ece")),
        errorRate=_rounded(figures.get("error_rate")),
        p95LatencyMs=_rounded(figures.get("p95_latency_ms"), 2),
    )
    kind = "shadowed requests" if shadowing else "requests"
    if samples < analysis.min_samples:
        result.update(
            verdict="Inconclusive",
            message=f"{samples} of the {analysis.min_samples} {kind} needed in {measurement.window_seconds:.0f} s.",
        )
        return result

    failures = threshold_failures(figures, analysis, shadowing)
    if failures:
        result.update(verdict="Failed", message="; ".join(failures) + ".")
    else:
        result.update(verdict="Passed", message=f"Every threshold met over {samples} {kind}.")
    return result


def threshold_failures(
    figures: Mapping[str, float | int | None], analysis: AnalysisSpec, shadowing: bool
) -> list[str]:
    """Return one sentence fragment per threshold the figures do not meet."""
    failures = []
    agreement = figures.get("agreement")
    ece = figures.get("ece")
    error_rate = figures.get("error_rate")
    latency = figures.get("p95_latency_ms")
    if shadowing and analysis.min_agreement is not None and agreement is not None:
        if agreement < analysis.min_agreement:
            failures.append(f"agreement {agreement:.3f} is below minAgreement {analysis.min_agreement:g}")
    if shadowing and analysis.max_ece is not None and ece is not None and ece > analysis.max_ece:
        failures.append(f"ECE {ece:.3f} is above maxEce {analysis.max_ece:g}")
    if analysis.max_error_rate is not None and error_rate is not None and error_rate > analysis.max_error_rate:
        failures.append(f"error rate {error_rate:.4f} is above maxErrorRate {analysis.max_error_rate:g}")
    if analysis.max_p95_latency_ms is not None and latency is not None and latency > analysis.max_p95_latency_ms:
        failures.append(f"P95 latency {latency:.1f} ms is above maxP95LatencyMs {analysis.max_p95_latency_ms:g}")
    return failures


def _rounded(value: float | int | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
