"""Classification and calibration metrics with bootstrap confidence intervals.

The evaluate stage calls :func:`evaluate_predictions` on the test split to fill
the report and the ``DistillationRun`` status. The calibration module and the
inference server reuse the individual metric functions. Everything works on
numpy arrays: logits and probabilities have shape (n_examples, n_classes), and
labels and predictions are integer class ids of shape (n_examples,).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mangakd.spec import CostMatrixSpec

# Index entries (resamples x examples) drawn per chunk. Chunking bounds the
# memory of a bootstrap (32 MB of int64 indices plus the gathered arrays)
# whatever the number of resamples.
_BOOTSTRAP_CHUNK_ENTRIES = 4_000_000

# Lower clip of the true-class probability in the NLL, so that a confident
# error costs log(1e12) ~ 27.6 nats instead of infinity.
_NLL_MIN_PROBABILITY = 1e-12

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


def _check_same_length(first: np.ndarray, first_name: str, second: np.ndarray, second_name: str) -> None:
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


def _check_n_bins(n_bins: int) -> None:
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
    return exp / exp.sum(axis=1, keepdims=True)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of examples with ``y_pred == y_true``; both of shape (n_examples,)."""
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred")
    _check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(np.mean(y_true == y_pred))


def agreement(student_pred: Any, teacher_pred: Any) -> float:
    """Share of examples where student and teacher predict the same class (top-1)."""
    student_pred = check_labels(student_pred, "student_pred")
    teacher_pred = check_labels(teacher_pred, "teacher_pred")
    _check_same_length(student_pred, "student_pred", teacher_pred, "teacher_pred")
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


def _macro_f1_batched(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of (n_batches, n_examples) label arrays."""
    true_positives, true_counts, pred_counts = _class_counts(y_true, y_pred, n_classes)

    # F1 = 2 TP / (2 TP + FP + FN), and 2 TP + FP + FN = true count + predicted
    # count, which is zero exactly for the classes absent from both arrays.
    denominator = true_counts + pred_counts
    present = denominator > 0
    f1 = np.divide(2.0 * true_positives, denominator, out=np.zeros(denominator.shape), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


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
    _check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(_macro_f1_batched(y_true[None], y_pred[None], n_classes)[0])


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Recall of each class, shape (n_classes,); NaN for classes without examples."""
    y_true = check_labels(y_true, "y_true", n_classes)
    y_pred = check_labels(y_pred, "y_pred", n_classes)
    _check_same_length(y_true, "y_true", y_pred, "y_pred")
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
    _check_same_length(probs, "probs", y_true, "y_true")
    true_probs = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.maximum(true_probs, _NLL_MIN_PROBABILITY))))


