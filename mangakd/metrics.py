"""Classification and calibration metrics on numpy arrays.

``mangakd.evaluation`` combines them with bootstrap intervals for the report
and the ``DistillationRun`` status; ``mangakd.costs`` adds the business cost.
The calibration module and the inference server reuse the single metrics. Everything works on
numpy arrays: logits and probabilities have shape (n_examples, n_classes), and
labels and predictions are integer class ids of shape (n_examples,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Lower clip of the true-class probability in the NLL, so that a confident
# error costs log(1e12) ~ 27.6 nats instead of infinity.
NLL_MIN_PROBABILITY = 1e-12

# Tolerance on row sums of probability arrays. torch 2.13 float32 softmax rows
# of 150 classes summed to 1 within 5e-7 on random logits, so 1e-3 only rejects
# arrays that are not probabilities at all (logits, or unnormalised scores).
_ROW_SUM_TOLERANCE = 1e-3


class MetricInputError(ValueError):
    """An array or argument that a metric cannot use."""


# --- input checks ----------------------------------------------------------


def check_labels(labels: Any, name: str, n_classes: int | None = None) -> np.ndarray:
    """Validate class ids and return them as a 1-D int64 array.

    Raises
    ------
    MetricInputError
        If the array is not 1-D, empty, not of an integer type, or contains an id
        outside ``[0, n_classes)``. The message names the first bad value.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D (n_examples,), got shape {array.shape}")
    if array.size == 0:
        raise MetricInputError(f"{name} is empty; metrics need at least one example")
    if not np.issubdtype(array.dtype, np.integer):
        raise MetricInputError(
            f"{name} must hold integer class ids, got dtype {array.dtype}; "
            "convert with np.asarray(values, dtype=np.int64)"
        )
    array = array.astype(np.int64, copy=False)
    upper = n_classes if n_classes is not None else np.iinfo(np.int64).max
    bad = np.flatnonzero((array < 0) | (array >= upper))
    if bad.size:
        index = int(bad[0])
        allowed = f"[0, {n_classes})" if n_classes is not None else ">= 0"
        raise MetricInputError(
            f"{name}[{index}] = {array[index]} is not a valid class id; ids must be in {allowed}"
        )
    return array


def check_same_length(first: np.ndarray, first_name: str, second: np.ndarray, second_name: str) -> None:
    if len(first) != len(second):
        raise MetricInputError(
            f"{first_name} has {len(first)} examples but {second_name} has {len(second)}; "
            "pass arrays of the same examples"
        )


def check_logits(logits: Any, name: str = "logits") -> np.ndarray:
    """Validate a finite (n_examples, n_classes) array and return it as float64."""
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise MetricInputError(
            f"{name} must have shape (n_examples >= 1, n_classes >= 2), got {array.shape}"
        )
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise MetricInputError(f"{name}[{row}] contains NaN or infinity; check the model outputs")
    return array


def check_probabilities(probs: Any, name: str = "probs") -> np.ndarray:
    """Validate (n_examples, n_classes) probabilities whose rows sum to 1."""
    array = check_logits(probs, name)
    outside = np.flatnonzero(((array < 0) | (array > 1)).any(axis=1))
    if outside.size:
        row = int(outside[0])
        raise MetricInputError(
            f"{name}[{row}] has values outside [0, 1] (min {array[row].min():.4g}, "
            f"max {array[row].max():.4g}); pass softmax(logits), not logits"
        )
    sums = array.sum(axis=1)
    unnormalised = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if unnormalised.size:
        row = int(unnormalised[0])
        raise MetricInputError(
            f"{name}[{row}] sums to {sums[row]:.6g}, not 1; pass softmax(logits)"
        )
    return array


def check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MetricInputError(f"n_bins must be a positive integer, got {n_bins!r}")


