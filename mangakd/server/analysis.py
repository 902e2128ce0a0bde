"""Turn the servers' Prometheus metrics into the figures a canary analysis judges.

The operator scrapes ``/metrics`` of every pod of a revision and parses
each scrape with :func:`parse_exposition`. :func:`counters_since` subtracts
the previous scrape of the same pod, so that an analysis judges one interval
and not all time. :func:`merge_counters` adds the pods up, and
:func:`summarize` computes the figures (:func:`analyze_scrapes` does all four
steps). :mod:`mangakd.server.prometheus_query` builds the same
counters from a Prometheus server instead.

Live ECE uses the teacher's intent as the label: with n_b shadowed texts in
confidence bin b, of which a_b agreed and whose confidences sum to s_b,
ECE = sum_b |s_b - a_b| / sum_b n_b, the same 15 equal-width bins as the
offline ECE in :mod:`mangakd.metrics`.

This module needs only numpy and prometheus-client.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from mangakd.server.metrics import (
    CONFIDENCE_BINS,
    PREDICT_ROUTE,
    REQUEST_DURATION,
    SHADOW_AGREEMENTS,
    SHADOW_CONFIDENCE_BIN,
    SHADOW_CONFIDENCE_SUM,
    SHADOW_DROPPED,
    SHADOW_ERRORS,
    SHADOW_SAMPLES,
)

PROCESS_START_TIME = "process_start_time_seconds"
LATENCY_QUANTILE = 0.95


class AnalysisError(ValueError):
    """A scrape or a query result that cannot be analysed."""


def _zeros() -> np.ndarray:
    return np.zeros(CONFIDENCE_BINS, dtype=np.float64)


@dataclass(frozen=True)
class ServerCounters:
    """Counter values of one server, of several added up, or of an interval between two scrapes.

    Attributes
    ----------
    requests
        Completed predict requests, any status.
    server_errors
        Predict requests that returned a 5xx status.
    latency_buckets
        Upper bound in seconds to cumulative count of successful (200) predict
        requests, including ``inf``.
    shadow_samples, shadow_agreements, shadow_errors, shadow_dropped
        Shadowed texts, those where student and teacher agreed, failed shadow
        requests, and samples dropped because the shadow queue was full.
    bin_agreed, bin_disagreed, bin_confidence_sum : ndarray of shape (15,)
        Per confidence bin: texts that agreed, texts that did not, and the sum
        of the student's confidence.
    start_time
        Process start time in Unix seconds, which distinguishes a restarted server
        from a running one; None for sums and for Prometheus query results.
    """

    requests: float = 0.0
    server_errors: float = 0.0
    latency_buckets: Mapping[float, float] = field(default_factory=dict)
    shadow_samples: float = 0.0
    shadow_agreements: float = 0.0
    shadow_errors: float = 0.0
    shadow_dropped: float = 0.0
    bin_agreed: np.ndarray = field(default_factory=_zeros)
    bin_disagreed: np.ndarray = field(default_factory=_zeros)
    bin_confidence_sum: np.ndarray = field(default_factory=_zeros)
    start_time: float | None = None

    def scalars(self) -> dict[str, float]:
        """Return the scalar counters by field name."""
        return {
            "requests": self.requests,
            "server_errors": self.server_errors,
            "shadow_samples": self.shadow_samples,
            "shadow_agreements": self.shadow_agreements,
            "shadow_errors": self.shadow_errors,
            "shadow_dropped": self.shadow_dropped,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the per-bin counters by field name."""
        return {
            "bin_agreed": self.bin_agreed,
            "bin_disagreed": self.bin_disagreed,
            "bin_confidence_sum": self.bin_confidence_sum,
        }