def _brier_per_example(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    # sum_j (p_j - onehot_j)^2 = sum_j p_j^2 - 2 p_y + 1, without a one-hot array.
    true_probs = probs[np.arange(len(y_true)), y_true]
    return np.sum(probs * probs, axis=1) - 2.0 * true_probs + 1.0


def brier_score(probs: Any, y_true: Any) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot label.

    Each example contributes the sum over classes of (p_j - [j == y])^2, so the
    score ranges from 0 (perfect) to 2 (all mass on a wrong class).
    """
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    _check_same_length(probs, "probs", y_true, "y_true")
    return float(np.mean(_brier_per_example(probs, y_true)))


# --- calibration metrics -------------------------------------------------------


def _confidence_bin(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence for equal-width bins (i/B, (i+1)/B]."""
    # ceil(c * B) - 1 puts a confidence on an upper edge in the lower bin, so
    # confidence 1.0 lands in the last bin and 0.8 with B = 5 in bin 3.
    index = np.ceil(confidence * n_bins).astype(np.int64) - 1
    return np.clip(index, 0, n_bins - 1)


def _top_label(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness (1.0 or 0.0) per example."""
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(predicted)), predicted]
    return confidence, (predicted == y_true).astype(np.float64)


def _ece_batched(bins: np.ndarray, confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of each row of (n_batches, n_examples) arrays of bin ids, confidences and hits."""
    n_batches, n_examples = bins.shape
    ids = (bins + (np.arange(n_batches, dtype=np.int64) * n_bins)[:, None]).ravel()
    size = n_batches * n_bins
    confidence_sums = np.bincount(ids, weights=confidence.ravel(), minlength=size)
    correct_sums = np.bincount(ids, weights=correct.ravel(), minlength=size)

    # sum_b (n_b / n) |acc_b - conf_b| = (1 / n) sum_b |hits_b - confidence sum_b|
    gaps = np.abs(confidence_sums - correct_sums).reshape(n_batches, n_bins)
    return gaps.sum(axis=1) / n_examples


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
    _check_n_bins(n_bins)
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    _check_same_length(probs, "probs", y_true, "y_true")
    confidence, correct = _top_label(probs, y_true)
    bins = _confidence_bin(confidence, n_bins)
    return float(_ece_batched(bins[None], confidence[None], correct[None], n_bins)[0])


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
    _check_n_bins(n_bins)
    probs = check_probabilities(probs)
    y_true = check_labels(y_true, "y_true", probs.shape[1])
    _check_same_length(probs, "probs", y_true, "y_true")
    confidence, correct = _top_label(probs, y_true)
    bins = _confidence_bin(confidence, n_bins)

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


# --- business cost -------------------------------------------------------------


def _label_index(name: str, index: dict[str, int], field: str, entry_number: int) -> int:
    if name in index:
        return index[name]
    close = difflib.get_close_matches(name, list(index), n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    some = ", ".join(repr(label) for label in list(index)[:5])
    raise MetricInputError(
        f"costMatrix.entries[{entry_number}].{field} {name!r} is not a label of the data set; "
        f"{hint}valid labels include {some} ({len(index)} labels), or `*` for any"
    )


def cost_matrix_from_spec(spec: CostMatrixSpec | None, label_names: Sequence[str]) -> np.ndarray:
    """Build the (n_classes, n_classes) cost matrix, indexed [true, predicted].

    The diagonal is 0 because a correct prediction costs nothing. With no spec
    every error costs 1, so the business-weighted error equals the error rate.
    Otherwise each error costs ``defaultCost`` unless an entry matches, and the
    most specific entry wins: the exact pair, then the true label with ``*``
    predicted, then ``*`` true with the predicted label, then ``*`` for both.

    Raises
    ------
    MetricInputError
        For an unknown label name, an entry that sets a cost for a correct
        prediction, or two entries for the same pair.
    """
    names = list(label_names)
    index = {name: position for position, name in enumerate(names)}
    if len(index) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise MetricInputError(f"label_names contains duplicates: {duplicates[:5]}")
    n_classes = len(names)
    off_diagonal = ~np.eye(n_classes, dtype=bool)
    if spec is None:
        return off_diagonal.astype(np.float64)

    # Rank 3 is the exact pair, 0 is `*` for both; a higher rank overrides a lower one.
    matrix = np.full((n_classes, n_classes), float(spec.default_cost))
    ranked: list[tuple[int, int, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, entry in enumerate(spec.entries):
        pair = (entry.true_label, entry.predicted_label)
        if pair in seen:
            raise MetricInputError(
                f"costMatrix.entries[{seen[pair]}] and [{number}] both set the cost of "
                f"true {pair[0]!r} predicted {pair[1]!r}; keep one"
            )
        seen[pair] = number
        if entry.true_label == entry.predicted_label and entry.true_label != "*":
            raise MetricInputError(
                f"costMatrix.entries[{number}] sets a cost for true and predicted {entry.true_label!r}, "
                "a correct prediction, which always costs 0; remove the entry"
            )
        rows: Any = slice(None)
        columns: Any = slice(None)
        rank = 0
        if entry.true_label != "*":
            rows = _label_index(entry.true_label, index, "trueLabel", number)
            rank += 2
        if entry.predicted_label != "*":
            columns = _label_index(entry.predicted_label, index, "predictedLabel", number)
            rank += 1
        ranked.append((rank, number, (rows, columns, entry.cost)))

    for _, _, (rows, columns, cost) in sorted(ranked, key=lambda item: item[:2]):
        matrix[rows, columns] = cost
    return np.where(off_diagonal, matrix, 0.0)


def _check_cost_matrix(cost_matrix: Any, n_classes: int | None = None) -> np.ndarray:
    matrix = np.asarray(cost_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise MetricInputError(f"cost_matrix must be square (n_classes, n_classes), got {matrix.shape}")
    if n_classes is not None and matrix.shape[0] != n_classes:
        raise MetricInputError(
            f"cost_matrix is {matrix.shape[0]}x{matrix.shape[0]} but there are {n_classes} classes"
        )
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise MetricInputError("cost_matrix must hold finite costs >= 0")
    return matrix


def business_weighted_error(y_true: Any, y_pred: Any, cost_matrix: Any) -> float:
    """Mean cost per example, ``cost_matrix[y_true, y_pred]`` averaged.

    ``cost_matrix`` has shape (n_classes, n_classes) and is indexed
    [true, predicted], as :func:`cost_matrix_from_spec` builds it.
    """
    matrix = _check_cost_matrix(cost_matrix)
    y_true = check_labels(y_true, "y_true", matrix.shape[0])
    y_pred = check_labels(y_pred, "y_pred", matrix.shape[0])
    _check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(np.mean(matrix[y_true, y_pred]))


# --- bootstrap -------------------------------------------------------------------


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
    return values.mean(axis=-1)


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
    _check_same_length(student_logits, "student_logits", y_true, "y_true")
    _check_n_bins(n_bins)
    if cost_matrix is None:
        costs = cost_matrix_from_spec(None, label_names)
    else:
        costs = _check_cost_matrix(cost_matrix, n_classes)
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
        confidence, correct = _top_label(probs, y_true)
        bins = _confidence_bin(confidence, n_bins)
        return estimate(lambda b, c, h: _ece_batched(b, c, h, n_bins), bins, confidence, correct)

    # Every statistic is reduced to per-example arrays first, so that a
    # resample only gathers 1-D arrays instead of (n, k) probabilities.
    def model_block(probs: np.ndarray) -> dict[str, Any]:
        predicted = probs.argmax(axis=1)
        true_probs = probs[rows, y_true]
        recall = per_class_recall(y_true, predicted, n_classes)
        return {
            "accuracy": estimate(_mean_batched, (predicted == y_true).astype(np.float64)),
            "macro_f1": estimate(lambda t, p: _macro_f1_batched(t, p, n_classes), y_true, predicted),
            "ece": ece_of(probs),
            "nll": estimate(_mean_batched, -np.log(np.maximum(true_probs, _NLL_MIN_PROBABILITY))),
            "brier": estimate(_mean_batched, _brier_per_example(probs, y_true)),
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