# --- single metrics ----------------------------------------------------------


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Compute softmax(logits / temperature) row by row.

    Parameters
    ----------
    logits : array of shape (n_examples, n_classes)
    temperature : float
        Positive and finite. Values above 1 flatten the distribution.

    Returns
    -------
    ndarray of shape (n_examples, n_classes), float64, rows summing to 1.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise MetricInputError(f"temperature must be positive and finite, got {temperature!r}")
    scaled = check_logits(logits) / temperature

    # Subtracting the row maximum leaves the result unchanged and keeps exp()
    # from overflowing on large logits.
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of examples with ``y_pred == y_true``; both of shape (n_examples,)."""
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred")
    check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(np.mean(y_true == y_pred))


def agreement(student_pred: Any, teacher_pred: Any) -> float:
    """Share of examples where student and teacher predict the same class (top-1)."""
    student_pred = check_labels(student_pred, "student_pred")
    teacher_pred = check_labels(teacher_pred, "teacher_pred")
    check_same_length(student_pred, "student_pred", teacher_pred, "teacher_pred")
    return float(np.mean(student_pred == teacher_pred))


def _class_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """Count true positives, true labels and predictions per class for a batch.

    ``y_true`` and ``y_pred`` have shape (n_batches, n_examples); each result
    has shape (n_batches, n_classes). One bincount over ids offset by
    ``batch * n_classes`` counts every batch at once.
    """
    n_batches = y_true.shape[0]
    offset = (np.arange(n_batches, dtype=np.int64) * n_classes)[:, None]
    size = n_batches * n_classes
    true_ids = y_true + offset
    true_positives = np.bincount(true_ids[y_true == y_pred], minlength=size)
    true_counts = np.bincount(true_ids.ravel(), minlength=size)
    pred_counts = np.bincount((y_pred + offset).ravel(), minlength=size)
    shape = (n_batches, n_classes)
    return true_positives.reshape(shape), true_counts.reshape(shape), pred_counts.reshape(shape)


def macro_f1_batched(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of (n_batches, n_examples) label arrays."""
    true_positives, true_counts, pred_counts = _class_counts(y_true, y_pred, n_classes)

    # F1 = 2 TP / (2 TP + FP + FN), and 2 TP + FP + FN = true count + predicted
    # count, which is zero exactly for the classes absent from both arrays.
    denominator = true_counts + pred_counts
    present = denominator > 0
    f1 = np.divide(2.0 * true_positives, denominator, out=np.zeros(denominator.shape), where=present)
    return np.asarray(f1.sum(axis=1) / present.sum(axis=1))


def macro_f1(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 scores.

    The mean runs over the classes present in ``y_true`` or ``y_pred``, as in
    scikit-learn's ``f1_score(average="macro")`` without ``labels``. A class
    absent from both has an undefined F1 (0 / 0) and is left out rather than
    counted as 0 or 1, so a test split that lacks some classes is not
    penalised for them.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (n_examples,) with ids in [0, n_classes)
    n_classes : int
    """
    y_true = check_labels(y_true, "y_true", n_classes)
    y_pred = check_labels(y_pred, "y_pred", n_classes)
    check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(macro_f1_batched(y_true[None], y_pred[None], n_classes)[0])


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Recall of each class, shape (n_classes,); NaN for classes without examples."""
    y_true = check_labels(y_true, "y_true", n_classes)
    y_pred = check_labels(y_pred, "y_pred", n_classes)
    check_same_length(y_true, "y_true", y_pred, "y_pred")
    true_positives, true_counts, _ = _class_counts(y_true[None], y_pred[None], n_classes)
    recall = np.full(n_classes, np.nan)
    has_examples = true_counts[0] > 0
    recall[has_examples] = true_positives[0][has_examples] / true_counts[0][has_examples]
    return recall


def negative_log_likelihood(probs: Any, y_true: Any) -> float:
    """Mean negative log-probability of the true class, in nats.

    Probabilities below 1e-12 are clipped to it, so one confident error adds
    at most 27.6 nats instead of making the mean infinite.
    """
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    check_same_length(probs, "probs", y_true, "y_true")
    true_probs = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.maximum(true_probs, NLL_MIN_PROBABILITY))))


