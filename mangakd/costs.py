"""Business cost of errors: the cost matrix from the spec and the mean cost per example."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mangakd.metrics import MetricInputError, check_labels, check_same_length
from mangakd.spec import CostMatrixSpec


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


def check_cost_matrix(cost_matrix: Any, n_classes: int | None = None) -> np.ndarray:
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
    matrix = check_cost_matrix(cost_matrix)
    y_true = check_labels(y_true, "y_true", matrix.shape[0])
    y_pred = check_labels(y_pred, "y_pred", matrix.shape[0])
    check_same_length(y_true, "y_true", y_pred, "y_pred")
    return float(np.mean(matrix[y_true, y_pred]))