def parse_exposition(text: str) -> ServerCounters:
    """Read the counters of one server from its ``/metrics`` text.

    Raises
    ------
    AnalysisError
        If the text is not in the Prometheus text format, or a bin label is not 0 to 14.
    """
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise AnalysisError(f"the scrape is not in the Prometheus text format: {error}") from error

    values: dict[str, Any] = {}
    bin_agreed, bin_disagreed, bin_confidence_sum = _zeros(), _zeros(), _zeros()
    latency: dict[float, float] = {}
    totals = {
        f"{SHADOW_SAMPLES}_total": "shadow_samples",
        f"{SHADOW_AGREEMENTS}_total": "shadow_agreements",
        f"{SHADOW_ERRORS}_total": "shadow_errors",
        f"{SHADOW_DROPPED}_total": "shadow_dropped",
    }
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name in totals:
                values[totals[name]] = values.get(totals[name], 0.0) + value
            elif name == f"{SHADOW_CONFIDENCE_BIN}_total":
                target = bin_agreed if labels.get("agreed") == "true" else bin_disagreed
                target[_bin_index(labels.get("bin"))] += value
            elif name == f"{SHADOW_CONFIDENCE_SUM}_total":
                bin_confidence_sum[_bin_index(labels.get("bin"))] += value
            elif name == f"{REQUEST_DURATION}_count" and labels.get("route") == PREDICT_ROUTE:
                values["requests"] = values.get("requests", 0.0) + value
                if labels.get("status", "").startswith("5"):
                    values["server_errors"] = values.get("server_errors", 0.0) + value
            elif (
                name == f"{REQUEST_DURATION}_bucket"
                and labels.get("route") == PREDICT_ROUTE
                and labels.get("status") == "200"
            ):
                bound = float(labels["le"])
                latency[bound] = latency.get(bound, 0.0) + value
            elif name == PROCESS_START_TIME:
                values["start_time"] = value

    return ServerCounters(
        **values,
        latency_buckets=latency,
        bin_agreed=bin_agreed,
        bin_disagreed=bin_disagreed,
        bin_confidence_sum=bin_confidence_sum,
    )


def _bin_index(label: str | None) -> int:
    if label is None or not label.isdigit() or int(label) >= CONFIDENCE_BINS:
        raise AnalysisError(
            f"confidence bin label {label!r} is not an integer from 0 to {CONFIDENCE_BINS - 1}"
        )
    return int(label)


def merge_counters(counters: Iterable[ServerCounters]) -> ServerCounters:
    """Add up the counters of several servers (the pods of one revision)."""
    merged = ServerCounters()
    scalars = merged.scalars()
    arrays = {name: array.copy() for name, array in merged.arrays().items()}
    latency: dict[float, float] = {}
    for item in counters:
        for name, value in item.scalars().items():
            scalars[name] += value
        for name, array in item.arrays().items():
            arrays[name] += array
        for bound, count in item.latency_buckets.items():
            latency[bound] = latency.get(bound, 0.0) + count
    fields: dict[str, Any] = {**scalars, **arrays, "latency_buckets": latency}
    return ServerCounters(**fields)