def brier_per_example(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    # sum_j (p_j - onehot_j)^2 = sum_j p_j^2 - 2 p_y + 1, without a one-hot array.
    true_probs = probs[np.arange(len(y_true)), y_true]
    return np.asarray(np.sum(probs * probs, axis=1) - 2.0 * true_probs + 1.0)


def brier_score(probs: Any, y_true: Any) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot label.

    Each example contributes the sum over classes of (p_j - [j == y])^2, so the
    score ranges from 0 (perfect) to 2 (all mass on a wrong class).
    """
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    check_same_length(probs, "probs", y_true, "y_true")
    return float(np.mean(brier_per_example(probs, y_true)))


# --- calibration metrics -------------------------------------------------------


def confidence_bin(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence for equal-width bins (i/B, (i+1)/B]."""
    # ceil(c * B) - 1 puts a confidence on an upper edge in the lower bin, so
    # confidence 1.0 lands in the last bin and 0.8 with B = 5 in bin 3.
    index = np.ceil(confidence * n_bins).astype(np.int64) - 1
    return np.asarray(np.clip(index, 0, n_bins - 1))


def top_label(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness (1.0 or 0.0) per example."""
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(predicted)), predicted]
    return confidence, (predicted == y_true).astype(np.float64)


def ece_batched(bins: np.ndarray, confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of each row of (n_batches, n_examples) arrays of bin ids, confidences and hits."""
    n_batches, n_examples = bins.shape
    ids = (bins + (np.arange(n_batches, dtype=np.int64) * n_bins)[:, None]).ravel()
    size = n_batches * n_bins
    confidence_sums = np.bincount(ids, weights=confidence.ravel(), minlength=size)
    correct_sums = np.bincount(ids, weights=correct.ravel(), minlength=size)

    # sum_b (n_b / n) |acc_b - conf_b| = (1 / n) sum_b |hits_b - confidence sum_b|
    gaps = np.abs(confidence_sums - correct_sums).reshape(n_batches, n_bins)
    return np.asarray(gaps.sum(axis=1) / n_examples)


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error (ECE) with equal-width bins.

    The top-label confidence max_j p_j of each example falls into one of
    ``n_bins`` bins (i/B, (i+1)/B]. ECE is the mean over bins of
    |accuracy - mean confidence|, weighted by the share of examples in the bin.

    Parameters
    ----------
    probs : array of shape (n_examples, n_classes)
    y_true : array of shape (n_examples,)
    n_bins : int

    Returns
    -------
    float in [0, 1].
    """
    check_n_bins(n_bins)
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    check_same_length(probs, "probs", y_true, "y_true")
    confidence, correct = top_label(probs, y_true)
    bins = confidence_bin(confidence, n_bins)
    return float(ece_batched(bins[None], confidence[None], correct[None], n_bins)[0])


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of top-label confidence, for n_bins equal-width bins.

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin edges from 0 to 1; bin i covers (edges[i], edges[i + 1]].
    counts : ndarray of shape (n_bins,), int64
        Examples whose confidence falls into each bin.
    correct : ndarray of shape (n_bins,), int64
        Of those, the examples whose top-label prediction matches the reference.
    mean_confidence : ndarray of shape (n_bins,)
        Mean top-label confidence per bin; NaN for empty bins.
    accuracy : ndarray of shape (n_bins,)
        ``correct / counts``; NaN for empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    correct: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray


def calibration_bins(probs: Any, y_true: Any, n_bins: int = 15) -> CalibrationBins:
    """Bin examples by top-label confidence and count hits per bin.

    ``y_true`` is the reference the prediction is compared with: the labels
    for a reliability diagram, or the teacher's predictions for
    confidence-by-agreement counts. Bins match :func:`expected_calibration_error`.
    """
    check_n_bins(n_bins)
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    check_same_length(probs, "probs", y_true, "y_true")
    confidence, correct = top_label(probs, y_true)
    bins = confidence_bin(confidence, n_bins)

    counts = np.bincount(bins, minlength=n_bins)
    hits = np.bincount(bins, weights=correct, minlength=n_bins)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    filled = counts > 0
    mean_confidence = np.full(n_bins, np.nan)
    bin_accuracy = np.full(n_bins, np.nan)
    mean_confidence[filled] = confidence_sums[filled] / counts[filled]
    bin_accuracy[filled] = hits[filled] / counts[filled]
    return CalibrationBins(
        edges=np.linspace(0.0, 1.0, n_bins + 1),
        counts=counts.astype(np.int64),
        correct=np.rint(hits).astype(np.int64),
        mean_confidence=mean_confidence,
        accuracy=bin_accuracy,
    )
