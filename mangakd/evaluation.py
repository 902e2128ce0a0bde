"""Bootstrap confidence intervals and the metric block of the evaluation report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mangakd.costs import check_cost_matrix, cost_matrix_from_spec
from mangakd.metrics import (
    NLL_MIN_PROBABILITY,
    MetricInputError,
    brier_per_example,
    check_labels,
    check_logits,
    check_n_bins,
    check_same_length,
    confidence_bin,
    ece_batched,
    macro_f1_batched,
    per_class_recall,
    softmax,
    top_label,
)

# Index entries (resamples x examples) drawn per chunk. Chunking bounds the
# memory of a bootstrap (32 MB of int64 indices plus the gathered arrays)
# whatever the number of resamples.
_BOOTSTRAP_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the bounds of its confidence interval."""

    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        """Return ``{"value", "ci_low", "ci_high"}`` as plain floats."""
        return {"value": float(self.value), "ci_low": float(self.ci_low), "ci_high": float(self.ci_high)}


def bootstrap(
    statistic: Callable[..., Any],
    arrays: tuple[np.ndarray, ...],
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
    vectorized: bool = False,
) -> Estimate:
    """Estimate a statistic with a paired percentile bootstrap interval.

    Each resample draws n example indices with replacement and applies the
    same indices to every array, so paired statistics (agreement, teacher
    minus student accuracy) keep their pairing. The interval is the
    ``(1 - confidence_level) / 2`` and ``(1 + confidence_level) / 2``
    quantiles of the resampled statistic. The point value is the statistic
    of the full sample.

    Parameters
    ----------
    statistic : callable
        ``statistic(*arrays) -> float``. With ``vectorized=True`` it receives
        arrays with a leading resample axis, shape (n_batches, n_examples, ...),
        and returns shape (n_batches,).
    arrays : tuple of arrays whose first axis is the example axis, length n
    n_resamples : int
    confidence_level : float in (0, 1)
    seed : int
        Seed of numpy's default generator; the same seed and n give the same
        indices, for every statistic and both calling conventions.

    Returns
    -------
    Estimate
        A statistic that returns NaN on some resamples gives NaN bounds.
    """
    if not isinstance(arrays, tuple) or not arrays:
        raise MetricInputError("arrays must be a non-empty tuple of arrays, e.g. (y_true, y_pred)")
    columns = [np.asarray(array) for array in arrays]
    lengths = {len(column) if column.ndim else -1 for column in columns}
    if len(lengths) != 1 or min(lengths) < 1:
        shapes = [column.shape for column in columns]
        raise MetricInputError(f"arrays must share a non-empty first axis, got shapes {shapes}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise MetricInputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < confidence_level < 1:
        raise MetricInputError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    n_examples = lengths.pop()

    if vectorized:
        value = float(np.asarray(statistic(*(column[None] for column in columns)))[0])
    else:
        value = float(statistic(*columns))

    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, _BOOTSTRAP_CHUNK_ENTRIES // n_examples))
    resampled = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        indices = rng.integers(0, n_examples, size=(stop - start, n_examples))
        if vectorized:
            resampled[start:stop] = statistic(*(column[indices] for column in columns))
        else:
            for row, sample in enumerate(indices, start=start):
                resampled[row] = statistic(*(column[sample] for column in columns))

    tail = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Estimate(value=value, ci_low=float(low), ci_high=float(high))


# --- the evaluation report -------------------------------------------------------


def _mean_batched(values: np.ndarray) -> np.ndarray:
    return np.asarray(values.mean(axis=-1))


def evaluate_predictions(
    student_logits: Any,
    teacher_logits: Any,
    y_true: Any,
    *,
    student_temperature: float,
    label_names: Sequence[str],
    cost_matrix: Any = None,
    n_bins: int = 15,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute the metric block of the evaluation report for teacher and student.

    Parameters
    ----------
    student_logits, teacher_logits : arrays of shape (n_examples, n_classes)
        Raw logits on the same examples in the same order.
    y_true : array of shape (n_examples,)
    student_temperature : float
        Fitted temperature; the student's probabilities are
        softmax(logits / T). The teacher and ``ece_uncalibrated`` use T = 1.
    label_names : sequence of n_classes str
        Keys of ``per_class_recall``.
    cost_matrix : array of shape (n_classes, n_classes), optional
        Indexed [true, predicted]; every error costs 1 when absent.
    n_bins : int
        Equal-width bins of the ECE.
    n_resamples, confidence_level, seed
        Bootstrap settings; every interval uses the same resampled indices.

    Returns
    -------
    dict
        ``{"teacher": {...}, "student": {...}, "agreement", "accuracy_gap",
        "n_examples", "confidence_level"}``. Each model block contains
        ``accuracy``, ``macro_f1``, ``ece``, ``nll``, ``brier`` and
        ``business_error`` as ``{"value", "ci_low", "ci_high"}``, plus
        ``per_class_recall`` as ``{label: float}`` with None for a class without
        test examples (JSON has no NaN). The student block adds
        ``ece_uncalibrated``. ``accuracy_gap`` is teacher minus student accuracy
        with a paired interval.
    """
    student_logits = check_logits(student_logits, "student_logits")
    teacher_logits = check_logits(teacher_logits, "teacher_logits")
    if student_logits.shape != teacher_logits.shape:
        raise MetricInputError(
            f"student_logits has shape {student_logits.shape} but teacher_logits has "
            f"{teacher_logits.shape}; both must cover the same examples and classes"
        )
    n_examples, n_classes = student_logits.shape
    if len(label_names) != n_classes:
        raise MetricInputError(
            f"label_names has {len(label_names)} names but the logits have {n_classes} classes"
        )
    y_true = check_labels(y_true, "y_true", n_classes)
    check_same_length(student_logits, "student_logits", y_true, "y_true")
    check_n_bins(n_bins)
    if cost_matrix is None:
        costs = cost_matrix_from_spec(None, label_names)
    else:
        costs = check_cost_matrix(cost_matrix, n_classes)
    rows = np.arange(n_examples)

    def estimate(statistic: Callable[..., np.ndarray], *arrays: np.ndarray) -> dict[str, float]:
        result = bootstrap(
            statistic,
            arrays,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            vectorized=True,
        )
        return result.to_dict()

    def ece_of(probs: np.ndarray) -> dict[str, float]:
        confidence, correct = top_label(probs, y_true)
        bins = confidence_bin(confidence, n_bins)
        return estimate(lambda b, c, h: ece_batched(b, c, h, n_bins), bins, confidence, correct)

    # Every statistic is reduced to per-example arrays first, so that a
    # resample only gathers 1-D arrays instead of (n, k) probabilities.
    def model_block(probs: np.ndarray) -> dict[str, Any]:
        predicted = probs.argmax(axis=1)
        true_probs = probs[rows, y_true]
        recall = per_class_recall(y_true, predicted, n_classes)
        return {
            "accuracy": estimate(_mean_batched, (predicted == y_true).astype(np.float64)),
            "macro_f1": estimate(lambda t, p: macro_f1_batched(t, p, n_classes), y_true, predicted),
            "ece": ece_of(probs),
            "nll": estimate(_mean_batched, -np.log(np.maximum(true_probs, NLL_MIN_PROBABILITY))),
            "brier": estimate(_mean_batched, brier_per_example(probs, y_true)),
            "business_error": estimate(_mean_batched, costs[y_true, predicted]),
            "per_class_recall": {
                str(name): None if np.isnan(value) else float(value)
                for name, value in zip(label_names, recall)
            },
        }

    teacher_probs = softmax(teacher_logits)
    student_probs = softmax(student_logits, student_temperature)
    teacher = model_block(teacher_probs)
    student = model_block(student_probs)
    student["ece_uncalibrated"] = ece_of(softmax(student_logits))

    teacher_pred = teacher_probs.argmax(axis=1)
    student_pred = student_probs.argmax(axis=1)
    teacher_correct = (teacher_pred == y_true).astype(np.float64)
    student_correct = (student_pred == y_true).astype(np.float64)
    return {
        "teacher": teacher,
        "student": student,
        "agreement": estimate(_mean_batched, (student_pred == teacher_pred).astype(np.float64)),
        "accuracy_gap": estimate(_mean_batched, teacher_correct - student_correct),
        "n_examples": int(n_examples),
        "confidence_level": float(confidence_level),
    }