def counters_since(current: ServerCounters, previous: ServerCounters | None) -> ServerCounters:
    """Return the counts of one server between two of its scrapes.

    A server restart resets its counters. It is recognised by a changed
    process start time or, without one, by any counter that went down, as
    Prometheus's ``increase()`` does. After a restart the current counts are
    the interval's counts.

    Parameters
    ----------
    current, previous
        Scrapes of the same server; no previous scrape means since the server started.
    """
    if previous is None:
        return current
    restarted = (
        current.start_time is not None
        and previous.start_time is not None
        and current.start_time != previous.start_time
    )
    scalars = {name: value - previous.scalars()[name] for name, value in current.scalars().items()}
    arrays = {name: array - previous.arrays()[name] for name, array in current.arrays().items()}
    latency = {
        bound: count - previous.latency_buckets.get(bound, 0.0)
        for bound, count in current.latency_buckets.items()
    }
    went_down = (
        any(value < 0 for value in scalars.values())
        or any(bool((array < 0).any()) for array in arrays.values())
        or any(count < 0 for count in latency.values())
    )
    if restarted or went_down:
        return current
    changes: dict[str, Any] = {**scalars, **arrays, "latency_buckets": latency}
    return replace(current, **changes)


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """Estimate a quantile from cumulative histogram buckets, as Prometheus's ``histogram_quantile`` does.

    The quantile's rank falls into one bucket, and the estimate interpolates
    linearly between that bucket's bounds, assuming observations spread
    evenly within it. The first bucket's lower bound is 0. A rank in the
    ``+Inf`` bucket returns the highest finite bound.

    Parameters
    ----------
    quantile
        From 0 to 1.
    buckets
        Upper bound to cumulative count; must include ``inf``.

    Returns
    -------
    float or None
        The estimate, in the unit of the bounds; None when there are no observations.

    Raises
    ------
    AnalysisError
        If ``quantile`` is outside [0, 1] or there is no ``+Inf`` bucket.
    """
    if not 0.0 <= quantile <= 1.0:
        raise AnalysisError(f"quantile is {quantile}; pass a number from 0 to 1")
    if not buckets:
        return None
    bounds = sorted(buckets)
    if not math.isinf(bounds[-1]):
        raise AnalysisError(
            f"histogram buckets {bounds} have no +Inf bucket; pass every bucket of the histogram"
        )
    # Counts summed from several sources can dip; a running maximum keeps
    # them cumulative, as Prometheus does.
    counts = np.maximum.accumulate(np.array([buckets[bound] for bound in bounds], dtype=np.float64))
    total = counts[-1]
    if total <= 0:
        return None

    rank = quantile * total
    index = int(np.searchsorted(counts, rank, side="left"))
    if index >= len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else None
    upper = bounds[index]
    lower = 0.0 if index == 0 else bounds[index - 1]
    below = 0.0 if index == 0 else counts[index - 1]
    in_bucket = counts[index] - below
    if in_bucket <= 0:
        return upper
    return float(lower + (upper - lower) * (rank - below) / in_bucket)


def summarize(counters: ServerCounters) -> dict[str, float | int | None]:
    """Compute the canary figures from counters.

    Returns
    -------
    dict
        ``samples`` (shadowed texts) and ``requests`` (predict requests) as
        integers; ``agreement`` with the teacher and ``ece`` against the
        teacher's intents, None without samples; ``error_rate``, the share
        of predict requests that returned 5xx, None without requests;
        ``p95_latency_ms`` of successful predict requests, None without any.
    """
    samples = counters.shadow_samples
    binned = float((counters.bin_agreed + counters.bin_disagreed).sum())
    agreement = counters.shadow_agreements / samples if samples > 0 else None
    ece = None
    if binned > 0:
        gaps = np.abs(counters.bin_confidence_sum - counters.bin_agreed)
        ece = float(gaps.sum() / binned)
    error_rate = counters.server_errors / counters.requests if counters.requests > 0 else None
    p95 = histogram_quantile(LATENCY_QUANTILE, counters.latency_buckets)
    return {
        "samples": round(samples),
        "agreement": agreement,
        "ece": ece,
        "error_rate": error_rate,
        "p95_latency_ms": p95 * 1000.0 if p95 is not None else None,
        "requests": round(counters.requests),
    }


def analyze_scrapes(
    current: Mapping[str, str], previous: Mapping[str, str] | None = None
) -> dict[str, float | int | None]:
    """Summarize the interval between two scrapes of a set of pods.

    Parameters
    ----------
    current
        Pod name to ``/metrics`` text, scraped now.
    previous
        Pod name to ``/metrics`` text from the previous analysis. A pod
        missing here counts from its start; pods that have gone are left out.
    """
    earlier = {pod: parse_exposition(text) for pod, text in (previous or {}).items()}
    intervals: Sequence[ServerCounters] = [
        counters_since(parse_exposition(text), earlier.get(pod)) for pod, text in current.items()
    ]
    return summarize(merge_counters(intervals))
